-- 0007: flow control, part two. A key's limit may also cap its starts per window (rate, per)
-- and may set no concurrency cap; the claim logs each start of a rate-limited key
-- (key_starts) under the key's row lock; a key may be cooled down until a time (cooldowns).
ALTER TABLE {schema}.limits ALTER COLUMN concurrency DROP NOT NULL;
ALTER TABLE {schema}.limits ADD COLUMN rate integer CHECK (rate >= 1);
ALTER TABLE {schema}.limits ADD COLUMN per double precision CHECK (per > 0);

CREATE TABLE {schema}.key_starts (
    key text NOT NULL,
    at double precision NOT NULL
);

CREATE INDEX key_starts_key_at_idx ON {schema}.key_starts (key, at);

CREATE TABLE {schema}.cooldowns (
    key text PRIMARY KEY,
    until double precision NOT NULL
);

-- list_limits: the waiting jobs of one key, counted from an index, whatever the backlog.
CREATE INDEX jobs_key_waiting_idx ON {schema}.jobs (concurrency_key)
    WHERE state IN ('available', 'scheduled') AND concurrency_key IS NOT NULL;
