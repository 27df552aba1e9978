-- Named queries of the PostgreSQL transport. Placeholders, substituted once when the transport
-- opens: {schema} (the quoted schema name), {channel} (the NOTIFY channel as a string literal)
-- and {notify} (true or false: whether writes send NOTIFY). "now" is always the last parameter:
-- the injected clock's time, or NULL for the database clock (statement_timestamp(), the same
-- value for every row of a statement). Every write is one statement, so it is atomic on its own,
-- and its NOTIFY is delivered when it commits.

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    version integer PRIMARY KEY,
    applied_at double precision NOT NULL
);

-- name: migration_lock
SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0));

-- name: schema_version_exists
SELECT EXISTS (
    SELECT 1 FROM information_schema.tables
    WHERE table_schema = $1::text AND table_name = 'schema_version'
);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM {schema}.schema_version;

-- name: record_version
INSERT INTO {schema}.schema_version (version, applied_at)
VALUES ($1::integer, extract(epoch FROM clock_timestamp())::float8);

-- name: enqueue
-- Ids are drawn before the insert so each request finds its own row again; a request whose
-- dedupe key matches an active job inserts nothing and reports that job instead. A NULL
-- run_at, dedupe_key, headers, concurrency_key or partition_key array stands for all NULLs (a
-- NULL headers entry: none).
WITH now AS (
    SELECT coalesce($10::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
req AS MATERIALIZED (
    SELECT r.ord, r.kind, r.queue, r.payload, r.priority, r.max_attempts, r.dedupe_key,
           r.headers, r.concurrency_key, r.partition_key,
           coalesce(r.run_at, now.t + r.delay) AS run_at,
           now.t AS now, nextval('{schema}.jobs_id_seq') AS id
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::integer[], $5::float8[], $6::float8[],
        $7::integer[], $8::text[], $9::text[], $11::text[], $12::text[]
    ) WITH ORDINALITY AS r(kind, queue, payload, priority, run_at, delay, max_attempts,
                           dedupe_key, headers, concurrency_key, partition_key, ord),
    now
),
ins AS (
    INSERT INTO {schema}.jobs AS j (
        id, kind, queue, payload, state, priority, run_at, max_attempts, dedupe_key,
        created_at, updated_at, headers, concurrency_key, partition_key
    )
    SELECT id, kind, queue, payload::jsonb,
           CASE WHEN run_at > now THEN 'scheduled' ELSE 'available' END,
           priority, run_at, max_attempts, dedupe_key, now, now,
           coalesce(headers::jsonb, '{}'::jsonb), concurrency_key, partition_key
    FROM req
    ORDER BY ord
    ON CONFLICT (queue, dedupe_key)
        WHERE dedupe_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'suspended')
        DO NOTHING
    RETURNING j.id, j.queue, j.state
),
woken AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q
    WHERE {notify}
)
SELECT coalesce(
           ins.id,
           (SELECT e.id FROM {schema}.jobs AS e
            WHERE e.queue = req.queue AND e.dedupe_key = req.dedupe_key
              AND e.state IN ('scheduled', 'available', 'running', 'suspended'))
       ) AS job_id,
       ins.id IS NULL AS deduplicated,
       (SELECT count(*) FROM woken) AS woken
FROM req LEFT JOIN ins ON ins.id = req.id
ORDER BY req.ord;

-- name: enqueue_plain
-- enqueue for a batch without dedupe keys: nothing can conflict, so a plain INSERT (no
-- conflict arbiter, no lookup of existing jobs). The identity default draws each id as the
-- rows arrive in request order, so the ids sorted are the requests in order. A NULL
-- concurrency_key or partition_key array stands for all NULLs.
WITH now AS (
    SELECT coalesce($9::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
ins AS (
    INSERT INTO {schema}.jobs (
        kind, queue, payload, state, priority, run_at, max_attempts, created_at, updated_at,
        headers, concurrency_key, partition_key
    )
    SELECT r.kind, r.queue, r.payload::jsonb,
           CASE WHEN coalesce(r.run_at, now.t + r.delay) > now.t THEN 'scheduled'
                ELSE 'available' END,
           r.priority, coalesce(r.run_at, now.t + r.delay), r.max_attempts, now.t, now.t,
           coalesce(r.headers::jsonb, '{}'::jsonb), r.concurrency_key, r.partition_key
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::integer[], $5::float8[], $6::float8[],
        $7::integer[], $8::text[], $10::text[], $11::text[]
    ) WITH ORDINALITY AS r(kind, queue, payload, priority, run_at, delay, max_attempts,
                           headers, concurrency_key, partition_key, ord),
    now
    ORDER BY r.ord
    RETURNING id, queue, state
),
woken AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q
    WHERE {notify}
)
SELECT ins.id AS job_id, false AS deduplicated, (SELECT count(*) FROM woken) AS woken
FROM ins
ORDER BY ins.id;

-- name: claim
-- The claim of a store without limits: one statement. While any limit exists, or the queue
-- has waiting partitioned jobs, it claims nothing (see claim_candidates), and the transport
-- takes the limited path.
WITH now AS (
    SELECT coalesce($5::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
due AS (
    SELECT id FROM {schema}.jobs
    WHERE queue = $1::text
      AND state IN ('available', 'scheduled', 'suspended')
      AND run_at <= (SELECT t FROM now)
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = $1::text AND paused)
      AND NOT EXISTS (SELECT 1 FROM {schema}.limits)
      AND NOT EXISTS (SELECT 1 FROM {schema}.cooldowns WHERE until > (SELECT t FROM now))
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.queues
          WHERE name = $1::text AND global_concurrency IS NOT NULL
      )
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.jobs AS f
          WHERE f.queue = $1::text AND f.partition_key IS NOT NULL
            AND f.state IN ('available', 'scheduled', 'suspended')
      )
    ORDER BY priority, run_at, id
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.jobs AS j
SET state = 'running',
    attempt = j.attempt + 1,
    lease_token = nextval('{schema}.lease_tokens'),
    lease_owner = $3::text,
    lease_expires_at = (SELECT t FROM now) + $4::float8,
    started_at = (SELECT t FROM now),
    updated_at = (SELECT t FROM now),
    wait_key = NULL
-- An id array, not a join: the plan stays a primary-key lookup per claimed row whatever
-- the batch size (a generic plan cannot know the LIMIT and would hash the whole table).
WHERE j.id = ANY (ARRAY(SELECT id FROM due))
RETURNING j.id, j.kind, j.queue, j.payload, j.state, j.priority, j.run_at, j.attempt,
          j.max_attempts, j.last_error, j.dedupe_key, j.created_at, j.updated_at,
          j.finished_at, j.lease_owner, j.lease_expires_at, j.cancel_requested, j.started_at,
          j.errors, j.headers, j.concurrency_key, j.lease_token, j.lost_at, j.workflow,
          j.partition_key;

