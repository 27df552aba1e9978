-- Named queries of the SQLite transport (transports/_sqlite.py). Each starts at a "-- name:" line.
-- A query holding {rows} is a template: the transport expands it to one placeholder tuple per
-- row of a batch. Times are REAL POSIX seconds passed in by the transport (its clock's now()).
-- A 'scheduled' job whose run_at has passed is due: claims take it, and reads show it as
-- 'available', exactly as if it had been promoted. So is a 'suspended' one whose timeout
-- (its run_at) has passed.

-- name: enable_wal
PRAGMA journal_mode = WAL

-- name: journal_mode
PRAGMA journal_mode

-- name: synchronous_normal
PRAGMA synchronous = NORMAL

-- name: data_version
-- Changes whenever another connection commits: the watcher's question (see _sqlite.py).
PRAGMA data_version

-- name: get_user_version
PRAGMA user_version

-- name: set_user_version
PRAGMA user_version = {version}

-- name: begin_immediate
BEGIN IMMEDIATE

-- name: rollback
ROLLBACK

-- name: active_dedupe_keys
SELECT queue, dedupe_key, id
FROM jobs
WHERE (queue, dedupe_key) IN (
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
        FROM json_each(:keys)
    )
    AND dedupe_key IS NOT NULL
    AND state IN ('scheduled', 'available', 'running', 'suspended')

-- name: insert_jobs
-- VALUES gets one "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" per job, in the order of these
-- columns.
INSERT INTO jobs (
    kind, queue, payload, state, priority, run_at, max_attempts, dedupe_key, created_at,
    updated_at, headers, concurrency_key, workflow, partition_key
)
VALUES {rows}
RETURNING id

-- name: claim
-- One statement under the write lock, so the live leases counted per key stay true until the
-- update: a key at its limit is passed over (full_keys), and of the candidates taken no more
-- per key than its free slots start (ranked); the rest stay due, their attempt unspent.
-- The live leases are counted by key from the running jobs (few), not per limit (many); the
-- starts in each rate window from the log, which keeps only (about) those. A key is full at
-- its concurrency limit, with its rate window full, or while it cools down.
WITH live AS (
    SELECT concurrency_key AS key, count(*) AS n
    FROM jobs
    WHERE state = 'running' AND concurrency_key IS NOT NULL AND lease_expires_at > :now
    GROUP BY concurrency_key
),
started AS (
    SELECT s.key, count(*) AS n
    FROM key_starts AS s JOIN limits AS l ON l.key = s.key
    WHERE l.rate IS NOT NULL AND s.at > :now - l.per
    GROUP BY s.key
),
full_keys AS (
    SELECT l.key FROM limits AS l JOIN live ON live.key = l.key WHERE l.concurrency <= live.n
    UNION ALL
    SELECT key FROM limits WHERE concurrency <= 0
    UNION ALL
    SELECT l.key FROM limits AS l JOIN started ON started.key = l.key WHERE l.rate <= started.n
    UNION ALL
    SELECT key FROM cooldowns WHERE until > :now
),
candidates AS (
    SELECT id, concurrency_key, priority, run_at
    FROM jobs
    WHERE queue = :queue
        AND state IN ('available', 'scheduled', 'suspended')
        AND run_at <= :now
        AND NOT EXISTS (SELECT 1 FROM queue_configs WHERE name = :queue AND paused)
        AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
        -- a queue with waiting partitioned jobs is claimed fairly (fair_candidates)
        AND NOT EXISTS (
            SELECT 1 FROM jobs AS f
            WHERE f.queue = :queue AND f.partition_key IS NOT NULL
                AND f.state IN ('available', 'scheduled', 'suspended')
        )
    ORDER BY priority, run_at, id
    LIMIT :limit
),
ranked AS (
    SELECT id, concurrency_key AS key, priority, run_at,
        row_number() OVER (PARTITION BY concurrency_key ORDER BY priority, run_at, id) AS n
    FROM candidates
)
UPDATE jobs
SET state = 'running',
    attempt = attempt + 1,
    lease_owner = :owner,
    lease_token = lease_token + 1,
    lease_expires_at = :expires_at,
    started_at = :now,
    updated_at = :now,
    wait_key = NULL
WHERE id IN (
    SELECT ranked.id
    FROM ranked LEFT JOIN limits AS l ON l.key = ranked.key
    WHERE l.key IS NULL
        OR (
            (l.concurrency IS NULL OR ranked.n <= l.concurrency - (
                SELECT count(*) FROM jobs AS r
                WHERE r.state = 'running' AND r.concurrency_key = l.key
                    AND r.lease_expires_at > :now
            ))
            AND (l.rate IS NULL OR ranked.n <= l.rate - coalesce(
                (SELECT n FROM started WHERE started.key = l.key), 0
            ))
        )
    ORDER BY ranked.priority, ranked.run_at, ranked.id
    -- A queue's cluster-wide cap: its free slots (never negative: a negative LIMIT is none).
    LIMIT max(0, coalesce(
        (SELECT global_concurrency FROM queue_configs WHERE name = :queue)
            - (SELECT count(*) FROM jobs AS q
               WHERE q.state = 'running' AND q.queue = :queue AND q.lease_expires_at > :now),
        :limit
    ))
)
RETURNING
    id, kind, queue, payload, state, priority, run_at, attempt, max_attempts, last_error,
    dedupe_key, created_at, updated_at, finished_at, lease_owner, lease_expires_at,
    cancel_requested, started_at, errors, headers, concurrency_key, lease_token, lost_at, workflow,
    partition_key

-- name: partitioned
-- Whether a queue has waiting partitioned jobs: then its claims are fair (fair_candidates).
SELECT EXISTS (
    SELECT 1 FROM jobs
    WHERE queue = :queue AND partition_key IS NOT NULL
        AND state IN ('available', 'scheduled', 'suspended')
)

-- name: fair_candidates
-- The fair claim, first of three statements of one write transaction: the candidates in
-- fair-share order (see *Fair share* in transports/_base.py), as (id, concurrency_key,
-- partition: '' for the unpartitioned). parts walks the partitions of the queue's waiting
-- jobs, one index seek each; eligible keeps those with a due job of a key not full (keys as
-- in claim); chosen takes the :limit served least recently (never first, then by key); each
-- gives at most :limit - n + 1 jobs (n chosen), which is all a round-by-round take of :limit
-- can use, and the take is by (rank in partition, turn).
WITH RECURSIVE
live AS (
    SELECT concurrency_key AS key, count(*) AS n
    FROM jobs
    WHERE state = 'running' AND concurrency_key IS NOT NULL AND lease_expires_at > :now
    GROUP BY concurrency_key
),
started AS (
    SELECT s.key, count(*) AS n
    FROM key_starts AS s JOIN limits AS l ON l.key = s.key
    WHERE l.rate IS NOT NULL AND s.at > :now - l.per
    GROUP BY s.key
),
full_keys AS (
    SELECT l.key FROM limits AS l JOIN live ON live.key = l.key WHERE l.concurrency <= live.n
    UNION ALL
    SELECT key FROM limits WHERE concurrency <= 0
    UNION ALL
    SELECT l.key FROM limits AS l JOIN started ON started.key = l.key WHERE l.rate <= started.n
    UNION ALL
    SELECT key FROM cooldowns WHERE until > :now
),
parts (key) AS (
    SELECT (
        SELECT min(partition_key) FROM jobs
        WHERE queue = :queue AND partition_key IS NOT NULL
            AND state IN ('available', 'scheduled', 'suspended')
    )
    UNION ALL
    SELECT (
        SELECT min(partition_key) FROM jobs
        WHERE queue = :queue AND partition_key > parts.key
            AND state IN ('available', 'scheduled', 'suspended')
    )
    FROM parts
    WHERE parts.key IS NOT NULL
),
eligible (key) AS (
    SELECT parts.key FROM parts
    WHERE parts.key IS NOT NULL
        AND EXISTS (
            SELECT 1 FROM jobs
            WHERE queue = :queue AND partition_key = parts.key
                AND state IN ('available', 'scheduled', 'suspended') AND run_at <= :now
                AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
        )
    UNION ALL
    SELECT '' WHERE EXISTS (
        SELECT 1 FROM jobs
        WHERE queue = :queue AND partition_key IS NULL
            AND state IN ('available', 'scheduled', 'suspended') AND run_at <= :now
            AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
    )
),
chosen AS (
    SELECT eligible.key,
        row_number() OVER (
            ORDER BY p.tick IS NOT NULL, p.tick, p.pos, eligible.key
        ) AS turn
    FROM eligible LEFT JOIN partitions AS p ON p.queue = :queue AND p.key = eligible.key
    WHERE NOT EXISTS (SELECT 1 FROM queue_configs WHERE name = :queue AND paused)
    ORDER BY turn
    LIMIT :limit
),
room AS (SELECT :limit - count(*) + 1 AS each FROM chosen),
taken AS (
    SELECT jobs.id, jobs.concurrency_key, chosen.key AS part, chosen.turn,
        row_number() OVER (
            PARTITION BY chosen.key ORDER BY jobs.priority, jobs.run_at, jobs.id
        ) AS rank
    FROM chosen JOIN jobs ON jobs.id IN (
        SELECT id FROM jobs
        WHERE chosen.key <> '' AND queue = :queue AND partition_key = chosen.key
            AND state IN ('available', 'scheduled', 'suspended') AND run_at <= :now
            AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
        ORDER BY priority, run_at, id
        LIMIT (SELECT each FROM room)
    ) OR jobs.id IN (
        SELECT id FROM jobs
        WHERE chosen.key = '' AND queue = :queue AND partition_key IS NULL
            AND state IN ('available', 'scheduled', 'suspended') AND run_at <= :now
            AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
        ORDER BY priority, run_at, id
        LIMIT (SELECT each FROM room)
    )
)
SELECT id, concurrency_key, part FROM taken ORDER BY rank, turn LIMIT :limit

-- name: claim_chosen
-- The fair claim, second statement: of the candidates (:candidates, a JSON array of
-- [id, concurrency_key] in claim order) start those within their key's free slots and their
-- queue's, as claim does.
WITH started AS (
    SELECT s.key, count(*) AS n
    FROM key_starts AS s JOIN limits AS l ON l.key = s.key
    WHERE l.rate IS NOT NULL AND s.at > :now - l.per
    GROUP BY s.key
),
cand AS (
    SELECT c.key AS ord, json_extract(c.value, '$[0]') AS id,
        json_extract(c.value, '$[1]') AS key
    FROM json_each(:candidates) AS c
),
ranked AS (
    SELECT id, key, ord, row_number() OVER (PARTITION BY key ORDER BY ord) AS n FROM cand
)
UPDATE jobs
SET state = 'running',
    attempt = attempt + 1,
    lease_owner = :owner,
    lease_token = lease_token + 1,
    lease_expires_at = :expires_at,
    started_at = :now,
    updated_at = :now,
    wait_key = NULL
WHERE id IN (
    SELECT ranked.id
    FROM ranked LEFT JOIN limits AS l ON l.key = ranked.key
    WHERE l.key IS NULL
        OR (
            (l.concurrency IS NULL OR ranked.n <= l.concurrency - (
                SELECT count(*) FROM jobs AS r
                WHERE r.state = 'running' AND r.concurrency_key = l.key
                    AND r.lease_expires_at > :now
            ))
            AND (l.rate IS NULL OR ranked.n <= l.rate - coalesce(
                (SELECT n FROM started WHERE started.key = l.key), 0
            ))
        )
    ORDER BY ranked.ord
    LIMIT max(0, coalesce(
        (SELECT global_concurrency FROM queue_configs WHERE name = :queue)
            - (SELECT count(*) FROM jobs AS q
               WHERE q.state = 'running' AND q.queue = :queue AND q.lease_expires_at > :now),
        :limit
    ))
)
RETURNING
    id, kind, queue, payload, state, priority, run_at, attempt, max_attempts, last_error,
    dedupe_key, created_at, updated_at, finished_at, lease_owner, lease_expires_at,
    cancel_requested, started_at, errors, headers, concurrency_key, lease_token, lost_at, workflow,
    partition_key

-- name: serve_partitions
-- The fair claim, third statement: the partitions it started jobs of (:served, a JSON array
-- of partitions in the order it served them) go to the back of the rotation.
INSERT INTO partitions (queue, key, tick, pos, served_at)
SELECT :queue, s.value, (SELECT coalesce(max(tick), 0) + 1 FROM partitions), s.key, :now
FROM json_each(:served) AS s
WHERE true
ON CONFLICT (queue, key) DO UPDATE
SET tick = excluded.tick, pos = excluded.pos, served_at = excluded.served_at

-- name: list_partitions
-- The partitions of :queue with waiting jobs after :after (NULL: from the first), by key, at
-- most :limit: a walk of the partial index, one seek per partition; each one's waiting jobs
-- counted up to :most, its running ones, and its last turn.
WITH RECURSIVE parts (key) AS (
    SELECT (
        SELECT min(partition_key) FROM jobs
        WHERE queue = :queue AND partition_key > coalesce(:after, '')
            AND state IN ('available', 'scheduled', 'suspended')
    )
    UNION ALL
    SELECT (
        SELECT min(partition_key) FROM jobs
        WHERE queue = :queue AND partition_key > parts.key
            AND state IN ('available', 'scheduled', 'suspended')
    )
    FROM parts
    WHERE parts.key IS NOT NULL
),
chosen AS (SELECT key FROM parts WHERE key IS NOT NULL LIMIT :limit),
busy AS (
    SELECT partition_key AS key, count(*) AS n FROM jobs
    WHERE state = 'running' AND queue = :queue AND partition_key IN (SELECT key FROM chosen)
    GROUP BY partition_key
)
SELECT chosen.key,
    (
        SELECT count(*) FROM (
            SELECT 1 FROM jobs
            WHERE queue = :queue AND partition_key = chosen.key
                AND state IN ('available', 'scheduled', 'suspended')
            LIMIT :most
        )
    ),
    coalesce(busy.n, 0),
    p.served_at
FROM chosen
LEFT JOIN busy ON busy.key = chosen.key
LEFT JOIN partitions AS p ON p.queue = :queue AND p.key = chosen.key
ORDER BY chosen.key

-- name: renew
-- :requests is a JSON array of [job_id, token] pairs.
UPDATE jobs
SET lease_expires_at = :expires_at,
    updated_at = :now
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS token
    FROM json_each(:requests)
) AS requests
WHERE jobs.id = requests.id
    AND jobs.lease_token = requests.token
    AND jobs.state = 'running'
    AND jobs.lease_expires_at > :now
