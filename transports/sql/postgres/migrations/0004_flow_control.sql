-- 0004: flow control. A job may name a concurrency key; a limit caps the jobs of one key that
-- hold a live lease at once, cluster-wide (see Transport.set_limit). The claim locks the
-- limits row of each key it may start (FOR UPDATE), which serializes the count of a key.
ALTER TABLE {schema}.jobs ADD COLUMN concurrency_key text;

-- claim: the live leases of one key, counted against its limit.
CREATE INDEX jobs_key_running_idx ON {schema}.jobs (concurrency_key, lease_expires_at)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;

-- The most jobs of a queue holding a live lease at once, cluster-wide (NULL: no cap).
ALTER TABLE {schema}.queues ADD COLUMN global_concurrency integer
    CHECK (global_concurrency >= 0);

CREATE TABLE {schema}.limits (
    key text PRIMARY KEY,
    concurrency integer NOT NULL CHECK (concurrency >= 0)
);
