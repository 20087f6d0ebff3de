-- Queries the dashboards use. Hours are UTC (the writer's sessions run in UTC).

-- Marked-to-market PnL (USDT) at the close of each hour, and its change over the hour.
CREATE VIEW strategy_pnl_hourly AS
WITH closes AS (
    SELECT DISTINCT ON (strategy, date_trunc('hour', ts))
           strategy, date_trunc('hour', ts) AS hour, pnl AS pnl_close
    FROM pnl_snapshots
    WHERE pnl IS NOT NULL
    ORDER BY strategy, date_trunc('hour', ts), ts DESC
), fills_per_hour AS (
    SELECT strategy, date_trunc('hour', ts) AS hour, count(*) AS fills
    FROM fills
    GROUP BY 1, 2
)
SELECT c.strategy,
       c.hour,
       c.pnl_close,
       c.pnl_close - lag(c.pnl_close) OVER (PARTITION BY c.strategy ORDER BY c.hour) AS pnl_change,
       coalesce(f.fills, 0) AS fills
FROM closes c
LEFT JOIN fills_per_hour f USING (strategy, hour);

-- Share of the opportunities a strategy acted on that ended in at least one fill.
CREATE VIEW opportunity_capture_hourly AS
SELECT o.strategy,
       date_trunc('hour', o.ts) AS hour,
       count(*) AS opportunities,
       count(captured.opportunity_ts) AS captured,
       count(captured.opportunity_ts)::double precision / count(*) AS capture_rate
FROM opportunities o
LEFT JOIN (
    SELECT DISTINCT strategy, opportunity_ts
    FROM orders
    WHERE filled_quantity > 0 AND opportunity_ts IS NOT NULL
) captured ON captured.strategy = o.strategy AND captured.opportunity_ts = o.ts
GROUP BY 1, 2;

-- Venue event time to local receive time, in milliseconds, for ticks that carry a venue time.
-- It includes the offset between the venue's clock and ours: watch its trend, not its zero.
CREATE FUNCTION feed_latency_percentiles(since timestamptz, until timestamptz DEFAULT now())
RETURNS TABLE (venue text, samples bigint, p50_ms double precision, p90_ms double precision,
               p99_ms double precision, max_ms double precision)
LANGUAGE sql STABLE AS $$
    SELECT t.venue,
           count(*),
           percentile_cont(0.50) WITHIN GROUP (ORDER BY t.latency_ms),
           percentile_cont(0.90) WITHIN GROUP (ORDER BY t.latency_ms),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY t.latency_ms),
           max(t.latency_ms)
    FROM (
        SELECT ticks.venue,
               (extract(epoch FROM ticks.ts - ticks.venue_ts) * 1000)::double precision AS latency_ms
        FROM ticks
        WHERE ticks.venue_ts IS NOT NULL AND ticks.ts >= since AND ticks.ts < until
    ) t
    GROUP BY t.venue
$$;

CREATE VIEW feed_latency_hourly AS
SELECT venue,
       date_trunc('hour', ts) AS hour,
       count(*) AS samples,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms,
       percentile_cont(0.90) WITHIN GROUP (ORDER BY latency_ms) AS p90_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99_ms
FROM (
    SELECT venue, ts, (extract(epoch FROM ts - venue_ts) * 1000)::double precision AS latency_ms
    FROM ticks
    WHERE venue_ts IS NOT NULL
) t
GROUP BY 1, 2;
