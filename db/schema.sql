-- Rollgate canonical schema: the single source of truth.
--
-- Applying every migration in db/migrations/ to an empty database must yield
-- exactly this catalog (`rollgate db check` compares catalogs, not text), and
-- `rollgate db diff` compares a live database against it.
--
-- Conventions, so diffs stay readable and migrations can name what they touch:
--   * every constraint and index has an explicit name;
--   * every foreign key has an index, so deletes on the parent never scan;
--   * identifiers are bigint identities: int4 keys run out on busy tables;
--   * text + CHECK instead of varchar(n): changing a length is then a
--     constraint swap, not a table rewrite under ACCESS EXCLUSIVE.
--
-- Column order matters (SELECT *, COPY, pg_dump): a column added by a later
-- migration is listed last here, where ALTER TABLE ... ADD COLUMN puts it.

-- Keeps updated_at current on every UPDATE. Postgres has no MySQL-style
-- `ON UPDATE CURRENT_TIMESTAMP`, so a trigger does the job.
CREATE FUNCTION public.set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- People who buy. Email is the Stripe-facing identity, unique regardless of case.
CREATE TABLE public.customers (
    id bigint GENERATED ALWAYS AS IDENTITY,
    name text NOT NULL,
    email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_pkey PRIMARY KEY (id),
    CONSTRAINT customers_name_length CHECK (char_length(btrim(name)) BETWEEN 1 AND 100),
    -- Cheap shape check (one @, a dot in the domain, no spaces); real validation
    -- is a confirmation email, not a regex.
    CONSTRAINT customers_email_shape CHECK (
        char_length(email) <= 254
        AND email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'
    )
);

CREATE UNIQUE INDEX customers_email_lower_key ON public.customers (lower(email));

CREATE TRIGGER customers_set_updated_at
    BEFORE UPDATE ON public.customers
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Purchases. Deleting a customer deletes their orders (the seed's intent).
CREATE TABLE public.orders (
    id bigint GENERATED ALWAYS AS IDENTITY,
    customer_id bigint NOT NULL,
    order_details jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_pkey PRIMARY KEY (id),
    CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id)
        REFERENCES public.customers (id) ON DELETE CASCADE,
    CONSTRAINT orders_order_details_is_object CHECK (jsonb_typeof(order_details) = 'object')
);

CREATE INDEX orders_customer_id_idx ON public.orders (customer_id);

CREATE TRIGGER orders_set_updated_at
    BEFORE UPDATE ON public.orders
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- The queue's task records: one row per SQS task, tracked through its life.
CREATE TABLE public.execution_tasks (
    id bigint GENERATED ALWAYS AS IDENTITY,
    status text NOT NULL DEFAULT 'queued',
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    -- Added by 0002_add_ai_model: the fix the second seed asks for.
    ai_model text,
    -- Added by 0003_add_task_outbox: a retried POST /tasks finds its task by
    -- this key; a claimed task belongs to its worker until the lease expires.
    idempotency_key text,
    lease_expires_at timestamptz,
    CONSTRAINT execution_tasks_pkey PRIMARY KEY (id),
    CONSTRAINT execution_tasks_status_valid CHECK (
        status IN ('queued', 'running', 'succeeded', 'failed', 'dead')
    ),
    CONSTRAINT execution_tasks_attempts_nonnegative CHECK (attempts >= 0),
    CONSTRAINT execution_tasks_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT execution_tasks_finished_after_started CHECK (finished_at >= started_at)
);

-- Workers pick the oldest task of a status; dashboards count by status.
CREATE INDEX execution_tasks_status_created_at_idx ON public.execution_tasks (status, created_at);

CREATE INDEX idx_ai_model ON public.execution_tasks (ai_model);

CREATE UNIQUE INDEX execution_tasks_idempotency_key_key
    ON public.execution_tasks (idempotency_key);

CREATE TRIGGER execution_tasks_set_updated_at
    BEFORE UPDATE ON public.execution_tasks
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Transactional outbox: written with its task in one transaction; a relay
-- publishes unsent rows to SQS and marks them sent.
CREATE TABLE public.task_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY,
    task_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    CONSTRAINT task_outbox_pkey PRIMARY KEY (id),
    CONSTRAINT task_outbox_task_id_fkey FOREIGN KEY (task_id)
        REFERENCES public.execution_tasks (id) ON DELETE CASCADE
);