RETURNING jobs.id, jobs.lease_token, jobs.cancel_requested

-- name: finalize
-- ?1 is now, ?2 the most errors a job keeps, ?3 the longest message kept in one, ?4 now as
-- JSON text (Python's repr: SQLite's own JSON rendering of a REAL keeps only 15 digits). VALUES gets
-- one "(?, ?, ?, ?, ?, ?, ?, ?)" per request: job id, token, outcome (complete, retry, snooze,
-- discard, cancel, release, suspend), its run_at, its error (or cancel reason, or a suspend's
-- event key), error type, traceback, and a complete's result (compact JSON, or NULL). A
-- suspend whose event is set already is available now.
-- "decided" works out each owned job's next state from the row as it stands: cancel wins
-- over retry, snooze and release; a retry without attempts left is dead. A retry or discard
-- carrying an error appends it to the history, dropping the oldest beyond ?2.
WITH
    params (now, max_errors, max_message, at) AS (SELECT ?1, ?2, ?3, json(?4)),
    requests (id, token, outcome, run_at, error, error_type, traceback, result) AS (
        VALUES {rows}
    ),
    decided AS (
        SELECT
            jobs.id AS id,
            requests.outcome AS outcome,
            requests.run_at AS run_at,
            requests.error AS error,
            requests.result AS result,
            params.now AS now,
            CASE
                WHEN requests.error IS NULL OR requests.outcome NOT IN ('retry', 'discard')
                THEN jobs.errors
                ELSE json_insert(
                    CASE
                        WHEN json_array_length(jobs.errors) >= params.max_errors
                        THEN json_remove(jobs.errors, '$[0]')
                        ELSE jobs.errors
                    END,
                    '$[#]',
                    json_object(
                        'attempt', jobs.attempt,
                        'at', params.at,
                        'owner', jobs.lease_owner,
                        'type', coalesce(requests.error_type, 'Error'),
                        'message', substr(requests.error, 1, params.max_message),
                        'traceback', requests.traceback
                    )
                )
            END AS errors,
            CASE
                WHEN requests.outcome = 'complete' THEN 'succeeded'
                WHEN requests.outcome = 'discard' THEN 'dead'
                WHEN requests.outcome = 'cancel' OR jobs.cancel_requested THEN 'cancelled'
                WHEN requests.outcome = 'retry' AND jobs.attempt >= jobs.max_attempts THEN 'dead'
                WHEN requests.outcome = 'release' THEN 'available'
                WHEN requests.outcome = 'suspend'
                    AND EXISTS (SELECT 1 FROM signals WHERE signals.key = requests.error)
                THEN 'available'
                WHEN requests.outcome = 'suspend' AND requests.run_at > params.now
                THEN 'suspended'
                WHEN requests.run_at > params.now THEN 'scheduled'
                ELSE 'available'
            END AS state
        FROM params, requests
        JOIN jobs ON jobs.id = requests.id AND jobs.lease_token = requests.token
        WHERE jobs.state = 'running'
    )
