-- 0005_create_task_notes, reverted -- BROKEN ON PURPOSE (rehearsal scenario
-- leaky-down): it forgets to drop the table its up created, so a rollback by
-- down migrations leaves the schema different from release N's. No data is
-- lost, so only a comparison of the catalogs can see it; the gate must say no-go.
-- rollgate: lock_timeout=5s statement_timeout=1min

SELECT 1;
