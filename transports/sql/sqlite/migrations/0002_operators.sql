-- What operators read: when the latest claim started, each failed attempt's error (a JSON array
-- of objects, oldest first, bounded by the transport), the job's headers (a JSON object), and
-- the indexes that keep listing by queue, state or kind, newest first, off a full scan.
ALTER TABLE jobs ADD COLUMN started_at REAL;
ALTER TABLE jobs ADD COLUMN errors TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';

CREATE INDEX jobs_queue_id ON jobs (queue, id);
CREATE INDEX jobs_state_id ON jobs (state, id);
CREATE INDEX jobs_kind_id ON jobs (kind, id);
