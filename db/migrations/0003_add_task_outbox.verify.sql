-- 0003_add_task_outbox, verified: the columns and the outbox exist, and the
-- concurrently built indexes are valid and ready.

SELECT idempotency_key, lease_expires_at FROM public.execution_tasks WHERE false;
SELECT id, task_id, created_at, sent_at FROM public.task_outbox WHERE false;

DO $$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(expected.relname, ', ') INTO missing
    FROM (VALUES ('execution_tasks_idempotency_key_key'),
                 ('task_outbox_task_id_idx'),
                 ('task_outbox_unsent_idx')) AS expected(relname)
    WHERE NOT EXISTS (
        SELECT 1
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = expected.relname
          AND i.indisvalid AND i.indisready
    );
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'verify 0003: missing or invalid indexes: %', missing;
    END IF;
END;
$$;
