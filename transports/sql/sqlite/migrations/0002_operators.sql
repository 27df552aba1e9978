-- What operators read: when the latest claim started, each failed attempt's error (a JSON array
-- of objects, oldest first, bounded by the transport), the job's headers (a JSON object), and
-- the indexes of the listings of final jobs (by state, queue and state, kind and state), which
-- hold only final rows so that enqueue and claim never write them.
ALTER TABLE jobs ADD COLUMN started_at REAL;
ALTER TABLE jobs ADD COLUMN errors TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';

CREATE INDEX jobs_final_state ON jobs (state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');
CREATE INDEX jobs_final_queue ON jobs (queue, state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');
CREATE INDEX jobs_final_kind ON jobs (kind, state, id)
    WHERE state IN ('succeeded', 'cancelled', 'dead');
