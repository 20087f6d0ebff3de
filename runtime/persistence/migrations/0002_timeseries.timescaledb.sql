-- Time series on TimescaleDB: hypertables chunked on the time column, ticks compressed after
-- six hours. Retention policies are set by `arbfleet db maintain` from postgres.retention_hours
-- (configuration, not schema). The same columns and keys as the native variant.
-- Written against the TimescaleDB 2.x API; these machines have no TimescaleDB to run it on.

CREATE TABLE ticks (
    ts       timestamptz      NOT NULL,
    venue    text             NOT NULL,
    symbol   text             NOT NULL,
    bid      double precision NOT NULL,
    bid_size double precision NOT NULL,
    ask      double precision NOT NULL,
    ask_size double precision NOT NULL,
    seq      bigint           NOT NULL,
    venue_ts timestamptz,
    PRIMARY KEY (ts, venue, symbol, seq)
);
SELECT create_hypertable('ticks', 'ts', chunk_time_interval => INTERVAL '1 hour');
ALTER TABLE ticks SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'venue, symbol',
    timescaledb.compress_orderby = 'ts DESC, seq'
);
SELECT add_compression_policy('ticks', INTERVAL '6 hours');

CREATE TABLE opportunities (
    ts              timestamptz      NOT NULL,
    strategy        text             NOT NULL,
    kind            text             NOT NULL,
    edge_bps        double precision NOT NULL,
    expected_profit double precision NOT NULL,
    detail          text             NOT NULL DEFAULT '',
    PRIMARY KEY (ts, strategy, kind)
);
SELECT create_hypertable('opportunities', 'ts', chunk_time_interval => INTERVAL '1 day');

CREATE TABLE position_snapshots (
    ts       timestamptz      NOT NULL,
    strategy text             NOT NULL,
    venue    text             NOT NULL,
    asset    text             NOT NULL,
    balance  double precision NOT NULL,
    position double precision NOT NULL,
    PRIMARY KEY (ts, strategy, venue, asset)
);
SELECT create_hypertable('position_snapshots', 'ts', chunk_time_interval => INTERVAL '1 day');

CREATE TABLE pnl_snapshots (
    ts       timestamptz NOT NULL,
    strategy text        NOT NULL,
    pnl      double precision,
    PRIMARY KEY (ts, strategy)
);
SELECT create_hypertable('pnl_snapshots', 'ts', chunk_time_interval => INTERVAL '1 day');

CREATE TABLE system_events (
    ts     timestamptz NOT NULL,
    source text        NOT NULL,
    kind   text        NOT NULL,
    detail text        NOT NULL DEFAULT '',
    PRIMARY KEY (ts, source, kind)
);
SELECT create_hypertable('system_events', 'ts', chunk_time_interval => INTERVAL '1 day');

INSERT INTO arbfleet_timeseries VALUES
    ('ticks', 'ts', INTERVAL '1 hour', 'timescaledb'),
    ('opportunities', 'ts', INTERVAL '1 day', 'timescaledb'),
    ('position_snapshots', 'ts', INTERVAL '1 day', 'timescaledb'),
    ('pnl_snapshots', 'ts', INTERVAL '1 day', 'timescaledb'),
    ('system_events', 'ts', INTERVAL '1 day', 'timescaledb');
