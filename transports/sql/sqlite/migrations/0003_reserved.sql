-- 0003: reserved (another change of the schema takes this number).
SELECT 1;