-- name: any_limits
-- Whether any limit exists (the store's), and whether queue $2 has waiting partitioned jobs.
SELECT EXISTS (SELECT 1 FROM {schema}.limits)
    OR EXISTS (SELECT 1 FROM {schema}.queues WHERE global_concurrency IS NOT NULL)
    OR EXISTS (
        SELECT 1 FROM {schema}.cooldowns
        WHERE until > coalesce($1::float8, extract(epoch FROM statement_timestamp())::float8)
    ),
    EXISTS (
        SELECT 1 FROM {schema}.jobs
        WHERE queue = $2::text AND partition_key IS NOT NULL
          AND state IN ('available', 'scheduled', 'suspended')
    );

-- name: claim_candidates
-- The limited claim, first of two statements of one transaction: lock up to $2 due jobs,
-- passing over the keys at their limit as this statement's snapshot sees them, then lock the
-- limits row of every key among them, in key order (claimers never wait on each other's
-- jobs: SKIP LOCKED). A claimer that holds a key's row is the only one counting and starting
-- that key's jobs until it commits, and the next statement, with a snapshot taken after the
-- lock was granted, counts every lease committed before. The limited column says whether any
-- limit exists at all, the fair one whether the queue has waiting partitioned jobs.
-- A queue with waiting partitioned jobs takes its candidates in fair-share order instead (see
-- *Fair share* in transports/_base.py): parts walks the partitions of its waiting jobs, one
-- index seek each; eligible keeps those with a due job of a key not full; chosen takes the $2
-- served least recently (never first, then by key); each gives at most $2 - n + 1 jobs (n
-- chosen), all that a round-by-round take of $2 can use, skipping jobs other claimers hold
-- locked; the take is by (rank in partition, turn), and part names each one's partition ('':
-- the unpartitioned).
WITH RECURSIVE now AS (
    SELECT coalesce($3::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
-- The live leases are counted by key from the running jobs (few), not per limit (many).
live AS (
    SELECT concurrency_key AS key, count(*) AS n FROM {schema}.jobs
    WHERE state = 'running' AND concurrency_key IS NOT NULL
      AND lease_expires_at > (SELECT t FROM now)
    GROUP BY concurrency_key
),
-- The starts in each key's rate window, from the log (which keeps about those only).
started AS (
    SELECT s.key, count(*) AS n
    FROM {schema}.key_starts AS s JOIN {schema}.limits AS l ON l.key = s.key
    WHERE l.rate IS NOT NULL AND s.at > (SELECT t FROM now) - l.per
    GROUP BY s.key
),
-- Full: at its concurrency limit, its rate window full, or cooling down.
full_keys AS (
    SELECT l.key FROM {schema}.limits AS l JOIN live ON live.key = l.key
    WHERE l.concurrency <= live.n
    UNION ALL
    SELECT key FROM {schema}.limits WHERE concurrency <= 0
    UNION ALL
    SELECT l.key FROM {schema}.limits AS l JOIN started ON started.key = l.key
    WHERE l.rate <= started.n
    UNION ALL
    SELECT key FROM {schema}.cooldowns WHERE until > (SELECT t FROM now)
),
-- A queue with a cluster-wide cap: its row is locked first, before any key's (candidates
-- reads this), so every claimer takes its locks in one order.
queue_lock AS (
    SELECT name FROM {schema}.queues
    WHERE name = $1::text AND global_concurrency IS NOT NULL
    FOR UPDATE
),
fair AS (
    SELECT EXISTS (
        SELECT 1 FROM {schema}.jobs
        WHERE queue = $1::text AND partition_key IS NOT NULL
          AND state IN ('available', 'scheduled', 'suspended')
    ) AS fair
),
plain AS (
    SELECT id, concurrency_key, priority, run_at FROM {schema}.jobs
    WHERE queue = $1::text
      AND NOT (SELECT fair FROM fair)
      AND (SELECT count(*) FROM queue_lock) >= 0
      AND state IN ('available', 'scheduled', 'suspended')
      AND run_at <= (SELECT t FROM now)
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = $1::text AND paused)
      AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
    ORDER BY priority, run_at, id
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
parts (key) AS (
    SELECT (
        SELECT min(partition_key) FROM {schema}.jobs
        WHERE queue = $1::text AND partition_key IS NOT NULL
          AND state IN ('available', 'scheduled', 'suspended')
    )
    WHERE (SELECT fair FROM fair)
    UNION ALL
    SELECT (
        SELECT min(partition_key) FROM {schema}.jobs
        WHERE queue = $1::text AND partition_key > parts.key
          AND state IN ('available', 'scheduled', 'suspended')
    )
    FROM parts
    WHERE parts.key IS NOT NULL
),
-- (LATERAL ... LIMIT 1: one seek per partition, whatever the planner believes of the sizes)
eligible (key) AS (
    SELECT parts.key FROM parts CROSS JOIN LATERAL (
        SELECT 1 FROM {schema}.jobs
        WHERE queue = $1::text AND partition_key = parts.key
          AND state IN ('available', 'scheduled', 'suspended')
          AND run_at <= (SELECT t FROM now)
          AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
        LIMIT 1
    ) AS head
    WHERE parts.key IS NOT NULL
    UNION ALL
    SELECT '' WHERE (SELECT fair FROM fair) AND EXISTS (
        SELECT 1 FROM {schema}.jobs
        WHERE queue = $1::text AND partition_key IS NULL
          AND state IN ('available', 'scheduled', 'suspended')
          AND run_at <= (SELECT t FROM now)
          AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
    )
),
chosen AS (
    SELECT e.key,
           row_number() OVER (ORDER BY p.tick NULLS FIRST, p.pos, e.key COLLATE "C") AS turn
    FROM eligible AS e
    LEFT JOIN {schema}.partitions AS p ON p.queue = $1::text AND p.key = e.key
    WHERE (SELECT count(*) FROM queue_lock) >= 0
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = $1::text AND paused)
    ORDER BY turn
    LIMIT $2::integer
),
room AS (SELECT $2::integer - count(*) + 1 AS each FROM chosen),
named AS (
    SELECT t.id, t.concurrency_key, t.priority, t.run_at, c.key AS part, c.turn
    FROM chosen AS c CROSS JOIN LATERAL (
        SELECT id, concurrency_key, priority, run_at FROM {schema}.jobs
        WHERE c.key <> '' AND queue = $1::text AND partition_key = c.key
          AND state IN ('available', 'scheduled', 'suspended')
          AND run_at <= (SELECT t FROM now)
          AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
        ORDER BY priority, run_at, id
        LIMIT (SELECT each FROM room)
        FOR UPDATE SKIP LOCKED
    ) AS t
),
unnamed AS (
    SELECT t.id, t.concurrency_key, t.priority, t.run_at, c.key AS part, c.turn
    FROM chosen AS c CROSS JOIN LATERAL (
        SELECT id, concurrency_key, priority, run_at FROM {schema}.jobs
        WHERE c.key = '' AND queue = $1::text AND partition_key IS NULL
          AND state IN ('available', 'scheduled', 'suspended')
          AND run_at <= (SELECT t FROM now)
          AND (concurrency_key IS NULL OR concurrency_key NOT IN (SELECT key FROM full_keys))
        ORDER BY priority, run_at, id
        LIMIT (SELECT each FROM room)
        FOR UPDATE SKIP LOCKED
    ) AS t
),
taken AS (
    SELECT id, concurrency_key, priority, run_at, part, turn,
           row_number() OVER (PARTITION BY part ORDER BY priority, run_at, id) AS rank
    FROM (SELECT * FROM named UNION ALL SELECT * FROM unnamed) AS both_kinds
    ORDER BY rank, turn
    LIMIT $2::integer
),
candidates AS (
    SELECT id, concurrency_key, priority, run_at, '' AS part, 0::bigint AS rank, 0::bigint AS turn
    FROM plain
    UNION ALL
    SELECT id, concurrency_key, priority, run_at, part, rank, turn FROM taken
),
locked AS (
    SELECT l.key FROM {schema}.limits AS l
    WHERE l.key IN (SELECT concurrency_key FROM candidates)
    ORDER BY l.key
    FOR UPDATE
)
SELECT c.id, c.concurrency_key, (SELECT count(*) FROM locked) AS locked,
       EXISTS (SELECT 1 FROM {schema}.limits)
           OR EXISTS (SELECT 1 FROM {schema}.queues WHERE global_concurrency IS NOT NULL)
           OR EXISTS (SELECT 1 FROM {schema}.cooldowns WHERE until > (SELECT t FROM now))
           AS limited,
       c.part, (SELECT fair FROM fair) AS fair
