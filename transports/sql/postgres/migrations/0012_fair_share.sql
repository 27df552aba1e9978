-- 0012: fair share. A job may name a partition (partition_key, the tenant say); a claim of a
-- queue with waiting partitioned jobs shares it among partitions, least recently served
-- first, and records each partition's turn (partitions).
ALTER TABLE {schema}.jobs ADD COLUMN partition_key text;

-- The fair claim: the partitions of a queue's waiting jobs (a seek per partition) and the
-- first due jobs of each, in claim order.
CREATE INDEX jobs_partition_idx ON {schema}.jobs (queue, partition_key, priority, run_at, id)
    WHERE partition_key IS NOT NULL AND state IN ('available', 'scheduled', 'suspended');

-- ... and the due jobs of a queue without a partition, in claim order: a fair claim finds the
-- unpartitioned ones (one partition together) without reading past the partitioned ones.
CREATE INDEX jobs_unpartitioned_idx ON {schema}.jobs (queue, priority, run_at, id)
    WHERE partition_key IS NULL AND state IN ('available', 'scheduled', 'suspended');

-- One value per fair claim that started jobs: the order of the partitions' turns.
CREATE SEQUENCE {schema}.partition_ticks;

-- Each partition's last turn: the claim (tick) that last started one of its jobs and its
-- place in that claim (pos). key '' is the queue's unpartitioned jobs.
CREATE TABLE {schema}.partitions (
    queue text NOT NULL,
    key text NOT NULL,
    tick bigint NOT NULL,
    pos integer NOT NULL,
    served_at double precision NOT NULL,
    PRIMARY KEY (queue, key)
);
