-- 0004_create_roi_views: the ROI report ("where money is coming from") as two
-- read-only views over the Stripe webhook log. Additive: nothing reads or
-- writes differently until an app release queries them.
--
-- A charge.succeeded event is gross revenue, a refund.created event is a
-- refund; other stored types do not count. Amounts stay in minor units and
-- are never summed across currencies. Days are UTC days of receipt.
-- rollgate: lock_timeout=5s statement_timeout=1min

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