FROM candidates AS c
ORDER BY c.rank, c.turn, c.priority, c.run_at, c.id;

-- name: claim_chosen
-- The limited claim, second statement: of the locked candidates ($1 ids, $2 keys, in claim
-- order) start those within their key's free slots (live leases and starts in its rate
-- window, counted now, under the key's row lock) and their queue's ($6), unless the key
-- cools down; then log the starts of each rate-limited key and forget those out of its window.
-- A fair claim ($8) also sends the partitions it started jobs of ($7, each candidate's; '':
-- the unpartitioned) to the back of the rotation, in the order it served them (rows upserted
-- in key order, so two claimers lock them in one order).
WITH now AS (
    SELECT coalesce($5::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
cand AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $7::text[]) WITH ORDINALITY
        AS c(id, key, part, ord)
),
ranked AS (
    SELECT id, key, ord, row_number() OVER (PARTITION BY key ORDER BY ord) AS n FROM cand
),
-- The starts in the window of each rate-limited key among the candidates: counted once per
-- key (the log holds up to `rate` rows of each), not once per candidate: MATERIALIZED, or
-- the planner inlines it into the per-candidate filter.
started AS MATERIALIZED (
    SELECT s.key, count(*) AS n
    FROM {schema}.key_starts AS s JOIN {schema}.limits AS l ON l.key = s.key
    WHERE s.key IN (SELECT key FROM cand) AND l.rate IS NOT NULL
      AND s.at > (SELECT t FROM now) - l.per
    GROUP BY s.key
),
chosen AS (
    SELECT ranked.id
    FROM ranked LEFT JOIN {schema}.limits AS l ON l.key = ranked.key
    WHERE NOT EXISTS (
           SELECT 1 FROM {schema}.cooldowns AS c
           WHERE c.key = ranked.key AND c.until > (SELECT t FROM now)
       )
      AND (l.key IS NULL OR (
           (l.concurrency IS NULL OR ranked.n <= l.concurrency - (
               SELECT count(*) FROM {schema}.jobs AS r
               WHERE r.state = 'running' AND r.concurrency_key = l.key
                 AND r.lease_expires_at > (SELECT t FROM now)
           ))
           AND (l.rate IS NULL OR ranked.n <= l.rate - coalesce(
               (SELECT started.n FROM started WHERE started.key = l.key), 0
           ))
       ))
    ORDER BY ranked.ord
    -- A queue's cluster-wide cap ($6), its row locked by claim_candidates: its free slots
    -- (NULL, no cap, is no LIMIT).
    LIMIT (
        SELECT greatest(0, q.global_concurrency - (
            SELECT count(*) FROM {schema}.jobs AS r
            WHERE r.state = 'running' AND r.queue = $6::text
              AND r.lease_expires_at > (SELECT t FROM now)
        ))
        FROM {schema}.queues AS q
        WHERE q.name = $6::text AND q.global_concurrency IS NOT NULL
    )
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = 'running',
        attempt = j.attempt + 1,
        lease_token = nextval('{schema}.lease_tokens'),
        lease_owner = $3::text,
        lease_expires_at = (SELECT t FROM now) + $4::float8,
        started_at = (SELECT t FROM now),
        updated_at = (SELECT t FROM now),
        wait_key = NULL
    WHERE j.id = ANY (ARRAY(SELECT id FROM chosen))
    RETURNING j.id, j.kind, j.queue, j.payload, j.state, j.priority, j.run_at, j.attempt,
              j.max_attempts, j.last_error, j.dedupe_key, j.created_at, j.updated_at,
              j.finished_at, j.lease_owner, j.lease_expires_at, j.cancel_requested,
              j.started_at, j.errors, j.headers, j.concurrency_key, j.lease_token, j.lost_at,
              j.workflow, j.partition_key
),
-- Every data-modifying WITH runs to completion, read or not, on the statement's snapshot.
forgotten AS (
    DELETE FROM {schema}.key_starts AS s
    USING {schema}.limits AS l
    WHERE l.key = s.key AND l.rate IS NOT NULL
      AND s.key IN (SELECT concurrency_key FROM upd)
      AND s.at <= (SELECT t FROM now) - l.per
),
logged AS (
    INSERT INTO {schema}.key_starts (key, at)
    SELECT upd.concurrency_key, (SELECT t FROM now)
    FROM upd JOIN {schema}.limits AS l ON l.key = upd.concurrency_key
    WHERE l.rate IS NOT NULL
),
tick AS MATERIALIZED (SELECT nextval('{schema}.partition_ticks') AS t),
served AS (
    INSERT INTO {schema}.partitions AS p (queue, key, tick, pos, served_at)
    SELECT $6::text, s.part, (SELECT t FROM tick), s.pos, (SELECT t FROM now)
    FROM (
        SELECT cand.part, row_number() OVER (ORDER BY min(cand.ord)) AS pos
        FROM upd JOIN cand ON cand.id = upd.id
        GROUP BY cand.part
    ) AS s
    WHERE $8::boolean
    ORDER BY s.part
    ON CONFLICT (queue, key) DO UPDATE
    SET tick = excluded.tick, pos = excluded.pos, served_at = excluded.served_at
)
SELECT * FROM upd;

