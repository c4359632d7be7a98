-- 0005_allow_cancelled_tasks, reverted: release N's rule again, which has no
-- 'cancelled' tasks, so those rows have to go first.
-- declared-data-loss: cancelled tasks do not exist in release N. Rollgate's
-- planner therefore rolls this release back by restoring the pre-release
-- snapshot and replaying every later write, listing any row release N rejects.
-- squawk-ignore-file ban-drop-constraint -- release N's rule replaces the widened one
-- rollgate: transaction=false
-- rollgate: lock_timeout=5s statement_timeout=5min

DELETE FROM public.execution_tasks WHERE status = 'cancelled';

ALTER TABLE public.execution_tasks DROP CONSTRAINT IF EXISTS execution_tasks_status_valid;

ALTER TABLE public.execution_tasks ADD CONSTRAINT execution_tasks_status_valid CHECK (
    status IN ('queued', 'running', 'succeeded', 'failed', 'dead')
) NOT VALID;

ALTER TABLE public.execution_tasks VALIDATE CONSTRAINT execution_tasks_status_valid;
