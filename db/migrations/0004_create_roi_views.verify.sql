-- 0004_create_roi_views, verified: both views answer with their columns.

SELECT day, currency, gross_minor, refunds_minor, net_minor FROM public.roi_daily WHERE false;
SELECT day, customer_id, currency, gross_minor, refunds_minor, net_minor
    FROM public.roi_customer_daily WHERE false;
