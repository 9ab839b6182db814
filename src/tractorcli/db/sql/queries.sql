-- Named statements of the job database.  Each block starts with
-- "-- name: NAME"; Python refers to statements by name (db/queries.py).
-- Parameters use psycopg's %(name)s form.  Statements that need an
-- identifier (a database or role name) use {name} placeholders that are
-- filled with psycopg.sql.Identifier / Literal, never with pasted text.

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(dbname)s

-- name: create_database
CREATE DATABASE {dbname} ENCODING 'UTF8' TEMPLATE template0

-- name: set_role_password
ALTER ROLE {role} PASSWORD {password}

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT ''
)

-- name: migrations_table_exists
SELECT to_regclass('schema_migrations') IS NOT NULL AS present

-- name: applied_migrations
SELECT version, name, checksum FROM schema_migrations ORDER BY version

-- name: lock_migrations
-- One upgrader at a time: a transaction-level advisory lock keyed on
-- "tractorcli schema" (any constant works, this one is recognisable).
SELECT pg_advisory_xact_lock(7470524175)

-- name: record_migration
INSERT INTO schema_migrations (version, name, checksum, applied_by)
VALUES (%(version)s, %(name)s, %(checksum)s, %(applied_by)s)

-- name: job_counter
-- The last jid handed out (0 before the first job), as Tractor's jidcounter.
SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS jidcounter FROM jid_seq

-- name: set_job_counter
-- The next job gets jid = counter + 1.
SELECT setval('jid_seq', %(counter)s, true)

-- name: reset_job_counter
SELECT setval('jid_seq', 1, false)

-- name: max_jid
SELECT coalesce(max(jid), 0) AS maxjid FROM jobs

-- name: show_params
SELECT name, value FROM (
    SELECT name, value FROM params
    UNION ALL
    SELECT 'jidcounter', (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM jid_seq)::text
    UNION ALL
    SELECT 'schema-version', coalesce((SELECT max(version) FROM schema_migrations), 0)::text
    UNION ALL
    SELECT 'schema-checksum', coalesce(
        (SELECT checksum FROM schema_migrations ORDER BY version DESC LIMIT 1), '')
    UNION ALL
    SELECT 'jobs', (SELECT count(*) FROM jobs WHERE deletetime IS NULL)::text
    UNION ALL
    SELECT 'archived-jobs', (SELECT count(*) FROM jobs WHERE deletetime IS NOT NULL)::text
) AS p
ORDER BY name

-- name: set_param
INSERT INTO params (name, value) VALUES (%(name)s, %(value)s)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value

-- name: purge_jobs
-- Every job, live and archived, with everything hanging off them (tasks,
-- commands, the ready queue, invocations, logs: all reference jobs).
TRUNCATE jobs CASCADE

-- name: purge_job_notes
DELETE FROM notes WHERE itemtype IN ('job', 'task')

-- name: purge_archive_to
-- Archived (deleted) jobs whose deletion is before %(before)s.
DELETE FROM jobs WHERE deletetime IS NOT NULL AND deletetime < %(before)s

-- name: clear_history
-- Jobs that finished or were deleted before %(before)s.
DELETE FROM jobs
WHERE (deletetime IS NOT NULL AND deletetime < %(before)s)
   OR (deletetime IS NULL AND phase = 'finished' AND stoptime IS NOT NULL AND stoptime < %(before)s)

-- name: vacuum_full
VACUUM (FULL, ANALYZE)

-- name: table_row_counts
-- Exact row counts of our tables (for status, verify and tests).
SELECT 'jobs' AS name, count(*) AS n FROM jobs
UNION ALL SELECT 'tasks', count(*) FROM tasks
UNION ALL SELECT 'commands', count(*) FROM commands
UNION ALL SELECT 'invocations', count(*) FROM invocations
UNION ALL SELECT 'blades', count(*) FROM blades
UNION ALL SELECT 'notes', count(*) FROM notes

-- name: schema_catalog
-- A normalised description of the schema, to compare a migrated database
-- with the snapshot the code expects.
SELECT 'column' AS kind, c.table_name AS object,
       c.column_name || ' ' || c.data_type || ' ' || c.udt_name
       || CASE WHEN c.is_nullable = 'NO' THEN ' not null' ELSE '' END
       || coalesce(' default ' || c.column_default, '') AS detail
FROM information_schema.columns c
WHERE c.table_schema = 'public'
UNION ALL
SELECT 'index', tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text, conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'sequence', sequencename, data_type::text || ' start ' || start_value
FROM pg_sequences WHERE schemaname = 'public'
ORDER BY 1, 2, 3
