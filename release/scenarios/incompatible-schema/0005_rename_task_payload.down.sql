-- 0005_rename_task_payload, reverted: the old name back.
-- squawk-ignore-file renaming-column -- the revert of the scenario's rename
-- rollgate: lock_timeout=5s statement_timeout=1min

ALTER TABLE public.execution_tasks RENAME COLUMN task_input TO payload;