CREATE INDEX task_outbox_task_id_idx ON public.task_outbox (task_id);

-- The relay reads only what is still to send, oldest first.
CREATE INDEX task_outbox_unsent_idx ON public.task_outbox (id) WHERE sent_at IS NULL;

-- Stripe webhook log for ROI tracking. The unique Stripe event id makes
-- ingestion idempotent: a redelivered webhook is an ON CONFLICT DO NOTHING.
-- No card data and no raw payload: payloads can carry card and billing
-- details, which must not land here.
CREATE TABLE public.payment_events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    stripe_event_id text NOT NULL,
    event_type text NOT NULL,
    amount_minor bigint NOT NULL,
    currency text NOT NULL,
    -- SET NULL, not CASCADE: the financial record outlives the customer row.
    customer_id bigint,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_events_pkey PRIMARY KEY (id),
    CONSTRAINT payment_events_stripe_event_id_key UNIQUE (stripe_event_id),
    CONSTRAINT payment_events_stripe_event_id_shape CHECK (stripe_event_id ~ '^evt_[A-Za-z0-9]+$'),
    CONSTRAINT payment_events_event_type_shape CHECK (event_type ~ '^[a-z_]+(\.[a-z_]+)+$'),
    -- Amounts are in the currency's minor unit (cents), never floats.
    CONSTRAINT payment_events_amount_nonnegative CHECK (amount_minor >= 0),
    -- Stripe spells ISO 4217 codes in lower case.
    CONSTRAINT payment_events_currency_iso4217 CHECK (currency ~ '^[a-z]{3}$'),
    CONSTRAINT payment_events_customer_id_fkey FOREIGN KEY (customer_id)
        REFERENCES public.customers (id) ON DELETE SET NULL
);

CREATE INDEX payment_events_customer_id_idx ON public.payment_events (customer_id);

-- ROI reports read a time window of events.
CREATE INDEX payment_events_received_at_idx ON public.payment_events (received_at);

-- ROI report (0004_create_roi_views): gross (charge.succeeded), refunds
-- (refund.created) and net, in minor units, per UTC day and currency, and the
-- same per customer.
CREATE VIEW public.roi_daily AS
SELECT
    (pe.received_at AT TIME ZONE 'UTC')::date AS day,
    pe.currency,
    coalesce(sum(pe.amount_minor) FILTER (WHERE pe.event_type = 'charge.succeeded'), 0)::bigint
        AS gross_minor,
    coalesce(sum(pe.amount_minor) FILTER (WHERE pe.event_type = 'refund.created'), 0)::bigint
        AS refunds_minor,
    (coalesce(sum(pe.amount_minor) FILTER (WHERE pe.event_type = 'charge.succeeded'), 0)
        - coalesce(sum(pe.amount_minor) FILTER (WHERE pe.event_type = 'refund.created'), 0))::bigint
        AS net_minor
FROM public.payment_events pe
WHERE pe.event_type IN ('charge.succeeded', 'refund.created')
GROUP BY 1, 2;

-- The same per customer (NULL: an event no customer row matched).
CREATE VIEW public.roi_customer_daily AS
SELECT
    (pe.received_at AT TIME ZONE 'UTC')::date AS day,
    pe.customer_id,
    pe.currency,
    coalesce(sum(pe.amount_minor) FILTER (WHERE pe.event_type = 'charge.succeeded'), 0)::bigint
        AS gross_minor,
    coalesce(sum(pe.amount_minor) FILTER (WHERE pe.event_type = 'refund.created'), 0)::bigint
        AS refunds_minor,
    (coalesce(sum(pe.amount_minor) FILTER (WHERE pe.event_type = 'charge.succeeded'), 0)
        - coalesce(sum(pe.amount_minor) FILTER (WHERE pe.event_type = 'refund.created'), 0))::bigint
        AS net_minor
FROM public.payment_events pe
WHERE pe.event_type IN ('charge.succeeded', 'refund.created')
GROUP BY 1, 2, 3;
