-- 0004: flow control. A job may name a concurrency key; a limit caps the jobs of one key that
-- hold a live lease at once, cluster-wide (see Transport.set_limit).
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;

-- claim: the live leases of one key, counted against its limit.
CREATE INDEX jobs_key_running ON jobs (concurrency_key, lease_expires_at)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;

-- The most jobs of a queue holding a live lease at once, cluster-wide (NULL: no cap).
ALTER TABLE queue_configs ADD COLUMN global_concurrency INTEGER;

CREATE TABLE limits (
    key TEXT PRIMARY KEY,
    concurrency INTEGER NOT NULL
) WITHOUT ROWID;
