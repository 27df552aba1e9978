-- actorq's SQLite schema as it stands after every migration (tests/transports/test_migrations_sqlite.py
-- proves that applying migrations/ to an empty database yields exactly these objects).
-- The schema version is kept in PRAGMA user_version. Times are REAL POSIX seconds.

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
            'pending', 'scheduled', 'available', 'running', 'suspended', 'succeeded', 'cancelled',
            'dead'
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
    wait_key TEXT,  -- the event key a suspended job waits for; set exactly while suspended
    workflow TEXT,  -- the workflow it belongs to, a label (0009)
    -- 1 once a job waits for it (job_edges): its end settles its dependents (jobs_settle)
    has_dependents INTEGER NOT NULL DEFAULT 0,
    partition_key TEXT  -- fair-share partition, a label (0012); NULL: the unpartitioned
);

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

-- prune_results: the results still stored, by finish time (0011).
CREATE INDEX jobs_results ON jobs (finished_at)
    WHERE state = 'succeeded' AND result IS NOT NULL;

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

CREATE TABLE leaders (
    name TEXT PRIMARY KEY,
    holder TEXT,  -- NULL once released
    epoch INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE queue_configs (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    concurrency INTEGER,
    retention REAL,
    global_concurrency INTEGER  -- cluster-wide cap on the queue's live leases; NULL: none
) WITHOUT ROWID;

CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    value REAL NOT NULL
) WITHOUT ROWID;

-- The node registry and the per-minute history of every queue (migration 0003).

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

-- Flow control: the limits of one concurrency key, cluster-wide: most jobs holding a live lease
-- at once (concurrency), most starts in any window of per seconds (rate); NULL: none.
CREATE TABLE limits (
    key TEXT PRIMARY KEY,
    concurrency INTEGER,
    rate INTEGER,
    per REAL
) WITHOUT ROWID;

-- The starts of each rate-limited key within its window (older ones are forgotten).
CREATE TABLE key_starts (
    key TEXT NOT NULL,
    at REAL NOT NULL
);

CREATE INDEX key_starts_key_at ON key_starts (key, at);

-- Keys cooled down (a remote asked to back off): no claim starts their jobs before until.
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

-- Durable steps and signals (migration 0008).

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

-- The maintenance leader prunes events past their retention, oldest first (0010).
CREATE INDEX signals_by_age ON signals (signalled_at);

-- Dependencies (0009): child waits for parent. parent_state is the parent's final state once
-- it ended, NULL while it may still run. transports.lowlevel.verdict decides a pending child:
-- a 'cancel' edge whose parent ended dead or cancelled cancels it; else it is due once no
-- edge is open. The triggers below apply it in the very statement that ends a parent.
CREATE TABLE job_edges (
    child INTEGER NOT NULL,
    parent INTEGER NOT NULL,
    on_failure TEXT NOT NULL CHECK (on_failure IN ('cancel', 'run')),
    parent_state TEXT,
    PRIMARY KEY (child, parent)
) WITHOUT ROWID;

-- a parent's dependents.
CREATE INDEX job_edges_parent ON job_edges (parent, child);

-- a child's open edges and its failed ones: each parent's end asks both of its children, so
-- a fan-in of n parents costs n lookups, not n scans of its n edges.
CREATE INDEX job_edges_open ON job_edges (child) WHERE parent_state IS NULL;
CREATE INDEX job_edges_failed ON job_edges (child)
    WHERE parent_state IN ('cancelled', 'dead');

-- jobs_settle's working set: the jobs one settling cancels (empty between statements).
CREATE TABLE job_settling (
    id INTEGER PRIMARY KEY
);

-- a workflow's jobs (listings, cleanup).
CREATE INDEX jobs_workflow ON jobs (workflow, id)
    WHERE workflow IS NOT NULL;

-- A job with dependents ended: record its state on its edges; cancel every pending job that
-- is doomed (a child of it, or of a job doomed in turn, with a failed 'cancel' parent),
-- naming the parent; make due every pending child of it or of a doomed job that no edge
-- holds back any more. Recursive triggers are off: the doomed jobs are settled here, at once.
CREATE TRIGGER jobs_settle AFTER UPDATE OF state ON jobs
WHEN NEW.has_dependents
    AND NEW.state IN ('succeeded', 'cancelled', 'dead')
    AND OLD.state NOT IN ('succeeded', 'cancelled', 'dead')
