-- 0004_create_roi_views, reverted: drops the two report views (no data lives in them).
-- squawk-ignore-file ban-drop-view -- a revert of 0004 removes exactly the views 0004 created
-- rollgate: lock_timeout=5s statement_timeout=1min

DROP VIEW public.roi_customer_daily;
DROP VIEW public.roi_daily;
