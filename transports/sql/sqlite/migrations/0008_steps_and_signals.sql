-- 0008: durable steps and signals. A job may be 'suspended' on an event key until a signal
-- sets it (or its timeout passes); its steps are kept with it. SQLite cannot widen a CHECK in
-- place, so the jobs table is rebuilt: renamed, created anew, copied, and its indexes made
-- again, and its trigger (0007's). The AUTOINCREMENT counter is carried over, so ids are
-- never reused.
ALTER TABLE jobs RENAME TO jobs_old;

CREATE TABLE jobs (
    -- AUTOINCREMENT: ids are never reused, so (id, lease_token) never recurs after cleanup.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,  -- compact JSON
    -- A 'scheduled' (or 'suspended') job whose run_at has passed reads as 'available'; claims
    -- take them.
    state TEXT NOT NULL CHECK (
        state IN (
            'scheduled', 'available', 'running', 'suspended', 'succeeded', 'cancelled', 'dead'
        )
    ),
    priority INTEGER NOT NULL,
    run_at REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    last_error TEXT,
    dedupe_key TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,  -- set exactly when the state is final
    lease_owner TEXT,
    -- Claims of this job so far: each claim mints lease_token + 1, the fencing token.
    lease_token INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,  -- set exactly while running
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    started_at REAL,  -- when the latest claim took it
    -- JSON array of the failed attempts' errors, oldest first (the newest MAX_ERRORS):
    -- {"attempt", "at", "owner", "type", "message", "traceback"}
    errors TEXT NOT NULL DEFAULT '[]',
    headers TEXT NOT NULL DEFAULT '{}',  -- JSON object of labels, as given to enqueue
    concurrency_key TEXT,  -- flow-control key; its limit (if any) is in limits
    result TEXT,  -- compact JSON the handler returned, stored by the applied finalize (0005)
    -- the expiry of the lease reap took back while the job waits to run again, kept until a
    -- run of it ends (finalize, except a release): where its recovery time starts
    lost_at REAL,
    wait_key TEXT  -- the event key a suspended job waits for; set exactly while suspended
);

INSERT INTO jobs (
    id, kind, queue, payload, state, priority, run_at, attempt, max_attempts, last_error,
    dedupe_key, created_at, updated_at, finished_at, lease_owner, lease_token, lease_expires_at,
    cancel_requested, started_at, errors, headers, concurrency_key, result, lost_at
)
SELECT
    id, kind, queue, payload, state, priority, run_at, attempt, max_attempts, last_error,
    dedupe_key, created_at, updated_at, finished_at, lease_owner, lease_token, lease_expires_at,
    cancel_requested, started_at, errors, headers, concurrency_key, result, lost_at
FROM jobs_old;

DELETE FROM sqlite_sequence WHERE name = 'jobs';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'jobs', seq FROM sqlite_sequence WHERE name = 'jobs_old';

DROP TABLE jobs_old;

-- claim: the due jobs of a queue in claim order.
CREATE INDEX jobs_claim ON jobs (queue, priority, run_at, id)
    WHERE state IN ('available', 'scheduled', 'suspended');

-- reap: running jobs by lease expiry.
CREATE INDEX jobs_lease ON jobs (lease_expires_at)
    WHERE state = 'running';

-- enqueue: at most one active job per (queue, dedupe_key).
CREATE UNIQUE INDEX jobs_dedupe ON jobs (queue, dedupe_key)
    WHERE dedupe_key IS NOT NULL
        AND state IN ('scheduled', 'available', 'running', 'suspended');

-- cleanup: final jobs by finish time.
CREATE INDEX jobs_finished ON jobs (finished_at)
    WHERE finished_at IS NOT NULL;

-- operators' listings of final jobs (newest first) by state; only final rows are in it, so
-- enqueue and claim never write it.
CREATE INDEX jobs_final_state ON jobs (state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');

-- claim: the live leases of one key, counted against its limit.
CREATE INDEX jobs_key_running ON jobs (concurrency_key, lease_expires_at)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;

-- list_limits: the waiting jobs of one key, counted from an index, whatever the backlog.
CREATE INDEX jobs_key_waiting ON jobs (concurrency_key)
    WHERE state IN ('available', 'scheduled') AND concurrency_key IS NOT NULL;

-- signal: the jobs suspended on one event key.
CREATE INDEX jobs_waiting ON jobs (wait_key)
    WHERE state = 'suspended';

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

-- A job's recorded steps, written only under its live lease; deleted with the job.
CREATE TABLE steps (
    job_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,  -- compact JSON
    attempt INTEGER NOT NULL,  -- the job's attempt that recorded it
    recorded_at REAL NOT NULL,
    PRIMARY KEY (job_id, name)
) WITHOUT ROWID;

CREATE TRIGGER jobs_delete_steps AFTER DELETE ON jobs
BEGIN
    DELETE FROM steps WHERE job_id = old.id;
END;

-- Events set by signal; the first value wins.
CREATE TABLE signals (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,  -- compact JSON
    signalled_at REAL NOT NULL
) WITHOUT ROWID;