BEGIN
    UPDATE job_edges SET parent_state = NEW.state WHERE parent = NEW.id;
    INSERT OR IGNORE INTO job_settling (id)
    WITH RECURSIVE doomed (id) AS (
        SELECT c.id FROM job_edges AS e JOIN jobs AS c ON c.id = e.child
        WHERE e.parent = NEW.id AND c.state = 'pending'
            AND EXISTS (
            SELECT 1 FROM job_edges AS f INDEXED BY job_edges_failed
            WHERE f.child = c.id AND f.on_failure = 'cancel'
                AND f.parent_state IN ('cancelled', 'dead')
        )
        UNION
        SELECT c.id FROM doomed JOIN job_edges AS e ON e.parent = doomed.id
            JOIN jobs AS c ON c.id = e.child
        WHERE c.state = 'pending'
            AND (e.on_failure = 'cancel' OR EXISTS (
            SELECT 1 FROM job_edges AS f INDEXED BY job_edges_failed
            WHERE f.child = c.id AND f.on_failure = 'cancel'
                AND f.parent_state IN ('cancelled', 'dead')
        ))
    )
    SELECT id FROM doomed;
    UPDATE job_edges SET parent_state = 'cancelled'
    WHERE parent IN (SELECT id FROM job_settling);
    UPDATE jobs
    SET state = 'cancelled',
        finished_at = NEW.updated_at,
        updated_at = NEW.updated_at,
        last_error = (
            SELECT 'parent ' || f.parent || ' ended ' || f.parent_state FROM job_edges AS f
            WHERE f.child = jobs.id AND f.on_failure = 'cancel'
                AND f.parent_state IN ('cancelled', 'dead')
            ORDER BY f.parent
            LIMIT 1
        )
    WHERE id IN (SELECT id FROM job_settling);
    UPDATE jobs
    SET state = CASE WHEN run_at > NEW.updated_at THEN 'scheduled' ELSE 'available' END,
        updated_at = NEW.updated_at
    WHERE state = 'pending'
        AND id IN (
            SELECT child FROM job_edges WHERE parent = NEW.id
            UNION ALL
            SELECT child FROM job_edges WHERE parent IN (SELECT id FROM job_settling)
        )
        AND NOT EXISTS (
            SELECT 1 FROM job_edges AS f INDEXED BY job_edges_open
            WHERE f.child = jobs.id AND f.parent_state IS NULL
        )
        AND NOT EXISTS (
            SELECT 1 FROM job_edges AS f INDEXED BY job_edges_failed
            WHERE f.child = jobs.id AND f.parent_state IN ('cancelled', 'dead')
                AND f.on_failure = 'cancel'
        );
    DELETE FROM job_settling;
END;

-- A final job runs again (retry_jobs): its edges as a parent are open again (its dependents
-- not started yet wait for it again), and it waits for its own parents while any edge holds
-- it back.
CREATE TRIGGER jobs_reopen AFTER UPDATE OF state ON jobs
WHEN OLD.state IN ('succeeded', 'cancelled', 'dead')
    AND NEW.state NOT IN ('succeeded', 'cancelled', 'dead')
BEGIN
    UPDATE job_edges SET parent_state = NULL WHERE parent = NEW.id;
    UPDATE jobs SET state = 'pending'
    WHERE state IN ('scheduled', 'available')
        AND id IN (SELECT child FROM job_edges WHERE parent = NEW.id);
    UPDATE jobs SET state = 'pending'
    WHERE id = NEW.id
        AND EXISTS (
            SELECT 1 FROM job_edges AS f
            WHERE f.child = NEW.id
                AND (
                    f.parent_state IS NULL
                    OR (f.parent_state <> 'succeeded' AND f.on_failure = 'cancel')
                )
        );
END;

-- A deleted job's edges as a child go with it (as a parent, its state stays on them).
CREATE TRIGGER jobs_forget AFTER DELETE ON jobs
BEGIN
    DELETE FROM job_edges WHERE child = OLD.id;
END;

-- The fair claim (0012): the partitions of a queue's waiting jobs (a seek per partition) and
-- the first due jobs of each, in claim order.
CREATE INDEX jobs_partition ON jobs (queue, partition_key, priority, run_at, id)
    WHERE partition_key IS NOT NULL AND state IN ('available', 'scheduled', 'suspended');

-- ... and the due jobs of a queue without a partition, in claim order: a fair claim finds the
-- unpartitioned ones (one partition together) without reading past the partitioned ones.
CREATE INDEX jobs_unpartitioned ON jobs (queue, priority, run_at, id)
    WHERE partition_key IS NULL AND state IN ('available', 'scheduled', 'suspended');

-- Each partition's last turn: the claim (tick) that last started one of its jobs and its
-- place in that claim (pos). key '' is the queue's unpartitioned jobs.
CREATE TABLE partitions (
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    tick INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    served_at REAL NOT NULL,
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;

CREATE INDEX partitions_tick ON partitions (tick);
