-- 0008: durable steps and signals. A job may be 'suspended' on an event key until a signal
-- sets it (or its timeout passes, its run_at); its steps are kept with it and deleted with it.
ALTER TABLE {schema}.jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE {schema}.jobs ADD CONSTRAINT jobs_state_check CHECK (
    state IN (
        'scheduled', 'available', 'running', 'suspended', 'succeeded', 'cancelled', 'dead'
    )
);
ALTER TABLE {schema}.jobs ADD COLUMN wait_key text;

-- Claim: a suspended job whose timeout passed is due, as a scheduled one is.
DROP INDEX {schema}.jobs_due_idx;
CREATE INDEX jobs_due_idx ON {schema}.jobs (queue, priority, run_at, id)
    WHERE state IN ('available', 'scheduled', 'suspended');

-- Dedupe: a suspended job is active.
DROP INDEX {schema}.jobs_dedupe_idx;
CREATE UNIQUE INDEX jobs_dedupe_idx ON {schema}.jobs (queue, dedupe_key)
    WHERE dedupe_key IS NOT NULL
      AND state IN ('scheduled', 'available', 'running', 'suspended');

-- Signal: the jobs suspended on one event key.
CREATE INDEX jobs_waiting_idx ON {schema}.jobs (wait_key)
    WHERE state = 'suspended';

-- A job's recorded steps, written only under its live lease; deleted with the job.
CREATE TABLE {schema}.steps (
    job_id bigint NOT NULL REFERENCES {schema}.jobs (id) ON DELETE CASCADE,
    name text NOT NULL,
    value jsonb NOT NULL,
    attempt integer NOT NULL,  -- the job's attempt that recorded it
    recorded_at double precision NOT NULL,
    PRIMARY KEY (job_id, name)
);

-- Events set by signal; the first value wins.
CREATE TABLE {schema}.signals (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    signalled_at double precision NOT NULL
);
