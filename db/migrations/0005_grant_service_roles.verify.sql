-- 0005_grant_service_roles, verified: the catalog comparison ignores privileges,
-- so this checks them. Every table and view in public is readable by both
-- groups; every table is writable by rollgate_writer (views only readable) and
-- never truncatable; sequences are usable; neither group may create in public;
-- and the owner's default privileges cover what later migrations create.

DO $$
DECLARE
    problems text;
BEGIN
    SELECT string_agg(problem, '; ') INTO problems FROM (
        SELECT format('%s lacks %s on %s', grantee, privilege, c.oid::regclass) AS problem
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN (VALUES ('rollgate_writer', 'SELECT'), ('rollgate_reader', 'SELECT'),
                           ('rollgate_writer', 'INSERT'), ('rollgate_writer', 'UPDATE'),
                           ('rollgate_writer', 'DELETE')) AS wanted(grantee, privilege)
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
          AND (wanted.privilege = 'SELECT' OR c.relkind IN ('r', 'p'))
          AND NOT has_table_privilege(wanted.grantee, c.oid, wanted.privilege)
        UNION ALL
        SELECT format('%s may %s %s', grantee, privilege, c.oid::regclass)
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN (VALUES ('rollgate_writer', 'TRUNCATE'), ('rollgate_reader', 'TRUNCATE'),
                           ('rollgate_reader', 'INSERT'), ('rollgate_reader', 'UPDATE'),
                           ('rollgate_reader', 'DELETE')) AS unwanted(grantee, privilege)
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND has_table_privilege(unwanted.grantee, c.oid, unwanted.privilege)
        UNION ALL
        SELECT format('rollgate_writer lacks USAGE on sequence %s', c.oid::regclass)
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        -- CASE: the planner may call the function before the relkind filter.
        WHERE n.nspname = 'public' AND c.relkind = 'S'
          AND CASE WHEN c.relkind = 'S'
                   THEN NOT has_sequence_privilege('rollgate_writer', c.oid, 'USAGE')
                   ELSE false END
        UNION ALL
        SELECT format('%s may CREATE in schema public (REVOKE CREATE ON SCHEMA public FROM PUBLIC)',
                      grantee)
        FROM (VALUES ('rollgate_writer'), ('rollgate_reader')) AS g(grantee)
        WHERE has_schema_privilege(g.grantee, 'public', 'CREATE')
        UNION ALL
        SELECT format('no default privileges of %s in public for %s on %s',
                      current_user, expected.grantee, expected.objtype)
        FROM (VALUES ('rollgate_writer', 'r', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
                     ('rollgate_writer', 'S', ARRAY['USAGE', 'SELECT']),
                     ('rollgate_reader', 'r', ARRAY['SELECT'])) AS expected(grantee, objtype, privileges)
        WHERE NOT expected.privileges <@ ARRAY(
            SELECT a.privilege_type::text
            FROM pg_catalog.pg_default_acl d
            CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) AS a
            WHERE d.defaclrole = current_user::regrole
              AND d.defaclnamespace = 'public'::regnamespace
              AND d.defaclobjtype = expected.objtype::"char"
              AND a.grantee = expected.grantee::regrole
        )
    ) AS found;
    IF problems IS NOT NULL THEN
        RAISE EXCEPTION 'verify 0005: %', problems;
    END IF;
END;
$$;