UPDATE jobs
SET state = decided.state,
    attempt = jobs.attempt - (
        decided.outcome IN ('snooze', 'release', 'suspend')
        AND decided.state IN ('scheduled', 'available', 'suspended')
    ),
    run_at = CASE
        WHEN decided.outcome = 'suspend' AND decided.state = 'available'
        THEN min(decided.run_at, decided.now)
        WHEN decided.outcome IN ('retry', 'snooze', 'suspend')
            AND decided.state IN ('scheduled', 'available', 'suspended')
        THEN decided.run_at
        ELSE jobs.run_at
    END,
    wait_key = CASE WHEN decided.state = 'suspended' THEN decided.error END,
    last_error = CASE
        WHEN decided.outcome = 'suspend' THEN jobs.last_error
        WHEN decided.outcome = 'discard' THEN decided.error
        WHEN decided.outcome = 'retry' AND decided.state <> 'cancelled' THEN decided.error
        ELSE coalesce(decided.error, jobs.last_error)
    END,
    finished_at = CASE
        WHEN decided.state IN ('succeeded', 'cancelled', 'dead') THEN decided.now
    END,
    errors = decided.errors,
    result = CASE WHEN decided.outcome = 'complete' THEN decided.result ELSE jobs.result END,
    lease_expires_at = NULL,
    -- the run that recovered a reaped job has ended (a release hands the recovery on)
    lost_at = CASE WHEN decided.outcome = 'release' THEN jobs.lost_at END,
    updated_at = decided.now
