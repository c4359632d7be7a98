-- 0005_create_task_notes, verified: the table exists.

SELECT id, note FROM public.task_notes WHERE false;
