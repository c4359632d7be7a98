-- 0005_add_task_priority, verified: the column exists.

SELECT priority FROM public.execution_tasks WHERE false;