FROM decided
WHERE jobs.id = decided.id
RETURNING jobs.id, jobs.lease_token, jobs.queue, jobs.state, jobs.has_dependents

-- name: finalize_complete
-- The finalize of a batch of successes only (nearly every batch): what finalize does for a
-- complete, without the other outcomes' columns and CASEs. ?1 is now; VALUES gets one
-- "(?, ?, ?)" per request: job id, token, result (compact JSON, or NULL).
WITH
    params (now) AS (SELECT ?1),
    requests (id, token, result) AS (VALUES {rows})
UPDATE jobs
SET state = 'succeeded',
    wait_key = NULL,
    finished_at = (SELECT now FROM params),
    result = requests.result,
    lease_expires_at = NULL,
    lost_at = NULL,
    updated_at = (SELECT now FROM params)
FROM requests
WHERE jobs.id = requests.id AND jobs.lease_token = requests.token AND jobs.state = 'running'
RETURNING jobs.id, jobs.lease_token, jobs.queue, jobs.state, jobs.has_dependents

-- name: expired_leases
SELECT id, kind, queue, attempt, lease_owner, lease_expires_at
FROM jobs
WHERE state = 'running' AND lease_expires_at <= :now
ORDER BY lease_expires_at, id
LIMIT :limit

-- name: reclaim
-- :ids is a JSON array of job ids, all running with an expired lease (read in this transaction).
-- Each lost lease is recorded in the error history (see finalize for its bound and :at).
UPDATE jobs
SET errors = json_insert(
        CASE
            WHEN json_array_length(errors) >= :max_errors THEN json_remove(errors, '$[0]')
            ELSE errors
        END,
        '$[#]',
        json_object(
            'attempt', attempt,
            'at', json(:at),
            'owner', lease_owner,
            'type', 'LeaseExpired',
            'message', 'lease lost by ' || coalesce(lease_owner, '') || CASE
                WHEN NOT cancel_requested AND attempt >= max_attempts THEN ' on the last attempt'
                ELSE ''
            END,
            'traceback', NULL
        )
    ),
    state = CASE
        WHEN cancel_requested THEN 'cancelled'
        WHEN attempt >= max_attempts THEN 'dead'
        ELSE 'available'
    END,
    last_error = CASE
        WHEN NOT cancel_requested AND attempt >= max_attempts
        THEN 'lease lost by ' || coalesce(lease_owner, '') || ' on the last attempt'
        ELSE last_error
    END,
    finished_at = CASE WHEN cancel_requested OR attempt >= max_attempts THEN :now END,
    -- the lost lease's expiry, for the recovery time of the job's next run
    lost_at = CASE WHEN NOT cancel_requested AND attempt < max_attempts THEN lease_expires_at END,
    lease_expires_at = NULL,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, state, has_dependents

