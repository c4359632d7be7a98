-- 0005_add_task_priority, reverted: drops exactly the column the up added.
-- squawk-ignore-file ban-drop-column -- a revert of 0005 removes exactly the column 0005 added
-- rollgate: lock_timeout=5s statement_timeout=1min

ALTER TABLE public.execution_tasks DROP COLUMN IF EXISTS priority;
