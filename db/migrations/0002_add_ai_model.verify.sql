-- 0002_add_ai_model, verified: the column exists and idx_ai_model is a valid,
-- ready index (a failed CONCURRENTLY build leaves one that is neither).

SELECT ai_model FROM public.execution_tasks WHERE false;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = 'idx_ai_model'
          AND i.indisvalid AND i.indisready
    ) THEN
        RAISE EXCEPTION 'verify 0002: idx_ai_model is missing or INVALID';
    END IF;
END;
$$;
