-- Who may do what, decided here and nowhere else.
--
-- The person is the logged-in role (session_user).  The site's own role (the
-- owner of these functions, the site owner's accounts log in as it) may act
-- for anyone: tq run by the site owner names the user it acts as (p_as, its
-- OS login or TRACTOR_USER) so that owner and --force behave as in Tractor,
-- and tractor-spool may spool for anyone.  Any other role acts as itself:
-- whatever p_as it passes is ignored.
--
-- One's own jobs need nothing; others' jobs need force (tq --force) and the
-- site's crews (crews.toml, loaded into crews_file, crews, crew_force):
-- members of Administrators and Wranglers may force on anyone's jobs,
-- others as [force] allows.  A site without crews.toml: only the site's own
-- role may force.  Blade logins (tractor_blades) may neither spool nor
-- operate.  Blade operations (nimby, delist, eject) need the site's role or
-- Administrators/Wranglers.
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else; a signature clients call is never changed (add _v2 instead).
-- SECURITY DEFINER functions have a fixed search_path.

-- Whether the logged-in role is the site's own (the functions' owner) or a superuser.
CREATE OR REPLACE FUNCTION tractor_is_site() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (session_user = current_user
        OR coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user), false));
END $$;

-- Whether the logged-in role is a blade login (a member of tractor_blades).
CREATE OR REPLACE FUNCTION tractor_is_blade() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (NOT tractor_is_site() AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'tractor_blades')
       AND pg_has_role(session_user, 'tractor_blades', 'MEMBER'));
END $$;

