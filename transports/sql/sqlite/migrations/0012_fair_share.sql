-- 0012: fair share. A job may name a partition (partition_key, the tenant say); a claim of a
-- queue with waiting partitioned jobs shares it among partitions, least recently served
-- first, and records each partition's turn (partitions).
ALTER TABLE jobs ADD COLUMN partition_key TEXT;

-- The fair claim: the partitions of a queue's waiting jobs (a seek per partition) and the
-- first due jobs of each, in claim order.
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
