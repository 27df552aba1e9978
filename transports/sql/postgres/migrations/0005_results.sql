-- 0005: results. A handler's return value, stored with its job by the applied (fenced)
-- finalize of a Complete; NULL until then, and when it returned nothing.
ALTER TABLE {schema}.jobs ADD COLUMN result jsonb;
