-- 0005_add_task_priority (rehearsal release N+1): an additive, expand-only
-- change. A nullable column without a default is a catalog-only change, so
-- the lock it takes is brief; release N's app keeps running on it.
-- rollgate: lock_timeout=5s statement_timeout=1min

ALTER TABLE public.execution_tasks ADD COLUMN IF NOT EXISTS priority bigint;
