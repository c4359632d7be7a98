-- 0005_allow_cancelled_tasks, verified: the widened rule is in place and valid.

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_constraint
        WHERE conname = 'execution_tasks_status_valid' AND convalidated
          AND pg_get_constraintdef(oid) LIKE '%cancelled%'
    ) THEN
        RAISE EXCEPTION 'verify 0005: execution_tasks_status_valid does not allow cancelled';
    END IF;
END;
$$;
