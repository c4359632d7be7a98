-- 0005_allow_cancelled_tasks (rehearsal release N+1, restore flavour): a task
-- may now be 'cancelled'. The check constraint is widened: added NOT VALID
-- (no scan under the lock), then validated (a scan that lets writers go on).
-- squawk-ignore-file ban-drop-constraint -- the widened rule replaces the old one at once
-- rollgate: transaction=false
-- rollgate: lock_timeout=5s statement_timeout=5min

ALTER TABLE public.execution_tasks DROP CONSTRAINT IF EXISTS execution_tasks_status_valid;

ALTER TABLE public.execution_tasks ADD CONSTRAINT execution_tasks_status_valid CHECK (
    status IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')
) NOT VALID;

ALTER TABLE public.execution_tasks VALIDATE CONSTRAINT execution_tasks_status_valid;