-- name: cancel_job
UPDATE jobs
SET cancel_requested = 1,
    state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finished_at = CASE WHEN state = 'running' THEN finished_at ELSE :now END,
    wait_key = NULL,
    updated_at = :now
WHERE id = :id AND state IN ('pending', 'scheduled', 'available', 'running', 'suspended')
RETURNING state

-- name: job_exists
SELECT 1 FROM jobs WHERE id = :id

-- name: record_step
-- Fenced: only under the live lease of :token. A name recorded already keeps its first value
-- (nothing returned then: step_owner tells that case from a stale token).
INSERT INTO steps (job_id, name, value, attempt, recorded_at)
SELECT id, :name, :value, attempt, :now
FROM jobs
WHERE id = :id AND lease_token = :token AND state = 'running' AND lease_expires_at > :now
ON CONFLICT (job_id, name) DO NOTHING
RETURNING 1

-- name: step_owner
SELECT 1
FROM jobs
WHERE id = :id AND lease_token = :token AND state = 'running' AND lease_expires_at > :now

-- name: list_steps
SELECT name, value, attempt, recorded_at
FROM steps
WHERE job_id = :id
ORDER BY recorded_at, name

-- name: insert_signal
INSERT INTO signals (key, value, signalled_at)
VALUES (:key, :value, :now)
ON CONFLICT (key) DO NOTHING
RETURNING 1

-- name: wake_suspended
-- In the transaction of insert_signal, once it stored the event: every job suspended on it.
UPDATE jobs
SET state = 'available',
    run_at = :now,
    wait_key = NULL,
    updated_at = :now
WHERE state = 'suspended' AND wait_key = :key
RETURNING id, queue

-- name: get_signal
SELECT value, signalled_at
FROM signals
WHERE key = :key

-- name: prune_results
-- Oldest finish first, by the partial index of the results still stored (0011); a job that an
-- active job waits for keeps its result (the dependent may yet read it).
UPDATE jobs SET result = NULL
WHERE id IN (
    SELECT j.id FROM jobs AS j
    WHERE j.state = 'succeeded' AND j.result IS NOT NULL AND j.finished_at < :before
        AND NOT EXISTS (
            SELECT 1 FROM job_edges AS e JOIN jobs AS c ON c.id = e.child
            WHERE e.parent = j.id
                AND c.state IN ('pending', 'scheduled', 'available', 'running', 'suspended')
        )
    ORDER BY j.finished_at
    LIMIT :limit
)
RETURNING 1

