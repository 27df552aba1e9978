-- 0010: signal retention. The maintenance leader prunes events set longer ago than their
-- retention, oldest first (prune_signals).
CREATE INDEX signals_by_age ON {schema}.signals (signalled_at);