-- name: renew
-- Only a live lease is extended: an expired one stays expired even if nobody reaped it yet.
-- A token is set only while its job runs (claim sets it, every way out clears it), so
-- matching id and token is the whole fencing check. Requests must be distinct pairs.
WITH now AS (
    SELECT coalesce($4::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
req AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS r(id, token, ord)
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET lease_expires_at = now.t + $3::float8, updated_at = now.t
    FROM req, now
    WHERE j.id = req.id AND j.lease_token = req.token AND j.lease_expires_at > now.t
    RETURNING req.ord, j.cancel_requested
)
SELECT CASE
           WHEN upd.ord IS NULL THEN 'lost'
           WHEN upd.cancel_requested THEN 'cancel_requested'
           ELSE 'renewed'
       END
FROM req LEFT JOIN upd ON upd.ord = req.ord
ORDER BY req.ord;

-- name: finalize
-- One UPDATE fenced by (id, token): a row changed by a concurrent reap is re-checked and
-- skipped, and every new value is computed from the row as it then stands. The outcome
-- rules (see Transport.finalize) are spelled out per column. Requests must be distinct pairs.
-- A NULL run_at, error, error type or traceback array stands for all NULLs. A retry or
-- discard carrying an error appends it to the history ({max_errors} kept, the newest; its
-- message cut to {max_message} characters).
WITH now AS (
    SELECT coalesce($8::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
req AS (
    SELECT * FROM unnest(
        $1::bigint[], $2::bigint[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::text[],
        $9::text[], $10::boolean[]
    ) WITH ORDINALITY AS r(
        id, token, action, run_at, error, error_type, traceback, result, cool, ord
    )
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE
            WHEN req.action = 'complete' THEN 'succeeded'
            WHEN req.action = 'discard' THEN 'dead'
            WHEN req.action = 'cancel' OR j.cancel_requested THEN 'cancelled'
            WHEN req.action = 'retry' AND j.attempt >= j.max_attempts THEN 'dead'
            WHEN req.action = 'release' OR req.run_at <= now.t THEN 'available'
            -- A suspend whose event is set already is available now.
            WHEN req.action = 'suspend'
             AND EXISTS (SELECT 1 FROM {schema}.signals AS s WHERE s.key = req.error)
                THEN 'available'
            WHEN req.action = 'suspend' THEN 'suspended'
            ELSE 'scheduled'
        END,
        -- Snooze, release and suspend give the attempt back (unless a cancel ends the job).
        attempt = CASE
            WHEN req.action IN ('snooze', 'release', 'suspend') AND NOT j.cancel_requested
                THEN j.attempt - 1
            ELSE j.attempt
        END,
        run_at = CASE
            WHEN j.cancel_requested THEN j.run_at
            WHEN req.action = 'suspend'
             AND EXISTS (SELECT 1 FROM {schema}.signals AS s WHERE s.key = req.error)
                THEN least(req.run_at, now.t)
            WHEN req.action IN ('snooze', 'suspend') THEN req.run_at
            WHEN req.action = 'retry' AND j.attempt < j.max_attempts THEN req.run_at
            ELSE j.run_at
        END,
        -- The event key a suspended job waits for (a suspend carries it as its error).
        wait_key = CASE
            WHEN req.action = 'suspend' AND NOT j.cancel_requested AND req.run_at > now.t
             AND NOT EXISTS (SELECT 1 FROM {schema}.signals AS s WHERE s.key = req.error)
                THEN req.error
        END,
        -- A retry records its error, even none; other outcomes only add one they carry.
        last_error = CASE
            WHEN req.action = 'suspend' THEN j.last_error
            WHEN req.action = 'retry' AND NOT j.cancel_requested THEN req.error
            ELSE coalesce(req.error, j.last_error)
        END,
        errors = CASE
            WHEN req.error IS NULL OR req.action NOT IN ('retry', 'discard') THEN j.errors
            ELSE (
                CASE
                    WHEN jsonb_array_length(j.errors) >= {max_errors} THEN j.errors - 0
                    ELSE j.errors
                END
            ) || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempt,
                'at', now.t,
                'owner', j.lease_owner,
                'type', coalesce(req.error_type, 'Error'),
                'message', left(req.error, {max_message}),
                'traceback', req.traceback
            ))
        END,
        finished_at = CASE
            WHEN req.action IN ('complete', 'discard', 'cancel') OR j.cancel_requested
              OR (req.action = 'retry' AND j.attempt >= j.max_attempts)
                THEN now.t
        END,
        -- Only the applied complete stores its result (a stale token matches no row).
        result = CASE WHEN req.action = 'complete' THEN req.result::jsonb ELSE j.result END,
        lease_token = NULL,
        lease_expires_at = NULL,
        -- the run that recovered a reaped job has ended (a release hands the recovery on)
        lost_at = CASE WHEN req.action = 'release' THEN j.lost_at END,
        updated_at = now.t
    FROM req, now
    WHERE j.id = req.id AND j.lease_token = req.token
    RETURNING req.ord, j.id, j.queue, j.state, j.concurrency_key, req.cool, req.run_at,
              j.has_dependents
),
-- An applied snooze that cools its key down ($10): the key's cool-down grows to its run_at.
cooled AS (
    INSERT INTO {schema}.cooldowns AS c (key, until)
    SELECT concurrency_key, max(run_at) FROM upd
    WHERE cool AND concurrency_key IS NOT NULL
    GROUP BY concurrency_key
    ON CONFLICT (key) DO UPDATE SET until = greatest(c.until, excluded.until)
),
woken AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') AS q
    WHERE {notify}
),
-- The jobs that ended, for the wait_for_jobs callers of every process (see done_notify).
done AS ({done_notify})
-- Only applied requests come back, by their position in the batch (1-based).
SELECT upd.ord, upd.state, upd.queue,
       (SELECT count(*) FROM woken) + (SELECT count(*) FROM done) AS woken, upd.has_dependents
FROM upd;

-- name: finalize_complete
-- The finalize of a batch of successes only (nearly every batch): what finalize does for a
-- 'complete' request, without the other outcomes' columns, arrays and CTEs. Fenced by (id,
-- token) as finalize is; requests must be distinct pairs. $3: now; $4: the results (NULL
-- stands for all NULLs).
WITH now AS (
    SELECT coalesce($3::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
req AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $4::text[])
        WITH ORDINALITY AS r(id, token, result, ord)
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = 'succeeded',
        wait_key = NULL,
        finished_at = now.t,
        result = req.result::jsonb,
        lease_token = NULL,
        lease_expires_at = NULL,
        lost_at = NULL,
        updated_at = now.t
    FROM req, now
    WHERE j.id = req.id AND j.lease_token = req.token
    RETURNING req.ord, j.id, j.queue, j.state, j.has_dependents
),
done AS ({done_notify})
SELECT upd.ord, upd.state, upd.queue, (SELECT count(*) FROM done) AS woken,
       upd.has_dependents
FROM upd;

-- name: reap
WITH now AS (
    SELECT coalesce($2::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
expired AS (
    SELECT id, lease_expires_at FROM {schema}.jobs
    WHERE state = 'running' AND lease_expires_at <= (SELECT t FROM now)
    ORDER BY lease_expires_at, id
    LIMIT $1::integer
    FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN j.attempt >= j.max_attempts THEN 'dead'
            ELSE 'available'
        END,
        finished_at = CASE
            WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN (SELECT t FROM now)
        END,
        last_error = CASE
            WHEN NOT j.cancel_requested AND j.attempt >= j.max_attempts
                THEN 'lease lost by ' || j.lease_owner || ' on the last attempt'
            ELSE j.last_error
        END,
        -- Every lost lease is recorded (bounded as in finalize).
        errors = (
            CASE
                WHEN jsonb_array_length(j.errors) >= {max_errors} THEN j.errors - 0
                ELSE j.errors
            END
        ) || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt,
            'at', (SELECT t FROM now),
            'owner', j.lease_owner,
            'type', 'LeaseExpired',
            'message', 'lease lost by ' || coalesce(j.lease_owner, '') || CASE
                WHEN NOT j.cancel_requested AND j.attempt >= j.max_attempts
                    THEN ' on the last attempt'
                ELSE ''
            END,
            'traceback', NULL
        )),
        lease_token = NULL,
        -- the lost lease's expiry, for the recovery time of the job's next run
        lost_at = CASE
            WHEN NOT j.cancel_requested AND j.attempt < j.max_attempts THEN j.lease_expires_at
        END,
        lease_expires_at = NULL,
        updated_at = (SELECT t FROM now)
    -- An id array keeps the plan a primary-key lookup per row (see claim).
    WHERE j.id = ANY (ARRAY(SELECT id FROM expired))
    RETURNING j.id, j.kind, j.queue, j.attempt, j.lease_owner, j.state
),
woken AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') AS q
    WHERE {notify}
),
done AS ({done_notify})
SELECT upd.id, upd.kind, upd.queue, upd.attempt, upd.lease_owner, expired.lease_expires_at,
       upd.state, (SELECT count(*) FROM woken) + (SELECT count(*) FROM done) AS woken
