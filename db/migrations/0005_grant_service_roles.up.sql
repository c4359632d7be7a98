-- 0005_grant_service_roles: what the app and the audit may do, granted to two
-- group roles so that the LOGIN roles (names and passwords from the stack's
-- secrets, made members by `rollgate db bootstrap-roles`) never hold grants
-- themselves:
--
--   * rollgate_writer (web, worker): SELECT, INSERT, UPDATE, DELETE on the
--     app's tables, USAGE and SELECT on their sequences, SELECT on the views.
--     No TRUNCATE, REFERENCES or TRIGGER, no CREATE anywhere: DDL stays with
--     the role that runs migrations, which owns every object;
--   * rollgate_reader (audit): SELECT on tables and views, nothing else.
--
-- ALTER DEFAULT PRIVILEGES (for the role running this migration, i.e. the
-- owner: the RDS master in production) covers every table, view and sequence a
-- later migration creates in public, with no further grant to remember.
--
-- Roles are cluster-wide: they are created here only if absent (the bootstrap
-- may have made them already) and are never dropped by the revert. Creating a
-- role needs CREATEROLE, which the RDS master has.
-- rollgate: lock_timeout=5s statement_timeout=1min catalog=unchanged

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rollgate_writer') THEN
        CREATE ROLE rollgate_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rollgate_reader') THEN
        CREATE ROLE rollgate_reader NOLOGIN;
    END IF;
EXCEPTION
    -- Another database's migration created it at the same moment: it exists, as wanted.
    WHEN duplicate_object OR unique_violation THEN NULL;
END;
$$;

GRANT USAGE ON SCHEMA public TO rollgate_writer, rollgate_reader;

-- What exists now.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO rollgate_writer;
REVOKE INSERT, UPDATE, DELETE ON public.roi_daily, public.roi_customer_daily FROM rollgate_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO rollgate_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO rollgate_reader;

-- What later migrations create (as this same owner).
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO rollgate_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO rollgate_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT ON TABLES TO rollgate_reader;
