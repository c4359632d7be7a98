-- 0003_add_task_outbox: what the workflow service (app/) needs to run tasks
-- safely.
--
--   * execution_tasks.idempotency_key: a client-supplied key, unique, so a
--     retried POST /tasks returns the task it already created;
--   * execution_tasks.lease_expires_at: how long the worker that claimed a
--     task owns it; a task whose worker died is claimable again once its
--     lease runs out (its SQS message comes back at about the same time);
--   * public.task_outbox: the transactional outbox. POST /tasks writes the
--     task and its outbox row in one transaction; a relay publishes unsent
--     rows to SQS and marks them sent, so no task is lost when SQS fails
--     between the commit and the send.
--
-- Safe on a busy execution_tasks: the columns are nullable without defaults
-- (catalog-only), the unique index is built CONCURRENTLY. CONCURRENTLY cannot
-- run in a transaction, so every statement is idempotent and a run that dies
-- part-way is resumed by running it again.
-- rollgate: transaction=false
-- rollgate: lock_timeout=5s statement_timeout=60min

ALTER TABLE public.execution_tasks ADD COLUMN IF NOT EXISTS idempotency_key text;

ALTER TABLE public.execution_tasks ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS execution_tasks_idempotency_key_key
    ON public.execution_tasks (idempotency_key);

-- One row per task message to publish. Deleting a task deletes its outbox row.
CREATE TABLE IF NOT EXISTS public.task_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY,
    task_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    CONSTRAINT task_outbox_pkey PRIMARY KEY (id),
    CONSTRAINT task_outbox_task_id_fkey FOREIGN KEY (task_id)
        REFERENCES public.execution_tasks (id) ON DELETE CASCADE
);

CREATE INDEX CONCURRENTLY IF NOT EXISTS task_outbox_task_id_idx ON public.task_outbox (task_id);

-- The relay reads only what is still to send, oldest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS task_outbox_unsent_idx
    ON public.task_outbox (id) WHERE sent_at IS NULL;
