-- 0005_rename_task_payload, verified: the renamed column exists.

SELECT task_input FROM public.execution_tasks WHERE false;
