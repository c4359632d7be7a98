-- 0001_create_base_tables, reverted: drops the base tables and their trigger
-- function. Children go before parents so no foreign key blocks a drop.
-- This destroys data by design; `rollgate db revert` plans and asks first.
-- squawk-ignore-file ban-drop-table, ban-drop-function -- a revert of 0001 removes exactly what 0001 created
-- rollgate: lock_timeout=5s statement_timeout=1min

DROP TABLE public.payment_events;
DROP TABLE public.execution_tasks;
DROP TABLE public.orders;
DROP TABLE public.customers;
DROP FUNCTION public.set_updated_at();
