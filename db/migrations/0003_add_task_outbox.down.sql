-- 0003_add_task_outbox, reverted: drops the outbox (unsent rows are lost:
-- revert only with the app that needs it stopped) and the two task columns.
-- squawk-ignore-file ban-drop-column, ban-drop-table -- a revert of 0003 removes exactly what 0003 added
-- rollgate: transaction=false
-- rollgate: lock_timeout=5s statement_timeout=10min

DROP TABLE IF EXISTS public.task_outbox;

DROP INDEX CONCURRENTLY IF EXISTS public.execution_tasks_idempotency_key_key;

ALTER TABLE public.execution_tasks DROP COLUMN IF EXISTS lease_expires_at;

ALTER TABLE public.execution_tasks DROP COLUMN IF EXISTS idempotency_key;
