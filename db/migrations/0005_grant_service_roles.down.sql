-- 0005_grant_service_roles, reverted: the grants and default privileges go;
-- the group roles stay (they are cluster-wide: other databases and the LOGIN
-- roles' memberships may depend on them, and an empty NOLOGIN role grants nothing).
-- rollgate: lock_timeout=5s statement_timeout=1min

ALTER DEFAULT PRIVILEGES IN SCHEMA public
    REVOKE SELECT ON TABLES FROM rollgate_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    REVOKE USAGE, SELECT ON SEQUENCES FROM rollgate_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM rollgate_writer;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM rollgate_writer, rollgate_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM rollgate_writer;
REVOKE USAGE ON SCHEMA public FROM rollgate_writer, rollgate_reader;
