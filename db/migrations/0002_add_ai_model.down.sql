-- 0002_add_ai_model, reverted: drops the index (concurrently, so writes go on)
-- and then the column. Dropping the column discards recorded model names.
-- squawk-ignore-file ban-drop-column -- a revert of 0002 removes exactly the column 0002 added
-- rollgate: transaction=false
-- rollgate: lock_timeout=5s statement_timeout=10min

DROP INDEX CONCURRENTLY IF EXISTS public.idx_ai_model;

ALTER TABLE public.execution_tasks DROP COLUMN IF EXISTS ai_model;
