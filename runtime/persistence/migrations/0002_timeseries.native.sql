-- Time series on plain PostgreSQL: declarative range partitioning on the time column.
-- `arbfleet db maintain` (and the engine, every postgres.maintenance_interval_s) creates the
-- partitions ahead of time and drops the ones past retention; the writer creates a missing
-- one on demand. Every key starts with the time column: partitioned tables require it, and an
-- index whose first column only grows is the cheapest to maintain under COPY.

CREATE TABLE ticks (
    ts       timestamptz      NOT NULL,  -- when the engine received it
    venue    text             NOT NULL,
    symbol   text             NOT NULL,
    bid      double precision NOT NULL,
    bid_size double precision NOT NULL,
    ask      double precision NOT NULL,
    ask_size double precision NOT NULL,
    seq      bigint           NOT NULL,
    venue_ts timestamptz,                -- the venue's event time, when it sends one
    PRIMARY KEY (ts, venue, symbol, seq)
) PARTITION BY RANGE (ts);

CREATE TABLE opportunities (
    ts              timestamptz      NOT NULL,
    strategy        text             NOT NULL,
    kind            text             NOT NULL,
    edge_bps        double precision NOT NULL,
    expected_profit double precision NOT NULL,
    detail          text             NOT NULL DEFAULT '',
    PRIMARY KEY (ts, strategy, kind)
) PARTITION BY RANGE (ts);

CREATE TABLE position_snapshots (
    ts       timestamptz      NOT NULL,
    strategy text             NOT NULL,
    venue    text             NOT NULL,
    asset    text             NOT NULL,
    balance  double precision NOT NULL,
    position double precision NOT NULL,  -- balance minus the configured initial balance
    PRIMARY KEY (ts, strategy, venue, asset)
) PARTITION BY RANGE (ts);

CREATE TABLE pnl_snapshots (
    ts       timestamptz NOT NULL,
    strategy text        NOT NULL,
    pnl      double precision,           -- marked to market in USDT; NULL while unpriced
    PRIMARY KEY (ts, strategy)
) PARTITION BY RANGE (ts);

CREATE TABLE system_events (
    ts     timestamptz NOT NULL,
    source text        NOT NULL,
    kind   text        NOT NULL,
    detail text        NOT NULL DEFAULT '',
    PRIMARY KEY (ts, source, kind)
) PARTITION BY RANGE (ts);

INSERT INTO arbfleet_timeseries VALUES
    ('ticks', 'ts', INTERVAL '1 hour', 'native'),
    ('opportunities', 'ts', INTERVAL '1 day', 'native'),
    ('position_snapshots', 'ts', INTERVAL '1 day', 'native'),
    ('pnl_snapshots', 'ts', INTERVAL '1 day', 'native'),
    ('system_events', 'ts', INTERVAL '1 day', 'native');
