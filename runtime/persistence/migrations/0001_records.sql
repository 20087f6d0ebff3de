-- Trading records: kept for good, keyed by the client order id so a row written twice
-- (a retried batch, a restarted engine reconciling its journal) lands once.

CREATE TABLE orders (
    client_order_id text PRIMARY KEY,
    created         timestamptz      NOT NULL,  -- when the strategy decided (the intent)
    strategy        text             NOT NULL,
    venue           text             NOT NULL,
    symbol          text             NOT NULL,
    side            text             NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        double precision NOT NULL,
    limit_price     double precision,
    tag             text             NOT NULL DEFAULT '',
    opportunity_ts  timestamptz,                -- the opportunity this order acted on
    status          text             NOT NULL,
    filled_quantity double precision NOT NULL,
    average_price   double precision NOT NULL,
    reason          text             NOT NULL DEFAULT '',
    code            text             NOT NULL DEFAULT '',
    venue_order_id  text             NOT NULL DEFAULT '',
    finished        timestamptz      NOT NULL   -- when the outcome was known
);
CREATE INDEX orders_strategy_created ON orders (strategy, created);

CREATE TABLE fills (
    client_order_id text             NOT NULL,
    fill_no         integer          NOT NULL,
    ts              timestamptz      NOT NULL,
    strategy        text             NOT NULL,
    venue           text             NOT NULL,
    symbol          text             NOT NULL,
    side            text             NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        double precision NOT NULL,
    price           double precision NOT NULL,
    fee             double precision NOT NULL,
    fee_asset       text             NOT NULL,
    PRIMARY KEY (client_order_id, fill_no)
);
CREATE INDEX fills_strategy_ts ON fills (strategy, ts);

-- How each time-series table is stored; partition maintenance and retention read it.
CREATE TABLE arbfleet_timeseries (
    table_name         text PRIMARY KEY,
    time_column        text     NOT NULL,
    partition_interval interval NOT NULL,
    storage            text     NOT NULL CHECK (storage IN ('native', 'timescaledb'))
);
