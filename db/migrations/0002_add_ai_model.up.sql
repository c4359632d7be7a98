-- 0002_add_ai_model: the fix the second seed asks for. Tasks record which AI
-- model ran them, indexed for the per-model queries that were failing.
--
-- Safe on a busy table:
--   * the column is nullable with no default, so adding it is a catalog-only
--     change (no rewrite), guarded by lock_timeout;
--   * the index is built CONCURRENTLY, so writes continue while it builds.
-- CONCURRENTLY cannot run inside a transaction, so this migration runs outside
-- one, statement by statement. Every statement is idempotent, so a run that
-- dies part-way is resumed by simply running it again; an index left INVALID
-- by a failed build is detected and rebuilt by the runner.
-- rollgate: transaction=false
-- rollgate: lock_timeout=5s statement_timeout=60min

ALTER TABLE public.execution_tasks ADD COLUMN IF NOT EXISTS ai_model text;

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_ai_model ON public.execution_tasks (ai_model);
