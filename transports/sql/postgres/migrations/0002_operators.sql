-- 0002: what operators read. When the latest claim started, each failed attempt's error (a
-- JSON array, oldest first, bounded by the transport), the job's headers, and the index of
-- the listings of final jobs. Adding columns with constant defaults rewrites nothing, whatever the size.
ALTER TABLE {schema}.jobs
    ADD COLUMN started_at double precision,
    ADD COLUMN errors jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN headers jsonb NOT NULL DEFAULT '{}';

-- Listings of final jobs newest first by state (a queue, kind or error filter is checked on
-- the rows it yields). Only final rows are in it, so enqueue, claim and renew never write it:
-- one index entry more per finalize is its whole cost on the hot path.
CREATE INDEX jobs_final_state_idx ON {schema}.jobs (state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');
