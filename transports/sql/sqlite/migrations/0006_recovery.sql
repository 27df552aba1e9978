-- 0006: recovery time. The expiry of the lease reap took back, kept until the job's next run
-- ends, so the claim that runs it again reports when its previous holder lost it.
ALTER TABLE jobs ADD COLUMN lost_at REAL;