-- The user an operation acts as (see above).
CREATE OR REPLACE FUNCTION tractor_acting_user(p_as text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (CASE WHEN tractor_is_site() THEN coalesce(nullif(p_as, ''), session_user) ELSE session_user::text END);
END $$;

-- Whether a crews.toml name (a crew, else a user; '*' anyone) covers `p_user`.
CREATE OR REPLACE FUNCTION tractor_crew_covers(p_name text, p_user text) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (p_name = '*' OR coalesce((SELECT p_user = ANY (c.members) FROM crews c WHERE c.crew = p_name),
                                    p_name = p_user));
END $$;

-- Whether `p_user` is in the Administrators or Wranglers crew.
CREATE OR REPLACE FUNCTION tractor_is_wrangler(p_user text) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (EXISTS (SELECT 1 FROM crews c WHERE c.crew IN ('Administrators', 'Wranglers') AND p_user = ANY (c.members)));
END $$;

-- Whether `p_user` may force on `p_owner`'s jobs (and spool as them).
CREATE OR REPLACE FUNCTION tractor_may_force(p_user text, p_owner text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (p_user = p_owner
        OR (tractor_is_site() AND (p_user = current_user OR NOT EXISTS (SELECT 1 FROM crews_file)))
        OR (EXISTS (SELECT 1 FROM crews_file)
            AND (tractor_is_wrangler(p_user)
                 OR EXISTS (SELECT 1 FROM crew_force f, unnest(f.targets) AS t(target)
                            WHERE tractor_crew_covers(f.who, p_user) AND tractor_crew_covers(t.target, p_owner)))));
END $$;

-- May the logged-in role act for `p_owner` (spool as them)?  `p_who` is
-- kept for the callers of version 9: it must be the logged-in role.
CREATE OR REPLACE FUNCTION tractor_may_act_for(p_who text, p_owner text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT p_who = session_user AND NOT tractor_is_blade()
       AND (tractor_is_site() OR tractor_may_force(session_user, p_owner))
$$;

-- Why `p_user` may not operate on `p_owner`'s job (NULL: may).  The words
-- are what tq and the Python API print.
CREATE OR REPLACE FUNCTION tractor_refusal(p_user text, p_owner text, p_force boolean) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN (CASE
        WHEN tractor_is_blade() THEN format('%s is a blade login: blades may not operate on jobs', session_user)
        WHEN p_user = p_owner THEN NULL
        WHEN NOT p_force THEN 'not job owner; use tq --force'
        WHEN tractor_may_force(p_user, p_owner) THEN NULL
        ELSE format('not job owner; tq --force is not allowed for %s on %s''s jobs (crews.toml)', p_user, p_owner)
    END);
END $$;

-- The jobs of `p_jids` the caller may not operate on, with why (tq asks
-- first, to print each refused row; the operations check again).
-- One verdict per owner, not per job: an operation on a thousand jobs of a few people asks a few
-- times.  (The permission functions are plpgsql so that their plans are kept for the session.)
CREATE OR REPLACE FUNCTION tractor_refusals_v1(p_jids bigint[], p_force boolean, p_as text)
RETURNS TABLE (jid bigint, owner text, why text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_user text := tractor_acting_user(p_as);
BEGIN
    RETURN QUERY
    WITH o AS (SELECT DISTINCT j.owner FROM jobs j WHERE j.jid = ANY (p_jids)),
         w AS (SELECT o.owner, tractor_refusal(v_user, o.owner, p_force) AS why FROM o)
    SELECT j.jid, j.owner, w.why FROM jobs j JOIN w ON w.owner = j.owner
    WHERE j.jid = ANY (p_jids) AND w.why IS NOT NULL
    ORDER BY j.jid;
END $$;

-- Raise the refusal of the first job of `p_jids` the caller may not operate on.
CREATE OR REPLACE FUNCTION tractor_guard_jobs(p_jids bigint[], p_force boolean, p_as text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r record;
BEGIN
    PERFORM tractor_check_temp_tables(false);
    SELECT * INTO r FROM tractor_refusals_v1(p_jids, p_force, p_as) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%', r.why USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('job %s of %s', r.jid, r.owner);
    END IF;
END $$;

-- Raise unless the caller may operate on blades (nimby, delist, eject).
CREATE OR REPLACE FUNCTION tractor_guard_blades(p_as text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM tractor_check_temp_tables(false);
    IF NOT tractor_is_site() AND NOT (NOT tractor_is_blade() AND tractor_is_wrangler(session_user)) THEN
        RAISE EXCEPTION 'blade operations need the site owner or the Administrators or Wranglers crew (crews.toml)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- Temporary tables are the one thing a person may create (a spool stages
-- its rows in them), and functions that run as the site's role read them:
-- the state machine's own work tables (tractor_*) and a spool's staging
-- tables (spool_*).  A person's temporary table of such a name, or one
-- with triggers or rules (they would run as the site's role), is refused
-- before any such function runs.  (The fixed search_path names pg_temp
-- last, so no temporary object hides a table of the site.)
CREATE OR REPLACE FUNCTION tractor_check_temp_tables(p_staging boolean) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r record;
BEGIN
    SELECT c.relname INTO r FROM pg_class c
    WHERE c.relnamespace = pg_my_temp_schema()
      AND ((c.relname LIKE 'tractor\_%' AND c.relowner <> (SELECT o.oid FROM pg_roles o WHERE o.rolname = current_user))
           OR (p_staging AND c.relname LIKE 'spool\_%'
               AND (c.relkind NOT IN ('r', 'i') OR c.relhastriggers OR c.relhasrules OR c.relrowsecurity)))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'temporary table % stands in the way (drop it)', r.relname
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- Raise unless the caller may report for blade `p_blade`: the site's role,
-- or the blade login that registered it (blades.login).  Everything a blade
-- does (heartbeat, claim, progress, finish, graft, exit) starts here.
CREATE OR REPLACE FUNCTION tractor_guard_blade(p_blade uuid) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF tractor_is_site() THEN
        RETURN;
    END IF;
    PERFORM tractor_check_temp_tables(true);
    IF NOT tractor_is_blade() THEN
        RAISE EXCEPTION '% is not a blade login: only blades report work', session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM blades b WHERE b.bladeid = p_blade AND b.login = session_user) THEN
        RAISE EXCEPTION 'blade % was not registered by %', p_blade, session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- Raise unless the caller may register the blade (name, address, port):
-- the site's role; a blade login for a new blade, or one it (or the site's
-- role) registered before.
CREATE OR REPLACE FUNCTION tractor_guard_blade_name(p_name text, p_ipaddr text, p_port integer) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_login text;
BEGIN
    IF tractor_is_site() THEN
        RETURN;
    END IF;
    PERFORM tractor_check_temp_tables(true);
    IF NOT tractor_is_blade() THEN
        RAISE EXCEPTION '% is not a blade login: only blades register', session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT b.login INTO v_login FROM blades b WHERE b.name = p_name AND b.ipaddr = p_ipaddr AND b.port = p_port;
    IF FOUND AND v_login IS DISTINCT FROM session_user AND v_login IS DISTINCT FROM current_user
       AND v_login IS NOT NULL THEN
        RAISE EXCEPTION 'blade % (%) is registered by the login %, not %', p_name, p_ipaddr, v_login, session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;
