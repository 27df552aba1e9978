-- 0011: result retention. The maintenance leader clears the results of succeeded jobs
-- finished longer ago than their retention, oldest first (prune_results).
CREATE INDEX jobs_results_idx ON {schema}.jobs (finished_at)
    WHERE state = 'succeeded' AND result IS NOT NULL;
