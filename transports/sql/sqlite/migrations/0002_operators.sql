-- What operators read: when the latest claim started, each failed attempt's error (a JSON array
-- of objects, oldest first, bounded by the transport), the job's headers (a JSON object), and
-- the index of the listings of final jobs by state, which holds only final rows so that
-- enqueue and claim never write it (one entry more per finalize).
ALTER TABLE jobs ADD COLUMN started_at REAL;
ALTER TABLE jobs ADD COLUMN errors TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';

CREATE INDEX jobs_final_state ON jobs (state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');