FROM upd JOIN expired ON expired.id = upd.id
ORDER BY expired.lease_expires_at, upd.id;

-- name: cancel
WITH now AS (
    SELECT coalesce($2::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE WHEN j.state = 'running' THEN 'running' ELSE 'cancelled' END,
        cancel_requested = true,
        finished_at = CASE WHEN j.state = 'running' THEN NULL ELSE now.t END,
        wait_key = NULL,
        updated_at = now.t
    FROM now
    WHERE j.id = $1::bigint
      AND j.state IN ('pending', 'scheduled', 'available', 'running', 'suspended')
    RETURNING j.id, j.state
),
done AS ({done_notify})
SELECT (SELECT state FROM upd) AS state,
       EXISTS (SELECT 1 FROM {schema}.jobs WHERE id = $1::bigint) AS found,
       (SELECT count(*) FROM done) AS woken;

-- name: record_step
-- Fenced: only under the live lease of $2 (the job's row locked, so no reap or finalize
-- slips in between the check and the insert). A name recorded already keeps its first value.
-- Returns whether the lease is live (the step is then stored, now or before).
WITH now AS (
    SELECT coalesce($5::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
owner AS (
    SELECT j.id, j.attempt FROM {schema}.jobs AS j
    WHERE j.id = $1::bigint AND j.lease_token = $2::bigint AND j.state = 'running'
      AND j.lease_expires_at > (SELECT t FROM now)
    FOR UPDATE
),
ins AS (
    INSERT INTO {schema}.steps (job_id, name, value, attempt, recorded_at)
    SELECT owner.id, $3::text, $4::jsonb, owner.attempt, (SELECT t FROM now) FROM owner
    ON CONFLICT (job_id, name) DO NOTHING
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM owner), (SELECT count(*) FROM ins);

-- name: list_steps
SELECT name, value, attempt, recorded_at
FROM {schema}.steps
WHERE job_id = $1::bigint
ORDER BY recorded_at, name;

-- name: signal
-- Stores the event unless it is set (first value wins) and, only when it stored it, makes
-- every job suspended on it available now, in one statement.
WITH now AS (
    SELECT coalesce($3::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
ins AS (
    INSERT INTO {schema}.signals (key, value, signalled_at)
    SELECT $1::text, $2::jsonb, now.t FROM now
    ON CONFLICT (key) DO NOTHING
    RETURNING key
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = 'available', run_at = now.t, wait_key = NULL, updated_at = now.t
    FROM now
    WHERE j.state = 'suspended' AND j.wait_key = $1::text AND EXISTS (SELECT 1 FROM ins)
    RETURNING j.id, j.queue
),
woken AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM upd) AS q
    WHERE {notify}
)
SELECT EXISTS (SELECT 1 FROM ins) AS stored,
       coalesce((SELECT array_agg(id ORDER BY id) FROM upd), '{}') AS ids,
       coalesce((SELECT array_agg(DISTINCT queue) FROM upd), '{}') AS queues,
       (SELECT count(*) FROM woken) AS woken;

-- name: event_locks
-- Serializes signal and the finalize of a suspend on one event key (each takes this lock
-- first, in its own transaction): whichever commits second sees the other's write, so a
-- job is never left suspended on an event set meanwhile. Keys in sorted order.
SELECT pg_advisory_xact_lock(7007, hashtext(key)) FROM unnest($1::text[]) AS k(key) ORDER BY key;

-- name: get_signal
SELECT value, signalled_at FROM {schema}.signals WHERE key = $1::text;

-- name: prune_results
-- Oldest finish first, by the partial index of the results still stored (0011); a job that an
-- active job waits for keeps its result (the dependent may yet read it).
WITH doomed AS (
    SELECT id FROM {schema}.jobs AS j
    WHERE state = 'succeeded' AND result IS NOT NULL AND finished_at < $1::float8
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.job_edges AS e JOIN {schema}.jobs AS c ON c.id = e.child
          WHERE e.parent = j.id
            AND c.state IN ('pending', 'scheduled', 'available', 'running', 'suspended')
      )
    ORDER BY finished_at
    LIMIT $2::integer
    FOR UPDATE SKIP LOCKED
),
cleared AS (
    UPDATE {schema}.jobs SET result = NULL
    WHERE id = ANY (ARRAY(SELECT id FROM doomed))
    RETURNING 1
)
SELECT count(*) FROM cleared;

-- name: prune_signals
WITH gone AS (
    DELETE FROM {schema}.signals
    WHERE key IN (
        SELECT key FROM {schema}.signals WHERE signalled_at < $1::float8
        ORDER BY signalled_at LIMIT $2::int
    )
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: acquire_leader
-- A live holder keeps its epoch; taking over a released or expired lease bumps it.
WITH now AS (
    SELECT coalesce($4::float8, extract(epoch FROM statement_timestamp())::float8) AS t
)
INSERT INTO {schema}.leaders AS l (name, holder, epoch, expires_at)
SELECT $1::text, $2::text, 1, now.t + $3::float8 FROM now
ON CONFLICT (name) DO UPDATE
SET epoch = CASE
        WHEN l.holder = excluded.holder AND l.expires_at > (SELECT t FROM now) THEN l.epoch
        ELSE l.epoch + 1
    END,
    holder = excluded.holder,
    expires_at = excluded.expires_at
WHERE l.holder = excluded.holder OR l.expires_at <= (SELECT t FROM now)
RETURNING l.name, l.holder, l.epoch, l.expires_at;

-- name: release_leader
-- The row stays (expired) so the epoch keeps growing. True only for a live lease.
WITH now AS (
    SELECT coalesce($3::float8, extract(epoch FROM statement_timestamp())::float8) AS t
)
UPDATE {schema}.leaders AS l
SET expires_at = '-Infinity'::float8
FROM now
WHERE l.name = $1::text AND l.holder = $2::text AND l.expires_at > now.t
RETURNING l.name;

-- name: get_queue_config
SELECT name, paused, concurrency, retention, global_concurrency
FROM {schema}.queues WHERE name = $1::text;

-- name: set_limit
INSERT INTO {schema}.limits (key, concurrency, rate, per)
VALUES ($1::text, $2::integer, $3::integer, $4::float8)
ON CONFLICT (key) DO UPDATE
SET concurrency = excluded.concurrency, rate = excluded.rate, per = excluded.per;

-- name: delete_limit
DELETE FROM {schema}.limits WHERE key = $1::text;

-- name: forget_starts
-- A key without a rate keeps no log.
DELETE FROM {schema}.key_starts WHERE key = $1::text;

-- name: reopens_in
-- The rate-th newest start in a key's window leaves it at (that start + per); a cool-down
-- ends at its until. Only keys held now count.
WITH now AS (
    SELECT coalesce($1::float8, extract(epoch FROM statement_timestamp())::float8) AS t
)
SELECT min(wait) FROM (
    SELECT at + per - (SELECT t FROM now) AS wait FROM (
        SELECT s.at, l.per, l.rate,
            row_number() OVER (PARTITION BY s.key ORDER BY s.at DESC) AS newest
        FROM {schema}.key_starts AS s JOIN {schema}.limits AS l ON l.key = s.key
        WHERE l.rate IS NOT NULL AND s.at > (SELECT t FROM now) - l.per
    ) AS window_log
    WHERE newest = rate
    UNION ALL
    SELECT until - (SELECT t FROM now) FROM {schema}.cooldowns
    WHERE until > (SELECT t FROM now)
) AS held;

-- name: list_limits
WITH now AS (
    SELECT coalesce($1::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
keys AS (
    SELECT key FROM {schema}.limits
    UNION
    SELECT key FROM {schema}.cooldowns WHERE until > (SELECT t FROM now)
)
SELECT k.key, l.concurrency,
       (SELECT count(*) FROM {schema}.jobs AS r
        WHERE r.state = 'running' AND r.concurrency_key = k.key
          AND r.lease_expires_at > (SELECT t FROM now)),
       (SELECT count(*) FROM {schema}.jobs AS w
        WHERE w.state IN ('available', 'scheduled') AND w.concurrency_key = k.key),
       l.rate, l.per,
       CASE WHEN l.rate IS NULL THEN 0 ELSE (
           SELECT count(*) FROM {schema}.key_starts AS s
           WHERE s.key = k.key AND s.at > (SELECT t FROM now) - l.per
       ) END,
       (SELECT until FROM {schema}.cooldowns AS c
        WHERE c.key = k.key AND c.until > (SELECT t FROM now))
FROM keys AS k LEFT JOIN {schema}.limits AS l ON l.key = k.key
ORDER BY k.key;

-- name: set_queue_config
WITH up AS (
    INSERT INTO {schema}.queues AS q (name, paused, concurrency, retention, global_concurrency)
    VALUES ($1::text, $2::boolean, $3::integer, $4::float8, $5::integer)
    ON CONFLICT (name) DO UPDATE
    SET paused = excluded.paused,
        concurrency = excluded.concurrency,
        retention = excluded.retention,
        global_concurrency = excluded.global_concurrency
    RETURNING q.name, q.paused
),
woken AS (
    SELECT pg_notify({channel}, up.name) FROM up WHERE NOT up.paused AND {notify}
)
SELECT count(*) FROM woken;

-- name: list_partitions
-- The partitions of queue $1 with waiting jobs after cursor $2 (NULL: from the first), by key,
-- at most $3: a walk of the partial index, one seek per partition; each one's waiting jobs
-- counted up to $4, its running ones, and its last turn.
WITH RECURSIVE parts (key) AS (
    SELECT (
        SELECT min(partition_key) FROM {schema}.jobs
        WHERE queue = $1::text AND partition_key > coalesce($2::text, '')
          AND state IN ('available', 'scheduled', 'suspended')
    )
    UNION ALL
    SELECT (
        SELECT min(partition_key) FROM {schema}.jobs
        WHERE queue = $1::text AND partition_key > parts.key
          AND state IN ('available', 'scheduled', 'suspended')
    )
    FROM parts
    WHERE parts.key IS NOT NULL
),
chosen AS (SELECT key FROM parts WHERE key IS NOT NULL LIMIT $3::integer),
busy AS (
    SELECT partition_key AS key, count(*) AS n FROM {schema}.jobs
    WHERE state = 'running' AND queue = $1::text
      AND partition_key IN (SELECT key FROM chosen)
    GROUP BY partition_key
)
SELECT c.key,
       (
           SELECT count(*) FROM (
               SELECT 1 FROM {schema}.jobs
               WHERE queue = $1::text AND partition_key = c.key
                 AND state IN ('available', 'scheduled', 'suspended')
               LIMIT $4::integer
           ) AS w
       ) AS waiting,
       coalesce(busy.n, 0) AS running,
       p.served_at
FROM chosen AS c
LEFT JOIN busy ON busy.key = c.key
LEFT JOIN {schema}.partitions AS p ON p.queue = $1::text AND p.key = c.key
ORDER BY c.key;

-- name: list_queue_configs
SELECT name, paused, concurrency, retention, global_concurrency
FROM {schema}.queues ORDER BY name;

-- name: cleanup
WITH doomed AS (
    SELECT id FROM {schema}.jobs
    WHERE state IN ('succeeded', 'cancelled', 'dead')
      AND finished_at < $1::float8
      AND ($2::text IS NULL OR queue = $2::text)
      -- a workflow goes whole: only once every job of it is final and old enough
      AND (
          workflow IS NULL
          OR NOT EXISTS (
              SELECT 1 FROM {schema}.jobs AS w
              WHERE w.workflow = jobs.workflow
                AND (w.finished_at IS NULL OR w.finished_at >= $1::float8)
          )
      )
    ORDER BY finished_at
    LIMIT $3::integer
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM {schema}.jobs WHERE id = ANY (ARRAY(SELECT id FROM doomed)) RETURNING 1
)
SELECT count(*) FROM gone;

-- name: counts
WITH now AS (
    SELECT coalesce($2::float8, extract(epoch FROM statement_timestamp())::float8) AS t
)
SELECT queue,
       CASE
           WHEN state IN ('scheduled', 'suspended') AND run_at <= (SELECT t FROM now) THEN 'available'
           ELSE state
       END AS shown,
       count(*)
FROM {schema}.jobs
WHERE $1::text IS NULL OR queue = $1::text
GROUP BY queue, shown
ORDER BY queue, shown;

-- name: get
-- A scheduled job whose time has come reads as available (it is claimable).
SELECT id, kind, queue, payload,
       CASE
           WHEN state IN ('scheduled', 'suspended')
            AND run_at <= coalesce($2::float8, extract(epoch FROM statement_timestamp())::float8)
               THEN 'available'
           ELSE state
       END,
       priority, run_at, attempt, max_attempts, last_error, dedupe_key, created_at, updated_at,
       finished_at, lease_owner, lease_expires_at, cancel_requested, started_at, errors, headers,
       concurrency_key, result, wait_key, workflow, partition_key
FROM {schema}.jobs
WHERE id = $1::bigint;

-- name: job_filter
-- The WHERE clause of a JobFilter, shared by the listings and the operator actions; each
-- parameter NULL means "any". $9 holds the states as jobs read (a due scheduled job is
-- available), $10 the stored states they come from, so that a listing of final states can
-- use the jobs_final_* indexes. The error text matches ignoring ASCII case (the "C"
-- collation's lower()), as on every backend. $11 / $12 are the keyset cursors, $13 now, $14 the workflow.
($1::text IS NULL OR queue = $1::text)
AND ($2::text IS NULL OR kind = $2::text)
AND ($3::bigint[] IS NULL OR id = ANY ($3::bigint[]))
AND ($4::float8 IS NULL OR created_at >= $4::float8)
AND ($5::float8 IS NULL OR created_at < $5::float8)
AND ($6::float8 IS NULL OR finished_at >= $6::float8)
AND ($7::float8 IS NULL OR finished_at < $7::float8)
AND ($8::text IS NULL OR strpos(lower(last_error COLLATE "C"), lower($8::text COLLATE "C")) > 0)
AND ($10::text[] IS NULL OR state = ANY ($10::text[]))
AND (
    $9::text[] IS NULL
    OR CASE
           WHEN state IN ('scheduled', 'suspended')
            AND run_at <= coalesce($13::float8, extract(epoch FROM statement_timestamp())::float8)
               THEN 'available'
           ELSE state
       END = ANY ($9::text[])
)
AND ($11::bigint IS NULL OR id > $11::bigint)
AND ($12::bigint IS NULL OR id < $12::bigint)
AND ($14::text IS NULL OR workflow = $14::text)

-- name: list_jobs
-- The filter placeholder is job_filter; the order one ASC (oldest first) or DESC (newest).
-- $15 is the limit.
SELECT id, kind, queue, payload,
       CASE
           WHEN state IN ('scheduled', 'suspended')
            AND run_at <= coalesce($13::float8, extract(epoch FROM statement_timestamp())::float8)
               THEN 'available'
           ELSE state
       END,
       priority, run_at, attempt, max_attempts, last_error, dedupe_key, created_at, updated_at,
       finished_at, lease_owner, lease_expires_at, cancel_requested, started_at, errors, headers,
       concurrency_key, result, wait_key, workflow, partition_key
FROM {schema}.jobs
WHERE {filter}
ORDER BY id {order}
LIMIT $15::integer;

-- name: retry_jobs
-- The operator actions share one shape: up to $15 jobs matching the filter (job_filter, the
-- cursors NULL) whose state, stored and as jobs read, is one of $16 (which holds scheduled
-- whenever it holds available), lowest id first, locked (a job a
-- concurrent call holds is skipped), then changed in the same statement. Retry: a fresh
-- budget, and a final job gives up its dedupe key (a newer active job may hold it).
WITH now AS (
    SELECT coalesce($13::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
chosen AS (
    SELECT id FROM {schema}.jobs
    WHERE {filter}
      AND state = ANY ($16::text[])
      AND CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= (SELECT t FROM now) THEN 'available'
               ELSE state END = ANY ($16::text[])
      -- none a failed parent cancels: it would be cancelled again at once
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.job_edges AS f
          WHERE f.child = jobs.id AND f.on_failure = 'cancel'
            AND f.parent_state IN ('cancelled', 'dead')
      )
    ORDER BY id
    LIMIT $15::integer
    FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = 'available',
        attempt = 0,
        cancel_requested = false,
        finished_at = NULL,
        lost_at = NULL,
        dedupe_key = CASE WHEN j.state IN ('dead', 'cancelled') THEN NULL ELSE j.dedupe_key END,
        wait_key = NULL,
        run_at = (SELECT t FROM now),
        updated_at = (SELECT t FROM now)
    WHERE j.id = ANY (ARRAY(SELECT id FROM chosen))
    RETURNING j.id, j.queue
),
woken AS (
    SELECT pg_notify({channel}, q.queue)
    FROM (SELECT DISTINCT queue FROM upd) AS q
    WHERE {notify}
)
SELECT upd.id, upd.queue, (SELECT count(*) FROM woken) AS woken FROM upd ORDER BY upd.id;

-- name: discard_jobs
-- See retry_jobs; $17 is the reason, recorded in the error history.
WITH now AS (
    SELECT coalesce($13::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
chosen AS (
    SELECT id FROM {schema}.jobs
    WHERE {filter}
      AND state = ANY ($16::text[])
      AND CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= (SELECT t FROM now) THEN 'available'
               ELSE state END = ANY ($16::text[])
    ORDER BY id
    LIMIT $15::integer
    FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = 'dead',
        finished_at = (SELECT t FROM now),
        last_error = $17::text,
        wait_key = NULL,
        errors = (
            CASE
                WHEN jsonb_array_length(j.errors) >= {max_errors} THEN j.errors - 0
                ELSE j.errors
            END
        ) || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt,
            'at', (SELECT t FROM now),
            'owner', NULL,
            'type', 'Discarded',
            'message', left($17::text, {max_message}),
            'traceback', NULL
        )),
        updated_at = (SELECT t FROM now)
    WHERE j.id = ANY (ARRAY(SELECT id FROM chosen))
    RETURNING j.id, j.state
),
done AS ({done_notify})
SELECT upd.id, (SELECT count(*) FROM done) AS woken FROM upd;

-- name: delete_jobs
-- See retry_jobs.
WITH now AS (
    SELECT coalesce($13::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
chosen AS (
    SELECT id FROM {schema}.jobs
    WHERE {filter}
      AND state = ANY ($16::text[])
      AND CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= (SELECT t FROM now) THEN 'available'
               ELSE state END = ANY ($16::text[])
    ORDER BY id
    LIMIT $15::integer
    FOR UPDATE SKIP LOCKED
)
DELETE FROM {schema}.jobs AS j
WHERE j.id = ANY (ARRAY(SELECT id FROM chosen))
RETURNING j.id;

-- name: cancel_jobs
-- See retry_jobs; only jobs nobody has asked to cancel yet. As cancel, each: a waiting job
-- ends cancelled, a running one gets the request its heartbeat sees.
WITH now AS (
    SELECT coalesce($13::float8, extract(epoch FROM statement_timestamp())::float8) AS t
),
chosen AS (
    SELECT id FROM {schema}.jobs
    WHERE {filter}
      AND state = ANY ($16::text[])
      AND CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= (SELECT t FROM now) THEN 'available'
               ELSE state END = ANY ($16::text[])
      AND NOT cancel_requested
    ORDER BY id
    LIMIT $15::integer
    FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE WHEN j.state = 'running' THEN 'running' ELSE 'cancelled' END,
        cancel_requested = true,
        finished_at = CASE WHEN j.state = 'running' THEN NULL ELSE (SELECT t FROM now) END,
        wait_key = NULL,
        updated_at = (SELECT t FROM now)
    WHERE j.id = ANY (ARRAY(SELECT id FROM chosen))
    RETURNING j.id, j.state
),
done AS ({done_notify})
SELECT upd.id, (SELECT count(*) FROM done) AS woken FROM upd;

-- name: get_cursor
SELECT value FROM {schema}.cursors WHERE name = $1::text;

-- name: create_cursor
INSERT INTO {schema}.cursors (name, value) VALUES ($1::text, $2::float8)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: advance_cursor
UPDATE {schema}.cursors SET value = $3::float8
WHERE name = $1::text AND value = $2::float8
RETURNING name;

-- name: add_folds
-- Counts dedupe folds of an enqueue, in its transaction: $1 queues, $2 folds per queue.
WITH now AS (
    SELECT coalesce($3::float8, extract(epoch FROM statement_timestamp())::float8) AS t
)
INSERT INTO {schema}.stats AS s (queue, minute, metric, value)
SELECT f.queue, floor(now.t / 60) * 60, 'deduplicated', f.n
FROM unnest($1::text[], $2::bigint[]) AS f(queue, n), now
ORDER BY f.queue
ON CONFLICT (queue, minute, metric) DO UPDATE
SET value = s.value + excluded.value;

-- name: register_node
WITH now AS (
    SELECT coalesce($9::float8, extract(epoch FROM statement_timestamp())::float8) AS t
)
INSERT INTO {schema}.nodes AS n (
    id, host, pid, queues, slots, version, started_at, heartbeat, last_seen
)
SELECT $1::text, $2::text, $3::integer, $4::text[], $5::integer, $6::text, $7::float8,
       $8::float8, now.t
FROM now
ON CONFLICT (id) DO UPDATE
SET host = excluded.host,
    pid = excluded.pid,
    queues = excluded.queues,
    slots = excluded.slots,
    version = excluded.version,
    started_at = excluded.started_at,
    heartbeat = excluded.heartbeat,
    last_seen = excluded.last_seen
RETURNING n.last_seen;

-- name: node_heartbeat
UPDATE {schema}.nodes
SET last_seen = coalesce($2::float8, extract(epoch FROM statement_timestamp())::float8)
WHERE id = $1::text
RETURNING id;

-- name: forget_node
DELETE FROM {schema}.nodes WHERE id = $1::text RETURNING id;

-- name: list_nodes
SELECT id, host, pid, queues, slots, version, started_at, heartbeat, last_seen
FROM {schema}.nodes
ORDER BY id;

-- name: prune_nodes
WITH gone AS (
    DELETE FROM {schema}.nodes WHERE last_seen < $1::float8 RETURNING 1
)
SELECT count(*) FROM gone;

-- name: list_leaders
-- A released lease keeps its row, expired at -Infinity: only live leases are listed.
SELECT name, holder, epoch, expires_at
FROM {schema}.leaders
WHERE expires_at > coalesce($1::float8, extract(epoch FROM statement_timestamp())::float8)
ORDER BY name;

-- name: add_stats
-- Cells come distinct and sorted, so concurrent adds lock rows in one order (no deadlock).
INSERT INTO {schema}.stats AS s (queue, minute, metric, value)
SELECT c.queue, c.minute, c.metric, c.value
FROM unnest($1::text[], $2::float8[], $3::text[], $4::bigint[])
    WITH ORDINALITY AS c(queue, minute, metric, value, ord)
ORDER BY c.ord
ON CONFLICT (queue, minute, metric) DO UPDATE
SET value = s.value + excluded.value;

-- name: list_stats
SELECT queue, minute, metric, value
FROM {schema}.stats
WHERE ($1::text IS NULL OR queue = $1::text)
    AND ($2::float8 IS NULL OR minute >= $2::float8)
    AND ($3::float8 IS NULL OR minute < $3::float8)
ORDER BY minute, queue;

-- name: prune_stats
WITH gone AS (
    DELETE FROM {schema}.stats WHERE minute < $1::float8 RETURNING queue, minute
)
SELECT count(*) FROM (SELECT DISTINCT queue, minute FROM gone) AS rows;

-- name: lock_parents
-- The existing parents of an enqueue ($1), locked FOR SHARE in id order: a parent's finalize
-- waits for the enqueue to commit, so its trigger (jobs_settle) sees the new edges.
SELECT id, state FROM {schema}.jobs WHERE id = ANY ($1::bigint[]) ORDER BY id FOR SHARE;

-- name: set_workflows
UPDATE {schema}.jobs AS j SET workflow = w.workflow
FROM unnest($1::bigint[], $2::text[]) AS w(id, workflow)
WHERE j.id = w.id;

-- name: start_pending
-- New jobs whose parents have not all decided: they wait.
UPDATE {schema}.jobs SET state = 'pending' WHERE id = ANY ($1::bigint[]);

-- name: start_cancelled
-- A new job a parent's failure dooms: cancelled at once, naming the parent.
UPDATE {schema}.jobs
SET state = 'cancelled',
    last_error = $2::text,
    finished_at = coalesce($3::float8, extract(epoch FROM statement_timestamp())::float8)
WHERE id = $1::bigint;

-- name: insert_edges
INSERT INTO {schema}.job_edges (child, parent, on_failure, parent_state)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
ON CONFLICT (child, parent) DO NOTHING;

-- name: mark_parents
UPDATE {schema}.jobs SET has_dependents = true
WHERE id = ANY ($1::bigint[]) AND NOT has_dependents;

-- name: choose_deletable
-- delete_jobs, first statement: the ids it takes (see retry_jobs), locked.
WITH now AS (
    SELECT coalesce($13::float8, extract(epoch FROM statement_timestamp())::float8) AS t
)
SELECT id FROM {schema}.jobs
WHERE {filter}
  AND state = ANY ($16::text[])
  AND CASE WHEN state IN ('scheduled', 'suspended') AND run_at <= (SELECT t FROM now) THEN 'available'
           ELSE state END = ANY ($16::text[])
ORDER BY id
LIMIT $15::integer
FOR UPDATE SKIP LOCKED;

-- name: cancel_parents
-- delete_jobs: an active parent about to be deleted counts as cancelled for its dependents
-- (jobs_settle runs on this update).
UPDATE {schema}.jobs
SET state = 'cancelled',
    finished_at = coalesce($2::float8, extract(epoch FROM statement_timestamp())::float8),
    updated_at = coalesce($2::float8, extract(epoch FROM statement_timestamp())::float8)
WHERE id = ANY ($1::bigint[]) AND has_dependents
  AND state IN ('pending', 'scheduled', 'available');

-- name: delete_chosen
DELETE FROM {schema}.jobs WHERE id = ANY ($1::bigint[]) RETURNING id;

-- name: list_edges
SELECT child, parent, on_failure, parent_state
FROM {schema}.job_edges
WHERE child = ANY ($1::bigint[])
   OR parent = ANY ($1::bigint[])
   OR child IN (SELECT id FROM {schema}.jobs WHERE $2::text IS NOT NULL AND workflow = $2::text)
ORDER BY child, parent;

-- name: list_workflows
WITH chosen AS (
    SELECT DISTINCT workflow FROM {schema}.jobs
    WHERE workflow IS NOT NULL
      AND ($1::text IS NULL OR workflow = $1::text)
      AND ($2::text IS NULL OR workflow > $2::text)
    ORDER BY workflow
    LIMIT $3::integer
)
SELECT workflow,
       CASE
           WHEN state IN ('scheduled', 'suspended')
            AND run_at <= coalesce($4::float8, extract(epoch FROM statement_timestamp())::float8)
               THEN 'available'
           ELSE state
       END AS shown,
       count(*), min(created_at), max(finished_at), count(*) FILTER (WHERE finished_at IS NULL)
FROM {schema}.jobs
WHERE workflow IN (SELECT workflow FROM chosen)
GROUP BY workflow, shown
ORDER BY workflow;