-- name: prune_signals
DELETE FROM signals
WHERE key IN (
    SELECT key FROM signals WHERE signalled_at < :before ORDER BY signalled_at LIMIT :limit
)
RETURNING 1

-- name: acquire_leader
-- Keeps the epoch when the holder renews a live lease; any other taking bumps it.
INSERT INTO leaders (name, holder, epoch, expires_at)
VALUES (:name, :holder, 1, :expires_at)
ON CONFLICT (name) DO UPDATE
SET epoch = CASE
        WHEN leaders.holder IS NOT NULL AND leaders.expires_at > :now THEN leaders.epoch
        ELSE leaders.epoch + 1
    END,
    holder = excluded.holder,
    expires_at = excluded.expires_at
WHERE leaders.holder IS NULL OR leaders.expires_at <= :now OR leaders.holder = excluded.holder
RETURNING epoch, expires_at

-- name: release_leader
UPDATE leaders
SET holder = NULL
WHERE name = :name AND holder = :holder
RETURNING expires_at > :now

-- name: get_cursor
SELECT value FROM cursors WHERE name = :name

-- name: create_cursor
INSERT INTO cursors (name, value)
VALUES (:name, :new)
ON CONFLICT (name) DO NOTHING
RETURNING 1

-- name: advance_cursor
UPDATE cursors
SET value = :new
WHERE name = :name AND value = :expected
RETURNING 1

-- name: get_queue_config
SELECT name, paused, concurrency, retention, global_concurrency
FROM queue_configs WHERE name = :name

-- name: set_queue_config
INSERT INTO queue_configs (name, paused, concurrency, retention, global_concurrency)
VALUES (:name, :paused, :concurrency, :retention, :global_concurrency)
ON CONFLICT (name) DO UPDATE
SET paused = excluded.paused,
    concurrency = excluded.concurrency,
    retention = excluded.retention,
    global_concurrency = excluded.global_concurrency

-- name: list_queue_configs
SELECT name, paused, concurrency, retention, global_concurrency
FROM queue_configs ORDER BY name

-- name: set_limit
INSERT INTO limits (key, concurrency, rate, per)
VALUES (:key, :concurrency, :rate, :per)
ON CONFLICT (key) DO UPDATE
SET concurrency = excluded.concurrency, rate = excluded.rate, per = excluded.per

-- name: delete_limit
DELETE FROM limits WHERE key = :key

-- name: forget_starts
-- A key without a rate keeps no log.
DELETE FROM key_starts WHERE key = :key

-- name: cool_down
-- A cool-down only ever grows; :id is the job whose applied finalize asked for it.
INSERT INTO cooldowns (key, until)
SELECT concurrency_key, :until FROM jobs WHERE id = :id AND concurrency_key IS NOT NULL
ON CONFLICT (key) DO UPDATE SET until = max(until, excluded.until)

-- name: reopens_in
-- The rate-th newest start in a key's window leaves it at (that start + per); a cool-down
-- ends at its until. Only keys held now count.
SELECT min(wait) FROM (
    SELECT at + per - :now AS wait FROM (
        SELECT s.at, l.per, l.rate,
            row_number() OVER (PARTITION BY s.key ORDER BY s.at DESC) AS newest
        FROM key_starts AS s JOIN limits AS l ON l.key = s.key
        WHERE l.rate IS NOT NULL AND s.at > :now - l.per
    ) AS window_log
    WHERE newest = rate
    UNION ALL
    SELECT until - :now FROM cooldowns WHERE until > :now
)

-- name: list_limits
-- Every key with a limit or a live cool-down.
WITH keys AS (
    SELECT key FROM limits
    UNION
    SELECT key FROM cooldowns WHERE until > :now
)
SELECT
    k.key,
    l.concurrency,
    (
        SELECT count(*) FROM jobs AS r
        WHERE r.state = 'running' AND r.concurrency_key = k.key AND r.lease_expires_at > :now
    ),
    (
        SELECT count(*) FROM jobs AS w
        WHERE w.state IN ('available', 'scheduled') AND w.concurrency_key = k.key
    ),
    l.rate,
    l.per,
    CASE WHEN l.rate IS NULL THEN 0 ELSE (
        SELECT count(*) FROM key_starts AS s WHERE s.key = k.key AND s.at > :now - l.per
    ) END,
    (SELECT until FROM cooldowns AS c WHERE c.key = k.key AND c.until > :now)
FROM keys AS k LEFT JOIN limits AS l ON l.key = k.key
ORDER BY k.key

