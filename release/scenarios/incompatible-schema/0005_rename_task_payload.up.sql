-- 0005_rename_task_payload -- BROKEN ON PURPOSE (rehearsal scenario
-- incompatible-schema): renaming a column in place is not expand/contract.
-- Release N's app still writes execution_tasks.payload and fails on it.
-- squawk-ignore-file renaming-column -- the scenario is exactly this mistake
-- rollgate: lock_timeout=5s statement_timeout=1min

ALTER TABLE public.execution_tasks RENAME COLUMN payload TO task_input;
