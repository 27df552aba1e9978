-- 0009: dependencies and workflows. A job may wait for others ('pending' until they
-- succeeded, see Transport's *Dependencies*) and belong to a workflow.
ALTER TABLE {schema}.jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_state_check CHECK (
    state IN (
        'pending', 'scheduled', 'available', 'running', 'suspended', 'succeeded', 'cancelled',
        'dead'
    )
);
ALTER TABLE {schema}.jobs ADD COLUMN workflow text;
-- true once a job waits for it (job_edges): its end settles its dependents (jobs_settle)
ALTER TABLE {schema}.jobs ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;

-- Dependencies (0009): child waits for parent; parent_state is the parent's final state once
-- it ended, NULL while it may still run (see transports.lowlevel.verdict).
CREATE TABLE {schema}.job_edges (
    child bigint NOT NULL REFERENCES {schema}.jobs (id) ON DELETE CASCADE,
    parent bigint NOT NULL,
    on_failure text NOT NULL CHECK (on_failure IN ('cancel', 'run')),
    parent_state text,
    PRIMARY KEY (child, parent)
);

-- A parent's dependents.
CREATE INDEX job_edges_parent_idx ON {schema}.job_edges (parent, child);

-- A child's open edges and its failed ones: each parent's end asks both of its children, so
-- a fan-in of n parents costs n lookups, not n scans of its n edges.
CREATE INDEX job_edges_open_idx ON {schema}.job_edges (child) WHERE parent_state IS NULL;
CREATE INDEX job_edges_failed_idx ON {schema}.job_edges (child)
    WHERE parent_state IN ('cancelled', 'dead');

-- A workflow's jobs (listings, cleanup).
CREATE INDEX jobs_workflow_idx ON {schema}.jobs (workflow, id) WHERE workflow IS NOT NULL;

-- A job with dependents ended (in the statement that ended it): record its state on its
-- edges; cancel every pending job that is doomed (a child of it, or of a job doomed in turn,
-- with a failed 'cancel' parent), naming the parent; make due every pending child of it or
-- of a doomed job that no edge holds back any more, waking its queue. Two parents of one
-- child ending at once in two transactions: each first locks the pending children, so the
-- second waits and then (read committed: a fresh snapshot per statement) sees the first's
-- edge; a new dependent's enqueue holds its parents FOR SHARE until it commits.
CREATE FUNCTION {schema}.jobs_settle() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doomed bigint[];
    queues text[];
BEGIN
    PERFORM 1 FROM {schema}.jobs
    WHERE id IN (SELECT child FROM {schema}.job_edges WHERE parent = NEW.id)
      AND state = 'pending'
    ORDER BY id
    FOR UPDATE;
    UPDATE {schema}.job_edges SET parent_state = NEW.state WHERE parent = NEW.id;
    WITH RECURSIVE d (id) AS (
        SELECT c.id FROM {schema}.job_edges AS e JOIN {schema}.jobs AS c ON c.id = e.child
        WHERE e.parent = NEW.id AND c.state = 'pending'
          AND EXISTS (
              SELECT 1 FROM {schema}.job_edges AS f
              WHERE f.child = c.id AND f.on_failure = 'cancel'
                AND f.parent_state IN ('cancelled', 'dead')
          )
        UNION
        SELECT c.id FROM d JOIN {schema}.job_edges AS e ON e.parent = d.id
            JOIN {schema}.jobs AS c ON c.id = e.child
        WHERE c.state = 'pending'
          AND (
              e.on_failure = 'cancel'
              OR EXISTS (
                  SELECT 1 FROM {schema}.job_edges AS f
                  WHERE f.child = c.id AND f.on_failure = 'cancel'
                    AND f.parent_state IN ('cancelled', 'dead')
              )
          )
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO doomed FROM d;
    IF cardinality(doomed) > 0 THEN
        PERFORM 1 FROM {schema}.jobs WHERE id = ANY (doomed) ORDER BY id FOR UPDATE;
        UPDATE {schema}.job_edges SET parent_state = 'cancelled' WHERE parent = ANY (doomed);
        UPDATE {schema}.jobs AS j
        SET state = 'cancelled',
            finished_at = NEW.updated_at,
            updated_at = NEW.updated_at,
            last_error = (
                SELECT 'parent ' || f.parent || ' ended ' || f.parent_state
                FROM {schema}.job_edges AS f
                WHERE f.child = j.id AND f.on_failure = 'cancel'
                  AND f.parent_state IN ('cancelled', 'dead')
                ORDER BY f.parent
                LIMIT 1
            )
        WHERE j.id = ANY (doomed) AND j.state = 'pending';
        PERFORM pg_notify({done_channel}, CASE
            WHEN length(array_to_string(doomed, ',')) > 7000 THEN '*'
            ELSE array_to_string(doomed, ',')
        END);
    END IF;
    WITH released AS (
        UPDATE {schema}.jobs AS j
        SET state = CASE WHEN j.run_at > NEW.updated_at THEN 'scheduled' ELSE 'available' END,
            updated_at = NEW.updated_at
        WHERE j.state = 'pending'
          AND j.id IN (
              SELECT child FROM {schema}.job_edges WHERE parent = NEW.id
              UNION ALL
              SELECT child FROM {schema}.job_edges WHERE parent = ANY (doomed)
          )
          AND NOT EXISTS (
              SELECT 1 FROM {schema}.job_edges AS f
              WHERE f.child = j.id AND f.parent_state IS NULL
          )
          AND NOT EXISTS (
              SELECT 1 FROM {schema}.job_edges AS f
              WHERE f.child = j.id AND f.parent_state IN ('cancelled', 'dead')
                AND f.on_failure = 'cancel'
          )
        RETURNING j.queue, j.state
    )
    SELECT array_agg(DISTINCT queue) FILTER (WHERE state = 'available') INTO queues
    FROM released;
    IF queues IS NOT NULL THEN
        PERFORM pg_notify({channel}, q) FROM unnest(queues) AS q;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_settle AFTER UPDATE OF state ON {schema}.jobs
FOR EACH ROW
WHEN (
    NEW.has_dependents
    AND NEW.state IN ('succeeded', 'cancelled', 'dead')
    AND OLD.state NOT IN ('succeeded', 'cancelled', 'dead')
)
EXECUTE FUNCTION {schema}.jobs_settle();

-- A final job runs again (retry_jobs): its edges as a parent are open again (its dependents
-- not started yet wait for it again), and it waits for its own parents while any edge holds
-- it back.
CREATE FUNCTION {schema}.jobs_reopen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {schema}.job_edges SET parent_state = NULL WHERE parent = NEW.id;
    UPDATE {schema}.jobs SET state = 'pending'
    WHERE state IN ('scheduled', 'available')
      AND id IN (SELECT child FROM {schema}.job_edges WHERE parent = NEW.id);
    UPDATE {schema}.jobs SET state = 'pending'
    WHERE id = NEW.id
      AND EXISTS (
          SELECT 1 FROM {schema}.job_edges AS f
          WHERE f.child = NEW.id
            AND (
                f.parent_state IS NULL
                OR (f.parent_state <> 'succeeded' AND f.on_failure = 'cancel')
            )
      );
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_reopen AFTER UPDATE OF state ON {schema}.jobs
FOR EACH ROW
WHEN (
    OLD.state IN ('succeeded', 'cancelled', 'dead')
    AND NEW.state NOT IN ('succeeded', 'cancelled', 'dead')
)
EXECUTE FUNCTION {schema}.jobs_reopen();