-- name: cleanup
DELETE FROM jobs
WHERE id IN (
    SELECT id
    FROM jobs
    WHERE finished_at IS NOT NULL
        AND finished_at < :finished_before
        AND (:queue IS NULL OR queue = :queue)
        -- a workflow goes whole: only once every job of it is final and old enough
        AND (
            workflow IS NULL
            OR NOT EXISTS (
                SELECT 1 FROM jobs AS w
                WHERE w.workflow = jobs.workflow
                    AND (w.finished_at IS NULL OR w.finished_at >= :finished_before)
            )
        )
    ORDER BY finished_at, id
    LIMIT :limit
)
RETURNING 1

-- name: counts
SELECT
    queue,
    CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= :now THEN 'available' ELSE state END AS shown,
    count(*)
FROM jobs
WHERE :queue IS NULL OR queue = :queue
GROUP BY queue, shown
ORDER BY queue

-- name: get_job
SELECT
    id, kind, queue, payload,
    CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= :now THEN 'available' ELSE state END,
    priority, run_at, attempt, max_attempts, last_error, dedupe_key, created_at, updated_at,
    finished_at, lease_owner, lease_expires_at, cancel_requested, started_at, errors, headers,
    concurrency_key, result, wait_key, workflow, partition_key
FROM jobs
WHERE id = :id

-- name: job_filter
-- The WHERE clause of a JobFilter, shared by list_jobs and match_jobs: each parameter NULL
-- means "any". :states and :ids are JSON arrays; "shown" is the state as jobs read (a due
-- scheduled job is available). The error text matches ignoring ASCII case (SQLite's lower()).
(:queue IS NULL OR queue = :queue)
AND (:kind IS NULL OR kind = :kind)
AND (:workflow IS NULL OR workflow = :workflow)
AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
AND (:created_after IS NULL OR created_at >= :created_after)
AND (:created_before IS NULL OR created_at < :created_before)
AND (:finished_after IS NULL OR finished_at >= :finished_after)
AND (:finished_before IS NULL OR finished_at < :finished_before)
AND (:error IS NULL OR instr(lower(last_error), lower(:error)) > 0)
AND (:after_id IS NULL OR id > :after_id)
AND (:before_id IS NULL OR id < :before_id)
AND (
    :states IS NULL
    OR CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= :now THEN 'available' ELSE state END
        IN (SELECT value FROM json_each(:states))
)

-- name: list_jobs
-- The filter placeholder is job_filter; the order one ASC (oldest first) or DESC (newest).
SELECT
    id, kind, queue, payload,
    CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= :now THEN 'available' ELSE state END,
    priority, run_at, attempt, max_attempts, last_error, dedupe_key, created_at, updated_at,
    finished_at, lease_owner, lease_expires_at, cancel_requested, started_at, errors, headers,
    concurrency_key, result, wait_key, workflow, partition_key
FROM jobs
WHERE {filter}
ORDER BY id {order}
LIMIT :limit

-- name: match_jobs
-- The ids of up to :limit jobs an operator action takes: they match the filter (job_filter,
-- with the cursors NULL), and read (as "shown") in one of :eligible (a JSON array);
-- with :uncancelled, only jobs nobody has asked to cancel yet; with :undoomed, none a failed
-- parent cancels (retry_jobs: it would be cancelled again at once).
SELECT id
FROM jobs
WHERE {filter}
    AND CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= :now THEN 'available' ELSE state END
        IN (SELECT value FROM json_each(:eligible))
    AND NOT (:uncancelled AND cancel_requested)
    AND NOT (
        :undoomed
        AND EXISTS (
            SELECT 1 FROM job_edges AS f
            WHERE f.child = jobs.id AND f.on_failure = 'cancel'
                AND f.parent_state IN ('cancelled', 'dead')
        )
    )
ORDER BY id
LIMIT :limit

-- name: retry_jobs
-- :ids (a JSON array) were chosen by match_jobs in this transaction. A fresh budget; a final
-- job gives up its dedupe key, which a newer active job may hold.
UPDATE jobs
SET state = 'available',
    attempt = 0,
    cancel_requested = 0,
    finished_at = NULL,
    lost_at = NULL,
    dedupe_key = CASE WHEN state IN ('dead', 'cancelled') THEN NULL ELSE dedupe_key END,
    wait_key = NULL,
    run_at = :now,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, queue

-- name: discard_jobs
-- :ids (a JSON array) were chosen by match_jobs in this transaction.
UPDATE jobs
SET state = 'dead',
    finished_at = :now,
    last_error = :reason,
    wait_key = NULL,
    errors = json_insert(
        CASE
            WHEN json_array_length(errors) >= :max_errors THEN json_remove(errors, '$[0]')
            ELSE errors
        END,
        '$[#]',
        json_object(
            'attempt', attempt,
            'at', json(:at),
            'owner', NULL,
            'type', 'Discarded',
            'message', substr(:reason, 1, :max_message),
            'traceback', NULL
        )
    ),
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id

-- name: delete_jobs
DELETE FROM jobs
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id

-- name: cancel_jobs
-- :ids (a JSON array) were chosen by match_jobs in this transaction: as cancel_job, each.
UPDATE jobs
SET cancel_requested = 1,
    state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END,
    finished_at = CASE WHEN state = 'running' THEN finished_at ELSE :now END,
    wait_key = NULL,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id

-- name: register_node
INSERT INTO nodes (id, host, pid, queues, slots, version, started_at, heartbeat, last_seen)
VALUES (:id, :host, :pid, :queues, :slots, :version, :started_at, :heartbeat, :now)
ON CONFLICT (id) DO UPDATE
SET host = excluded.host,
    pid = excluded.pid,
    queues = excluded.queues,
    slots = excluded.slots,
    version = excluded.version,
    started_at = excluded.started_at,
    heartbeat = excluded.heartbeat,
    last_seen = excluded.last_seen

-- name: node_heartbeat
UPDATE nodes SET last_seen = :now WHERE id = :id RETURNING 1

-- name: forget_node
DELETE FROM nodes WHERE id = :id RETURNING 1

-- name: list_nodes
SELECT id, host, pid, queues, slots, version, started_at, heartbeat, last_seen
FROM nodes
ORDER BY id

-- name: prune_nodes
DELETE FROM nodes WHERE last_seen < :seen_before RETURNING 1

-- name: list_leaders
-- Released leases keep their row with a NULL holder; expired ones are not live either.
SELECT name, holder, epoch, expires_at
FROM leaders
WHERE holder IS NOT NULL AND expires_at > :now
ORDER BY name

-- name: add_stats
-- :cells is a JSON array of [queue, minute, metric, value], distinct (queue, minute, metric).
INSERT INTO stats (queue, minute, metric, value)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]')
FROM json_each(:cells)
WHERE true
ON CONFLICT (queue, minute, metric) DO UPDATE
SET value = stats.value + excluded.value

