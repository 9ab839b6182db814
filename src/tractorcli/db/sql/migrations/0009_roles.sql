-- Identities: people and blades log in as roles of their own (tractor-dbctl
-- --add-user, --add-blade-login), members of these two groups; the site's
-- role (the site owner: tractor-dbctl, tractor-engine, migrations) owns
-- every table and function.  Roles belong to the server, not to one
-- database: they may exist already (another job database of that server).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tractor_people') THEN
        CREATE ROLE tractor_people NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tractor_blades') THEN
        CREATE ROLE tractor_blades NOLOGIN;
    END IF;
END $$;

-- Reading is open to every authenticated person and blade, as in Tractor;
-- nobody but the site's role writes a table (changes go through the
-- functions the programs call).  Tables made later are readable too.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO tractor_people, tractor_blades;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO tractor_people, tractor_blades;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO tractor_people, tractor_blades;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO tractor_people, tractor_blades;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO tractor_people, tractor_blades;
