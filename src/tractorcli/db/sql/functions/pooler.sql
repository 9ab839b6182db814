-- The site's pooler (pooler.py: PgBouncer in transaction mode, db.toml [pooler]) checks the
-- passwords of the people and blades who come through it against the secrets the server keeps,
-- and logs in to the server as them with the same secret (SCRAM pass-through): PgBouncer's
-- auth_query, run as the role tractor_pooler, calls this function.
--
-- tractor_pooler logs in with a password tractor-dbctl makes anew at every start of the pooler
-- (and may do nothing but call this); it is made here with the function it may call.  Roles
-- belong to the server, not to one database: it may exist already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tractor_pooler') THEN
        CREATE ROLE tractor_pooler NOLOGIN;
    END IF;
END $$;

-- The SCRAM secret of the login p_user, for people's and blades' roles (members of tractor_people
-- or tractor_blades) that may log in, have a password and have not expired; no row for anyone
-- else: the site's role, superusers, tractor_pooler itself (the pooler then refuses the login as
-- a wrong password).  pg_authid is the superuser's to read: SECURITY DEFINER as the site's
-- role, with the fixed search_path of every such function (no one else may create in public).
CREATE OR REPLACE FUNCTION tractor_pooler_auth_v1(p_user text)
RETURNS TABLE (usename text, passwd text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT a.rolname::text, a.rolpassword
    FROM pg_authid a
    WHERE a.rolname = p_user AND a.rolcanlogin AND NOT a.rolsuper
      AND a.rolpassword LIKE 'SCRAM-SHA-256$%'
      AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > now())
      AND (pg_has_role(a.oid, 'tractor_people', 'MEMBER') OR pg_has_role(a.oid, 'tractor_blades', 'MEMBER'))
$$;
REVOKE ALL ON FUNCTION tractor_pooler_auth_v1(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tractor_pooler_auth_v1(text) TO tractor_pooler;