-- name: list_stats
SELECT queue, minute, metric, value
FROM stats
WHERE (:queue IS NULL OR queue = :queue)
    AND (:since IS NULL OR minute >= :since)
    AND (:until IS NULL OR minute < :until)
ORDER BY minute, queue

-- name: prune_stats
DELETE FROM stats WHERE minute < :before RETURNING queue, minute

-- name: parent_states
-- The stored state of each existing job :ids (a JSON array) names as a parent.
SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(:ids))

-- name: insert_edges
-- :edges is a JSON array of [child, parent, on_failure, parent_state or null].
INSERT INTO job_edges (child, parent, on_failure, parent_state)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]')
FROM json_each(:edges)
WHERE true
ON CONFLICT (child, parent) DO NOTHING

-- name: mark_parents
UPDATE jobs SET has_dependents = 1
WHERE id IN (SELECT value FROM json_each(:ids)) AND NOT has_dependents

-- name: start_pending
-- New jobs (:ids, a JSON array) whose parents have not all decided: they wait.
UPDATE jobs SET state = 'pending' WHERE id IN (SELECT value FROM json_each(:ids))

-- name: start_cancelled
-- A new job a parent's failure dooms: cancelled at once, naming the parent.
UPDATE jobs SET state = 'cancelled', finished_at = :now, last_error = :reason WHERE id = :id

-- name: cancel_parents
-- delete_jobs: an active parent about to be deleted counts as cancelled for its dependents
-- (jobs_settle runs on this update); :ids (a JSON array) were chosen in this transaction.
UPDATE jobs
SET state = 'cancelled', finished_at = :now, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
    AND has_dependents
    AND state IN ('pending', 'scheduled', 'available')

-- name: list_edges
-- The edges touching :ids (a JSON array; NULL: none) as child or parent, and those of the
-- jobs of :workflow (NULL: none) as children.
SELECT child, parent, on_failure, parent_state
FROM job_edges
WHERE child IN (SELECT value FROM json_each(:ids))
    OR parent IN (SELECT value FROM json_each(:ids))
    OR child IN (SELECT id FROM jobs WHERE :workflow IS NOT NULL AND workflow = :workflow)
ORDER BY child, parent

-- name: list_workflows
SELECT
    workflow,
    CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= :now THEN 'available' ELSE state END AS shown,
    count(*),
    min(created_at),
    max(finished_at),
    sum(finished_at IS NULL)
FROM jobs
WHERE workflow IS NOT NULL
    AND (:workflow IS NULL OR workflow = :workflow)
    AND (:after IS NULL OR workflow > :after)
    AND workflow IN (
        SELECT DISTINCT workflow FROM jobs
        WHERE workflow IS NOT NULL
            AND (:workflow IS NULL OR workflow = :workflow)
            AND (:after IS NULL OR workflow > :after)
        ORDER BY workflow
        LIMIT :limit
    )
GROUP BY workflow, shown
ORDER BY workflow
