-- 0005_add_task_priority -- BROKEN ON PURPOSE (rehearsal scenario
-- lock-past-budget): it holds an ACCESS EXCLUSIVE lock on the tasks table
-- (every writer waits) for longer than the lock budget (1 s in scenario.json).
-- rollgate: lock_timeout=5s statement_timeout=1min

LOCK TABLE public.execution_tasks IN ACCESS EXCLUSIVE MODE;

SELECT pg_sleep(3);

ALTER TABLE public.execution_tasks ADD COLUMN IF NOT EXISTS priority bigint;
