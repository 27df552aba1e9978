-- 0002: what operators read. When the latest claim started, each failed attempt's error (a
-- JSON array, oldest first, bounded by the transport), the job's headers, and the indexes of
-- the listings. Adding columns with constant defaults rewrites nothing, whatever the size.
ALTER TABLE {schema}.jobs
    ADD COLUMN started_at double precision,
    ADD COLUMN errors jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN headers jsonb NOT NULL DEFAULT '{}';

-- Listings of final jobs newest first, by state, by queue and state, by kind and state. Only
-- final rows are in them: a claim or a renewal (which update running rows) never writes them.
CREATE INDEX jobs_final_state_idx ON {schema}.jobs (state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');
CREATE INDEX jobs_final_queue_idx ON {schema}.jobs (queue, state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');
CREATE INDEX jobs_final_kind_idx ON {schema}.jobs (kind, state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');
