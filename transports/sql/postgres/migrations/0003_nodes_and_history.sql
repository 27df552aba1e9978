-- The node registry and the per-minute history of every queue.

CREATE TABLE {schema}.nodes (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    queues text[] NOT NULL,
    slots integer NOT NULL,
    version text NOT NULL,
    started_at double precision NOT NULL,
    heartbeat double precision NOT NULL,  -- the node's heartbeat interval, seconds
    last_seen double precision NOT NULL  -- the store's now at the latest register or heartbeat
);

-- One figure of one queue's minute per row ('succeeded', 'wait:17', ...): every figure is a
-- sum, so each node adds its increments with value = value + excluded.value.
CREATE TABLE {schema}.stats (
    queue text NOT NULL,
    minute double precision NOT NULL,  -- start of the minute, a multiple of 60
    metric text NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (queue, minute, metric)
);

-- list_stats and prune_stats: rows by minute.
CREATE INDEX stats_minute_idx ON {schema}.stats (minute);
