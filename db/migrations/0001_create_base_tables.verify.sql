-- 0001_create_base_tables, verified: every base table has its columns, and
-- updated_at is kept current by its trigger. Raises on the first gap.

SELECT id, name, email, created_at, updated_at FROM public.customers WHERE false;
SELECT id, customer_id, order_details, created_at, updated_at FROM public.orders WHERE false;
SELECT id, status, payload, attempts, last_error, created_at, updated_at, started_at, finished_at
    FROM public.execution_tasks WHERE false;
SELECT id, stripe_event_id, event_type, amount_minor, currency, customer_id, received_at
    FROM public.payment_events WHERE false;

DO $$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(expected.tgname, ', ') INTO missing
    FROM (VALUES ('customers_set_updated_at'),
                 ('orders_set_updated_at'),
                 ('execution_tasks_set_updated_at')) AS expected(tgname)
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgname = expected.tgname AND NOT t.tgisinternal
    );
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'verify 0001: missing updated_at triggers: %', missing;
    END IF;
END;
$$;
