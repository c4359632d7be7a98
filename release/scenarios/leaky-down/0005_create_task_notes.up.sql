-- 0005_create_task_notes (rehearsal release N+1): a new table for notes on tasks.
-- rollgate: lock_timeout=5s statement_timeout=1min

CREATE TABLE IF NOT EXISTS public.task_notes (
    id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT task_notes_pkey PRIMARY KEY,
    note text NOT NULL
);
