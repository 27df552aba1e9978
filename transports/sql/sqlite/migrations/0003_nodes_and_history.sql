-- The node registry and the per-minute history of every queue.

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT NOT NULL,  -- JSON array of queue names
    slots INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat REAL NOT NULL,  -- the node's heartbeat interval, seconds
    last_seen REAL NOT NULL  -- the store's now at the latest register or heartbeat
) WITHOUT ROWID;

-- One figure of one queue's minute per row ('succeeded', 'wait:17', ...): every figure is a
-- sum, so each node adds its increments with value = value + excluded.value.
CREATE TABLE stats (
    queue TEXT NOT NULL,
    minute REAL NOT NULL,  -- start of the minute, a multiple of 60
    metric TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (queue, minute, metric)
) WITHOUT ROWID;

-- list_stats and prune_stats: rows by minute.
CREATE INDEX stats_minute ON stats (minute);
