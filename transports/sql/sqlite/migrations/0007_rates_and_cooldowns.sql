-- 0007: flow control, part two. A key's limit may also cap its starts per window (rate, per)
-- and may set no concurrency cap; each start of a rate-limited key is logged (key_starts) in
-- the claim's own statement, by a trigger; a key may be cooled down until a time (cooldowns).
ALTER TABLE limits RENAME TO limits_0004;

CREATE TABLE limits (
    key TEXT PRIMARY KEY,
    concurrency INTEGER,
    rate INTEGER,
    per REAL
) WITHOUT ROWID;

INSERT INTO limits (key, concurrency) SELECT key, concurrency FROM limits_0004;

DROP TABLE limits_0004;

CREATE TABLE key_starts (
    key TEXT NOT NULL,
    at REAL NOT NULL
);

CREATE INDEX key_starts_key_at ON key_starts (key, at);

CREATE TABLE cooldowns (
    key TEXT PRIMARY KEY,
    until REAL NOT NULL
) WITHOUT ROWID;

-- A claim that starts a job of a key with a rate logs the start, and forgets the key's starts
-- that left its window, in the claim's statement (so under its write lock).
CREATE TRIGGER jobs_log_start AFTER UPDATE OF state ON jobs
WHEN NEW.state = 'running' AND OLD.state <> 'running' AND NEW.concurrency_key IS NOT NULL
BEGIN
    DELETE FROM key_starts
    WHERE key = NEW.concurrency_key
        AND at <= NEW.started_at - (
            SELECT per FROM limits WHERE key = NEW.concurrency_key AND rate IS NOT NULL
        );
    INSERT INTO key_starts (key, at)
    SELECT NEW.concurrency_key, NEW.started_at
    FROM limits WHERE key = NEW.concurrency_key AND rate IS NOT NULL;
END;

-- list_limits: the waiting jobs of one key, counted from an index, whatever the backlog.
CREATE INDEX jobs_key_waiting ON jobs (concurrency_key)
    WHERE state IN ('available', 'scheduled') AND concurrency_key IS NOT NULL;
