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

-- name: pooler_role
-- The role the site's pooler looks passwords up as (functions/pooler.sql makes it too, with the
-- function it may call; here for a server whose job database is not built yet).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tractor_pooler') THEN
        CREATE ROLE tractor_pooler NOLOGIN;
    END IF;
END $$

-- name: pooler_login
-- Its password, new at every start of the pooler; it may log in and do nothing else.
ALTER ROLE tractor_pooler LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    NOINHERIT PASSWORD {password}

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

-- name: applied_function_files
-- The function files applied, with their checksums (none before migration 8).
SELECT file, checksum FROM schema_functions ORDER BY file

-- name: function_files_table_exists
SELECT to_regclass('schema_functions') IS NOT NULL AS present

-- name: function_bodies_unchecked
-- Function files are applied in any order: bodies are checked when called.
SET LOCAL check_function_bodies = off

-- name: record_function_file
INSERT INTO schema_functions (file, checksum, applied_by)
VALUES (%(file)s, %(checksum)s, %(applied_by)s)
ON CONFLICT (file) DO UPDATE SET checksum = excluded.checksum, applied_at = now(), applied_by = excluded.applied_by

-- ---------------------------------------------------------------------------
-- Identities (db/roles.py): people's and blades' login roles.  {role} and
-- {group} are identifiers, {password} a literal, composed with psycopg.sql.

-- name: login_role
SELECT r.rolsuper AS superuser,
       ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid) AS groups
FROM pg_roles r WHERE r.rolname = %(name)s

-- name: create_login_role
CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS IN ROLE {group}

-- name: grant_login_group
GRANT {group} TO {role}

-- name: set_login_password
ALTER ROLE {role} PASSWORD {password}

-- name: clear_login_password
ALTER ROLE {role} PASSWORD NULL

-- name: drop_login_role
DROP ROLE {role}

-- name: list_logins
-- Needs the site's role: pg_authid (whether a password is set) is for superusers.
SELECT r.rolname AS name, g.rolname AS grp, a.rolpassword IS NOT NULL AS has_password
FROM pg_auth_members m
JOIN pg_roles g ON g.oid = m.roleid
JOIN pg_roles r ON r.oid = m.member
JOIN pg_authid a ON a.oid = r.oid
WHERE g.rolname IN ('tractor_people', 'tractor_blades')
ORDER BY g.rolname DESC, r.rolname

-- name: job_counter
-- The last jid used (0 before the first job), as Tractor's jidcounter: the highest jid of the jobs,
-- or higher where --set-job-counter or a purge of the newest jobs left it (params jidfloor).  Not
-- the sequence's value: PostgreSQL logs sequences 32 values ahead, so after a server crash the
-- next jid may skip up to 32 numbers (a gapless counter would make every spool wait for the one
-- before it to commit); no jid is ever used twice.
SELECT greatest((SELECT coalesce(max(jid), 0) FROM jobs),
                (SELECT coalesce(max(value::bigint), 0) FROM params WHERE name = 'jidfloor')) AS jidcounter

-- name: set_jid_floor
INSERT INTO params (name, value) VALUES ('jidfloor', %(counter)s::text)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value

-- name: forget_jid_floor
DELETE FROM params WHERE name = 'jidfloor'

-- name: set_job_counter
-- The next job gets jid = counter + 1.
SELECT setval('jid_seq', %(counter)s, true)

-- name: reset_job_counter
SELECT setval('jid_seq', 1, false)

-- name: max_jid
SELECT coalesce(max(jid), 0) AS maxjid FROM jobs

-- name: show_params
SELECT name, value FROM (
    SELECT name, value FROM params WHERE name <> 'jidfloor'
    UNION ALL
    SELECT 'jidcounter', greatest((SELECT coalesce(max(jid), 0) FROM jobs),
                                  (SELECT coalesce(max(value::bigint), 0) FROM params WHERE name = 'jidfloor'))::text
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
UNION ALL
-- functions by signature, with a digest of their whole definition (body,
-- language, volatility, security, settings)
SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       md5(pg_get_functiondef(p.oid))
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
UNION ALL
SELECT 'trigger', tgrelid::regclass::text, tgname || ' ' || tgfoid::regproc::text
FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text NOT LIKE 'pg_%'
UNION ALL
-- who may do what: privileges on tables and sequences (the site's role,
-- which owns them, is written as OWNER), and the defaults for new ones
SELECT 'privilege', c.relname,
       coalesce(array_to_string(ARRAY(SELECT replace(x::text, pg_get_userbyid(c.relowner) || '=', 'OWNER=')
                                      FROM unnest(c.relacl) AS x ORDER BY 1), ' '), 'default')
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S', 'v', 'p')
UNION ALL
SELECT 'default privilege', d.defaclobjtype::text,
       array_to_string(ARRAY(SELECT x::text FROM unnest(d.defaclacl) AS x ORDER BY 1), ' ')
FROM pg_default_acl d WHERE d.defaclnamespace = 'public'::regnamespace
UNION ALL
-- storage parameters (autovacuum thresholds, fillfactor) of tables and indexes
SELECT 'storage', c.relname, array_to_string(ARRAY(SELECT x FROM unnest(c.reloptions) AS x ORDER BY 1), ' ')
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.reloptions IS NOT NULL
ORDER BY 1, 2, 3

-- ---------------------------------------------------------------------------
-- Spooling (db/spool.py): one job in one transaction.  The COPY column lists
-- are the contract with the row builders in spool.py (same order, binary).

-- name: spool_add_service_exprs
-- Store the effective service expressions this job needs that are not
-- stored yet.  Existing ones are neither locked nor rewritten (concurrent
-- spools of the same expressions do not wait for each other), and no
-- svcid is spent on them.
INSERT INTO service_exprs (expr)
SELECT DISTINCT u.expr FROM unnest(%(exprs)s::text[]) AS u(expr)
WHERE NOT EXISTS (SELECT 1 FROM service_exprs s WHERE s.expr = u.expr)
ON CONFLICT (expr) DO NOTHING

-- name: spool_service_ids
-- Locked as a foreign key check would lock them: an expression this job
-- uses cannot be deleted before the job is committed.
SELECT svcid, expr FROM service_exprs WHERE expr = ANY(%(exprs)s::text[]) FOR KEY SHARE

-- name: spool_replication_role
SELECT current_setting('session_replication_role') AS role

-- name: spool_set_replication_role
-- Transaction-local.  'replica' turns off the per-row foreign key checks
-- for the rows a spool copies (consistent by construction; see
-- db/spool.py); the spool sets the previous value back before it commits.
-- Needs a superuser, or GRANT SET ON PARAMETER session_replication_role:
-- spool.py tries it in a savepoint.
SELECT set_config('session_replication_role', %(role)s, true)

-- name: spool_script_lz4
-- Transaction-local: a long job script (stored in jobs.script) is compressed
-- with lz4 when the server has it, not pglz: about 0.5 s of server time for a
-- 116 MB script (1,000,000 tasks) instead of 2.2 s, for 10.4 MB stored
-- instead of 8.7 MB.  Columns with a compression of their own keep it; a
-- server built without lz4 keeps pglz.
SELECT set_config('default_toast_compression', 'lz4', true)
FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)

-- name: spool_insert_job
-- jid from jid_seq (the column default).  spooltime is now(): the
-- transaction's start, also used as readytime of the tasks ready at spool.
-- {jobs}: the table, or pg_temp.spool_jobs for a staged spool (jid 0).
INSERT INTO {jobs} (
    owner, spoolhost, spoolfile, spoolcwd, spooladdr, title, assignments,
    tier, priority, crews, projects, tags, service, avoid, envkey, editpolicy,
    minslots, maxslots, etalevel, afterjids, pausetime, aftertime,
    numtasks, numblocked, numready, numdone, maxtid, maxcid,
    comment, metadata, maxactive, serialsubtasks, dirmap, script, scriptformat, tierpri, svcids
) VALUES (
    %(owner)s, %(spoolhost)s, %(spoolfile)s, %(spoolcwd)s, %(spooladdr)s, %(title)s, %(assignments)s,
    %(tier)s, %(priority)s, %(crews)s::text[], %(projects)s::text[], %(tags)s::text[], %(service)s,
    %(avoid)s::text[], %(envkey)s::text[], %(editpolicy)s,
    %(minslots)s, %(maxslots)s, %(etalevel)s, %(afterjids)s::bigint[],
    CASE WHEN %(paused)s THEN now() END, %(aftertime)s,
    %(numtasks)s, %(numblocked)s, %(numready)s, %(numdone)s, %(maxtid)s, %(maxcid)s,
    %(comment)s, %(metadata)s, %(maxactive)s, %(serialsubtasks)s, %(dirmap)s, %(script)s, %(scriptformat)s,
    %(tierpri)s, %(svcids)s::integer[]
)
RETURNING jid, spooltime

-- name: spool_script_table
-- A long job script is sent by COPY, in pieces, into this table of the
-- session (spool_copy_script) and moved into its job row by
-- spool_set_script: as a parameter the client held two more copies of it
-- (116 MB each for a 1,000,000-task job) and took seconds to send it.
CREATE TEMP TABLE IF NOT EXISTS spool_script (script text) ON COMMIT DELETE ROWS

-- name: spool_copy_script
COPY pg_temp.spool_script (script) FROM STDIN (FORMAT BINARY)

-- name: spool_set_script
-- {jobs}: as in spool_insert_job.  The script stays compressed as stored.
WITH s AS (DELETE FROM pg_temp.spool_script RETURNING script)
UPDATE {jobs} SET script = (SELECT s.script FROM s) WHERE jid = %(jid)s

-- name: spool_copy_tasks
COPY {tasks} (jid, tid, title, id, service, minslots, maxslots, serialsubtasks, resumeblock,
            state, readytime, preview, chaser, metadata, parent_tid, position, pending, lasttid)
FROM STDIN (FORMAT BINARY)

-- name: spool_copy_task_edges
COPY {task_edges} (jid, parent_tid, child_tid, kind) FROM STDIN (FORMAT BINARY)

-- name: spool_copy_commands
COPY {commands} (jid, cid, tid, position, argv, local, expand, runtype, msg, service, svcid,
               tags, id, refersto, minslots, maxslots, samehost, envkey, retryrcodes,
               metadata, metrics, resumewhile, resumepin, minrunsecs, maxrunsecs, state)
FROM STDIN (FORMAT BINARY)

-- name: spool_copy_ready
COPY ready (jid, cid, tid, svcid, tierpri, priority, local, spoolhost) FROM STDIN (FORMAT BINARY)

-- name: spool_tier
-- A tier's priority (NULL: no such tier) and the site's tiers, for the error.
SELECT (SELECT t.priority FROM tiers t WHERE t.name = lower(%(tier)s)) AS priority,
       ARRAY(SELECT t.name FROM tiers t ORDER BY t.priority DESC, t.name) AS names

-- name: spool_may_write
-- The site's role writes a job's rows itself; a person's stages them.
SELECT has_table_privilege('jobs', 'INSERT') AS may

-- name: spool_staging_tables
-- A person's session stages a job here (jid 0) for tractor_spool_staged_v1;
-- emptied at every commit.
CREATE TEMP TABLE IF NOT EXISTS spool_jobs (LIKE jobs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
ALTER TABLE pg_temp.spool_jobs ALTER COLUMN jid SET DEFAULT 0;
CREATE TEMP TABLE IF NOT EXISTS spool_tasks (LIKE tasks INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS spool_task_edges (LIKE task_edges INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS spool_commands (LIKE commands INCLUDING DEFAULTS) ON COMMIT DELETE ROWS

-- name: spool_staged_service_ids
SELECT svcid, expr FROM tractor_service_ids_v1(%(exprs)s::text[])

-- name: spool_commit_staged
-- The staged job becomes a job of the logged-in person (or of %(owner)s,
-- if the person may act for them); NULL owner: the person.
SELECT jid, spooltime FROM tractor_spool_staged_v1(%(owner)s)

-- name: spool_notify
-- Wakes waiting blades when the spool commits (notifications are transactional).
SELECT pg_notify('tractor_ready', %(jid)s::text)

-- name: job_owner
SELECT owner, deletetime FROM jobs WHERE jid = %(jid)s

-- --- dispatch (db/dispatch.py; the functions are in migration 0003) ---------------

-- name: blade_register
SELECT tractor_blade_register_v1(%(name)s, %(ipaddr)s, %(port)s, %(profile)s, %(provides)s::text[],
                                 %(numslots)s, %(osname)s, %(osversion)s, %(version)s, %(numcpu)s,
                                 %(zone)s, %(nimby)s, %(metrics)s) AS bladeid

-- name: blade_wakeport
-- The UDP port the engine wakes this blade on (NULL: it LISTENs itself; wakeups.py).
SELECT tractor_blade_wakeport_v1(%(bladeid)s, %(port)s)

-- name: wake_targets
-- The blades the engine wakes when work is queued: those it may wake, up, with a free slot.
SELECT ipaddr, wakeport FROM blades
WHERE wakeport IS NOT NULL AND status = 'up' AND slotsinuse < numslots

-- name: blade_beats
-- Idle blades' heartbeats the engine gathered, in one statement (wakeups.py Beats).
SELECT bladeid, addr, answer FROM tractor_blade_beats_v1(%(beats)s::jsonb, %(local)s::text[])

-- name: engine_beats_publish
-- Where the engine takes beats: its address as the server sees its connection ('' when that is
-- this host: blades then send to the database's host, as they reach it), and its port.
INSERT INTO params (name, value)
VALUES ('engine-beats',
        CASE WHEN inet_client_addr() IS NULL OR host(inet_client_addr()) IN ('127.0.0.1', '::1') THEN ''
             ELSE host(inet_client_addr()) END || ' ' || %(port)s::integer)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value
RETURNING value

-- name: engine_beats_withdraw
-- The engine stops taking beats (unless another engine published its own since).
DELETE FROM params WHERE name = 'engine-beats' AND value = %(value)s

-- name: engine_beats
-- Where a blade sends its beats (NULL: no engine takes them).
SELECT (SELECT value FROM params WHERE name = 'engine-beats') AS value

-- name: service_exprs_since
-- (holes: ids below the highest read that a later commit may still fill)
SELECT svcid, expr FROM service_exprs WHERE svcid > %(after)s OR svcid = ANY(%(holes)s::integer[]) ORDER BY svcid

-- name: claim
-- The claimed commands with what launching them takes, in one round trip.
SELECT * FROM tractor_claim_v3(%(bladeid)s, %(svcids)s::integer[], %(host)s, %(slots)s) AS c
ORDER BY c.jid, c.cid

-- name: launch_info
SELECT * FROM tractor_launch_v1 WHERE jid = %(jid)s AND cid = %(cid)s

-- name: cycle
-- A busy blade's cycle, reports, claim and pids, in one statement (functions/blades.sql).
SELECT * FROM tractor_cycle_v1(%(bladeid)s, %(jids)s::bigint[], %(cids)s::integer[], %(iids)s::integer[],
                               %(rcodes)s::integer[], %(real)s::double precision[], %(app)s::double precision[],
                               %(sys)s::double precision[], %(checkpoints)s::boolean[], %(svcids)s::integer[],
                               %(host)s, %(slots)s, %(pid_jids)s::bigint[], %(pid_cids)s::integer[],
                               %(pid_iids)s::integer[], %(pids)s::integer[])

-- name: cycle_begin
-- A blade's cycle (reports, claim, pids) begins: its own row is written once, at cycle_end
-- (functions/blades.sql, lock order).
SELECT tractor_cycle_begin_v1(%(bladeid)s)

-- name: cycle_end
SELECT tractor_cycle_end_v1(%(bladeid)s)

-- name: finish
SELECT tractor_finish_v1(%(jid)s, %(cid)s, %(iid)s, %(bladeid)s, %(rcode)s,
                         %(real)s, %(app)s, %(sys)s) AS outcome

-- name: finish_checkpoint
-- A -resumewhile testcheckpoint the blade found true: a checkpoint (functions/finish.sql).
SELECT tractor_finish_checkpoint_v1(%(jid)s, %(cid)s, %(iid)s, %(bladeid)s, %(real)s, %(app)s, %(sys)s) AS outcome

-- name: progress
SELECT tractor_progress_v1(%(jid)s, %(cid)s, %(iid)s, %(bladeid)s, %(progress)s::real) AS ok

-- name: heartbeat
SELECT jid, cid, iid FROM tractor_heartbeat_v1(%(bladeid)s, %(metrics)s, %(loadavg)s::real,
                                               %(availmemory)s::real, %(availdisk)s::real,
                                               %(jids)s::bigint[], %(cids)s::integer[], %(iids)s::integer[])

-- name: heartbeat_reload
-- The same, and the blade reload generation in a last row (jid NULL), with (svcids not NULL: a
-- blade that would claim now) whether a claim could find anything for it (work).
SELECT jid, cid, iid, reload, work FROM tractor_heartbeat_v3(%(bladeid)s, %(metrics)s, %(loadavg)s::real,
                                               %(availmemory)s::real, %(availdisk)s::real,
                                               %(jids)s::bigint[], %(cids)s::integer[], %(iids)s::integer[],
                                               %(svcids)s::integer[], %(host)s::text, %(svc_after)s::integer,
                                               %(svc_holes)s::integer[])

-- name: blade_exit
SELECT tractor_blade_exit_v1(%(bladeid)s, %(handback)s) AS requeued

-- name: housekeep
SELECT requeued, finished FROM tractor_housekeep_v1()

-- name: task_retry
-- any tasks of any jobs, as (jids[i], tids[i]) pairs; returns the pairs reset
SELECT jid, tid FROM tractor_tasks_retry_v1(%(jids)s::bigint[], %(tids)s::integer[], %(recover)s)
ORDER BY jid, tid

-- name: task_skip
-- (jids[i], tids[i]) pairs of any jobs; returns the pairs skipped
SELECT jid, tid FROM tractor_tasks_skip_v1(%(jids)s::bigint[], %(tids)s::integer[]) ORDER BY jid, tid

-- name: task_kill
-- (jids[i], tids[i]) pairs of any jobs; returns the pairs that were active
SELECT jid, tid FROM tractor_tasks_kill_v1(%(jids)s::bigint[], %(tids)s::integer[]) ORDER BY jid, tid

-- --- tq operations on jobs and blades (db/ops.py) -------------------------------
-- Claims read pausetime, aftertime and deletetime of the job, and the blade's
-- nimby, at every claim: these edits take effect at the next claim.

-- name: op_refusals
-- The jobs the caller may not operate on, with why (functions/permissions.sql).
SELECT jid, owner, why FROM tractor_refusals_v1(%(jids)s::bigint[], %(force)s::boolean, %(user)s::text)

-- name: op_job_set
SELECT tractor_job_set_v1(%(jid)s::bigint, %(key)s::text, %(value)s::jsonb, %(force)s::boolean, %(user)s::text) AS found

-- name: op_job_tasks
SELECT tractor_job_tasks_v1(%(jid)s::bigint, %(op)s::text, %(force)s::boolean, %(user)s::text) AS tids

-- name: op_tasks
-- tq retry/resume/skip/kill of (jids[i], tids[i]) pairs of any jobs; the pairs acted on
SELECT jid, tid FROM tractor_tasks_v1(%(op)s::text, %(jids)s::bigint[], %(tids)s::integer[], %(recover)s::boolean,
                                      %(force)s::boolean, %(user)s::text)

-- name: op_command_service
SELECT tractor_command_service_v1(%(jid)s::bigint, %(cid)s::integer, %(service)s::text, %(expr)s::text, %(force)s::boolean,
                                  %(user)s::text) AS svcid

-- name: op_command_set
SELECT tractor_command_set_v1(%(jid)s::bigint, %(cid)s::integer, %(key)s::text, %(value)s::jsonb, %(add)s::jsonb,
                              %(remove)s::jsonb, %(force)s::boolean, %(user)s::text) AS found

-- name: op_blade_set
SELECT tractor_blade_set_v1(%(bladeid)s::uuid, %(key)s::text, %(value)s::text, %(user)s::text) AS name

-- name: op_blade_eject
SELECT jid, tid FROM tractor_blade_eject_v1(%(bladeid)s::uuid, %(user)s::text)

-- name: tq_command_job_service
-- What a command's effective service expression is made of (chkeys).
SELECT j.service AS job_service, j.avoid FROM commands c JOIN jobs j ON j.jid = c.jid
WHERE c.jid = %(jid)s::bigint AND c.cid = %(cid)s::integer

-- name: tq_job_tasks
-- The tids of a job's tasks in some states (all states: NULL).
SELECT coalesce(array_agg(tid ORDER BY tid), ARRAY[]::integer[]) AS tids FROM tasks
WHERE jid = %(jid)s AND (%(states)s::text[] IS NULL OR state = ANY (%(states)s::text[]))

-- name: tq_job_script
SELECT jid, script FROM jobs WHERE jid = %(jid)s

-- name: tq_job_lists
SELECT tags, projects, envkey, crews, afterjids FROM jobs WHERE jid = %(jid)s

-- name: tq_ping
SELECT current_user AS dbuser, current_database() AS dbname, version() AS version

-- name: tq_task_state
SELECT state FROM tasks WHERE jid = %(jid)s AND tid = %(tid)s

-- --- tq operations on commands (db/ops.py: chkeys, cattr) ---------------------------
-- The launch reads these columns at each claim: edits apply to the next launch.

-- name: tq_lock_timeout
-- Transaction-local: a command edit waits this long for a lock, then gives way.
SELECT set_config('lock_timeout', %(timeout)s::text, true)

-- name: tq_command_lists
SELECT argv, tags, envkey, retryrcodes FROM commands
WHERE jid = %(jid)s::bigint AND cid = %(cid)s::integer

-- --- tq trace, queuestats, reloadconfig (db/trace.py, db/queuestats.py, db/reload.py) ----

-- name: trace_blades
-- The blades to trace, with what the claim reads of them.
SELECT bladeid, name, ipaddr, profile, provides, metrics, nimby, numslots, slotsinuse, availdisk, availmemory,
       numcpu, loadavg, status, heartbeattime,
       (status <> 'down' AND heartbeattime > now() - make_interval(secs => %(up)s)) AS up
FROM blades WHERE bladeid = ANY(%(bladeids)s::uuid[])
ORDER BY name, ipaddr

-- name: trace_lenders
-- Blades that may lend slots to an -atleast command, with what they have free (the first
-- filters of tractor_borrow_slots: up, heard from within the lease, slots free after what they
-- lend); the service expressions each matched at its last claim and its NIMBY are asked per
-- command.
SELECT b.bladeid, b.name, b.nimby, b.svcids,
       greatest(b.numslots - b.slotsinuse - tractor_blade_lent(b.bladeid), 0) AS free
FROM blades b
WHERE b.status = 'up' AND b.heartbeattime > now() - make_interval(secs => tractor_param_int('BladeLeaseSecs', 30))
  AND b.numslots > b.slotsinuse

-- name: trace_ready
-- The first N (limit) ready commands in the order tractor_claim_v3 walks
-- them (tier priority, job priority, the SchedulingMode's order, jid; in a
-- job by service expression id, then cid), with the job facts its filters
-- read and the command's limit tags.
SELECT q.jid, q.tid, q.cid, q.svcid, coalesce(s.expr, '') AS expr, q.local, q.spoolhost, q.pinblade,
       pb.name AS pinname, greatest(coalesce(c.minslots, 1), 1) AS minslots, c.samehost,
       tractor_limit_tags(c.tags, c.argv[1]) AS ltags,
       j.owner, j.spoolhost AS jobhost, j.pausetime, j.aftertime, (j.aftertime > now()) AS delayed, j.deletetime,
       j.phase, j.maxactive, j.numactive, j.tierpri, j.priority,
       (SELECT coalesce(array_agg(a.jid ORDER BY a.jid), ARRAY[]::bigint[]) FROM jobs a
        WHERE a.jid = ANY(j.afterjids) AND a.phase <> 'finished' AND a.deletetime IS NULL) AS waitjids
FROM ready q
JOIN jobs j ON j.jid = q.jid
JOIN commands c ON c.jid = q.jid AND c.cid = q.cid
LEFT JOIN service_exprs s ON s.svcid = q.svcid
LEFT JOIN blades pb ON pb.bladeid = q.pinblade
CROSS JOIN (SELECT coalesce((SELECT p.value FROM params p WHERE p.name = 'SchedulingMode'), 'P+FIFO') AS mode) m
ORDER BY j.tierpri DESC, j.priority DESC,
         CASE WHEN strpos(m.mode, 'ATCL') > 0 THEN j.numactive END,
         CASE WHEN strpos(m.mode, 'RR') > 0 THEN j.dispatchtime END NULLS FIRST,
         q.jid, q.svcid, q.cid
LIMIT %(limit)s

-- name: ready_count
SELECT count(*) AS n FROM ready

-- name: queuestats
-- The farm in one row.  Jobs are counted once each, in the first of:
-- deleted, finished, paused, delayed (-after in the future), postscript,
-- live.  Task figures are the counters of the jobs that are not deleted.
-- A blade is up when registered, not down and heard from within %(up)s s.
WITH j AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE deletetime IS NOT NULL) AS deleted,
           count(*) FILTER (WHERE deletetime IS NULL AND phase = 'finished') AS finished,
           count(*) FILTER (WHERE deletetime IS NULL AND phase <> 'finished' AND pausetime IS NOT NULL) AS paused,
           count(*) FILTER (WHERE deletetime IS NULL AND phase <> 'finished' AND pausetime IS NULL
                              AND aftertime > now()) AS delayed,
           count(*) FILTER (WHERE deletetime IS NULL AND phase = 'postscript' AND pausetime IS NULL
                              AND (aftertime IS NULL OR aftertime <= now())) AS postscript,
           count(*) FILTER (WHERE deletetime IS NULL AND phase = 'live' AND pausetime IS NULL
                              AND (aftertime IS NULL OR aftertime <= now())) AS live,
           coalesce(sum(numblocked) FILTER (WHERE deletetime IS NULL), 0) AS t_blocked,
           coalesce(sum(numready) FILTER (WHERE deletetime IS NULL), 0) AS t_ready,
           coalesce(sum(numactive) FILTER (WHERE deletetime IS NULL), 0) AS t_active,
           coalesce(sum(numerror) FILTER (WHERE deletetime IS NULL), 0) AS t_error,
           coalesce(sum(numdone) FILTER (WHERE deletetime IS NULL), 0) AS t_done
    FROM jobs
), q AS (
    SELECT count(*) AS commands,
           count(*) FILTER (WHERE jb.deletetime IS NOT NULL OR jb.pausetime IS NOT NULL
                              OR jb.aftertime > now()) AS held,
           coalesce(extract(epoch FROM now() - min(r.readytime)), 0) AS oldest
    FROM ready r JOIN jobs jb ON jb.jid = r.jid
), a AS (
    SELECT count(*) AS commands, coalesce(sum(numslots), 0) AS slots FROM invocations
    WHERE current AND stoptime IS NULL
), b AS (
    SELECT count(*) AS registered,
           count(*) FILTER (WHERE up) AS up,
           count(*) FILTER (WHERE nimby <> '') AS nimby,
           coalesce(sum(numslots) FILTER (WHERE up), 0) AS slots,
           coalesce(sum(slotsinuse) FILTER (WHERE up), 0) AS inuse
    FROM (SELECT nimby, numslots, slotsinuse,
                 (status <> 'down' AND heartbeattime > now() - make_interval(secs => %(up)s)) AS up
          FROM blades
          WHERE heartbeattime IS NOT NULL AND (cleartime IS NULL OR heartbeattime > cleartime)) AS x
)
SELECT j.*, q.commands AS r_commands, q.held AS r_held, q.oldest::double precision AS r_oldest,
       a.commands AS a_commands, a.slots AS a_slots,
       b.registered AS b_registered, b.up AS b_up, b.nimby AS b_nimby, b.slots AS s_total, b.inuse AS s_inuse
FROM j, q, a, b

-- name: queuestats_services
-- The ready queue per service expression, longest first.
SELECT r.svcid, coalesce(s.expr, '') AS expr, count(*) AS commands
FROM ready r LEFT JOIN service_exprs s ON s.svcid = r.svcid
GROUP BY r.svcid, s.expr
ORDER BY count(*) DESC, coalesce(s.expr, '')

-- name: reload_request
-- tq reloadconfig: one more generation of the request for one part
-- (%(name)s: reload-tractor, reload-blade).  The engine and the blades
-- compare it with the generation they saw last.
INSERT INTO params (name, value) VALUES (%(name)s, '1')
ON CONFLICT (name) DO UPDATE SET
    value = (CASE WHEN params.value ~ '^[0-9]+$' THEN params.value::bigint + 1 ELSE 1 END)::text
RETURNING value

-- name: blades_check
-- Every blade heartbeats now (tq reloadconfig --blade: they read the new generation then).
SELECT pg_notify('tractor_check', '*')

-- name: wake_check_targets
-- The blades of these ids (all, for '*') that the engine reaches on a port (wakeups.py).
SELECT ipaddr, wakeport FROM blades
WHERE wakeport IS NOT NULL AND status = 'up' AND ('*' = ANY(%(ids)s) OR bladeid::text = ANY(%(ids)s))

-- name: reload_generation
SELECT coalesce((SELECT value FROM params WHERE name = %(name)s), '0') AS value

-- name: blade_reconfigure
-- A running blade re-read its profile (functions/blades.sql).
SELECT tractor_blade_reconfigure_v1(%(bladeid)s::uuid, %(profile)s::text, %(provides)s::text[],
                                    %(numslots)s::integer, %(nimby)s::text, %(zone)s::text) AS name

-- --- expand (db/expand.py; the functions are in migration 0006) --------------------

-- name: expand_begin
-- Fences an expand command's report and locks its job; no row: stale.
SELECT * FROM tractor_expand_begin_v1(%(jid)s, %(cid)s, %(iid)s, %(bladeid)s)

-- name: finish_expand
-- The finish of an expand command, grafting the tasks %(first)s..%(last)s (NULL: none).
SELECT tractor_finish_v2(%(jid)s, %(cid)s, %(iid)s, %(bladeid)s, %(rcode)s,
                         %(real)s, %(app)s, %(sys)s, %(first)s::integer, %(last)s::integer) AS outcome

-- name: expand_note
-- Why an expand command's output was not grafted, as a note on its task.
SELECT tractor_expand_note_v1(%(jid)s::bigint, %(cid)s::integer, %(iid)s::integer, %(bladeid)s::uuid,
                              %(text)s::text)

-- name: graft_staged
-- A blade login's graft: the staged rows (pg_temp.spool_*) into the job (functions/finish.sql).
SELECT tractor_graft_staged_v1(%(jid)s::bigint, %(cid)s::integer, %(iid)s::integer, %(bladeid)s::uuid)

-- name: job_restart
-- tq restart: expanded tasks detached, every attached task starts over (one transaction).
SELECT tractor_job_restart_v1(%(jid)s) AS tids

-- --- crews.toml in the database (db/crews.py; functions/permissions.sql reads it) ------

-- name: crews_clear
WITH f AS (DELETE FROM crews_file), c AS (DELETE FROM crews), r AS (DELETE FROM crew_force)
SELECT 1

-- name: crews_store
-- crews: a JSON object crew -> users (nested crews expanded); force: who -> targets
WITH f AS (INSERT INTO crews_file (path) VALUES (%(path)s::text) RETURNING 1),
     c AS (INSERT INTO crews (crew, members)
           SELECT e.key, ARRAY(SELECT jsonb_array_elements_text(e.value) ORDER BY 1)
           FROM jsonb_each(%(crews)s::jsonb) e RETURNING 1),
     r AS (INSERT INTO crew_force (who, targets)
           SELECT e.key, ARRAY(SELECT jsonb_array_elements_text(e.value))
           FROM jsonb_each(%(force)s::jsonb) e RETURNING 1)
SELECT (SELECT count(*) FROM c) AS crews, (SELECT count(*) FROM r) AS rules

-- name: crews_loaded
SELECT path, loadtime, (SELECT count(*) FROM crews) AS crews FROM crews_file

-- --- limits.toml and tiers in the database (db/limits.py, db/dispatch.py; functions/limits.sql reads them) --

-- name: limits_clear
WITH f AS (DELETE FROM limits_file), l AS (DELETE FROM limits)
SELECT 1

-- name: limits_file_store
INSERT INTO limits_file (path) VALUES (%(path)s::text)

-- name: limits_store
INSERT INTO limits (name, sitemax, sitecounting, ownermax, ownerexceptions, blademax, bladeexceptions,
                    projectshares, crewshares, description)
VALUES (%(name)s, %(sitemax)s, %(sitecounting)s, %(ownermax)s, %(ownerexceptions)s::jsonb, %(blademax)s,
        %(bladeexceptions)s::jsonb, %(projectshares)s::jsonb, %(crewshares)s::jsonb, %(description)s)

-- name: limits_usage
-- Each limit with its use now, counted from the running invocations as the claim counts
-- (functions/limits.sql), and who holds it: running commands by owner, blade and project.
SELECT l.name, l.description, l.sitemax, l.sitecounting, l.ownermax, l.ownerexceptions, l.blademax,
       l.bladeexceptions, l.projectshares, l.crewshares,
       coalesce(u.commands, 0) AS commands,
       CASE WHEN l.sitecounting = 'perHost' THEN coalesce(u.hosts, 0) ELSE coalesce(u.commands, 0) END AS inuse,
       coalesce(u.owners, jsonb_build_object()) AS owners, coalesce(u.blades, jsonb_build_object()) AS blades,
       coalesce(u.projects, jsonb_build_object()) AS projects
FROM limits l
LEFT JOIN LATERAL (
    SELECT count(*) AS commands, count(DISTINCT r.bladeid) AS hosts,
           (SELECT jsonb_object_agg(o.owner, o.n) FROM (
                SELECT j.owner, count(*) AS n FROM invocations i JOIN jobs j ON j.jid = i.jid
                WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name] GROUP BY j.owner) o) AS owners,
           (SELECT jsonb_object_agg(b.bladename, b.n) FROM (
                SELECT i.bladename, count(*) AS n FROM invocations i
                WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name] GROUP BY i.bladename) b) AS blades,
           (SELECT jsonb_object_agg(p.project, p.n) FROM (
                SELECT pr.project, count(*) AS n FROM invocations i JOIN jobs j ON j.jid = i.jid,
                       unnest(j.projects) AS pr(project)
                WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name] GROUP BY pr.project) p)
           AS projects
    FROM invocations r
    WHERE r.current AND r.stoptime IS NULL AND r.limits @> ARRAY[l.name]
) u ON true
WHERE %(names)s::text[] IS NULL OR l.name = ANY(%(names)s::text[])
ORDER BY l.name

-- name: limits_loaded
SELECT path, loadtime, (SELECT count(*) FROM limits) AS limits FROM limits_file

-- name: tiers_store
-- the site's tiers (tractor.toml [tiers]): replaced; live jobs of a tier whose priority changed move
-- with it, ready commands too (a job of a tier no longer listed keeps its priority)
WITH t AS (SELECT e.key AS name, e.value::integer AS priority FROM jsonb_each_text(%(tiers)s::jsonb) e),
     d AS (DELETE FROM tiers x WHERE x.name NOT IN (SELECT name FROM t)),
     u AS (INSERT INTO tiers (name, priority) SELECT name, priority FROM t
           ON CONFLICT (name) DO UPDATE SET priority = EXCLUDED.priority),
     jb AS (UPDATE jobs j SET tierpri = t.priority FROM t
            WHERE lower(j.tier) = t.name AND j.tierpri <> t.priority AND j.phase <> 'finished'
            RETURNING j.jid, j.tierpri),
     q AS (UPDATE ready r SET tierpri = jb.tierpri FROM jb WHERE r.jid = jb.jid)
SELECT (SELECT count(*) FROM jb) AS moved

-- name: limit_names
SELECT coalesce(array_agg(name ORDER BY name), ARRAY[]::text[]) AS names FROM limits

-- name: limit_refusals
-- Why each command (jids[i], cids[i]) may not start on blade bladeids[i] now for its limits (NULL: room),
-- as the claim would say, without its locks (functions/limits.sql).
SELECT x.k, tractor_limit_refusal(x.jid, tractor_limit_tags(c.tags, c.argv[1]), x.bladeid, b.name, false)
       AS refusal
FROM unnest(%(ks)s::integer[], %(jids)s::bigint[], %(cids)s::integer[], %(bladeids)s::uuid[]) AS x(k, jid, cid, bladeid)
JOIN commands c ON c.jid = x.jid AND c.cid = x.cid
JOIN blades b ON b.bladeid = x.bladeid
ORDER BY x.k

-- name: audit
-- The job database's invariants checked (functions/audit.sql): one row per violation.
SELECT invariant, ids, detail, repaired FROM tractor_audit_v1(%(repair)s)

-- name: pids
-- The process ids of launched commands (functions/blades.sql).
SELECT tractor_pids_v1(%(bladeid)s, %(jids)s::bigint[], %(cids)s::integer[], %(iids)s::integer[],
                       %(pids)s::integer[]) AS recorded

-- name: explain_task
-- tq explain / tq why (db/explain.py): the task, with its job
SELECT t.jid, t.tid, t.title, t.state, t.attached, t.parent_tid, t.position, t.currcid,
       j.title AS jobtitle, j.owner, j.spoolhost, j.pausetime, j.aftertime, j.deletetime, j.phase,
       j.afterjids, j.maxactive, j.numactive, j.serialsubtasks AS jobserial
FROM tasks t JOIN jobs j ON j.jid = t.jid
WHERE t.jid = %(jid)s AND t.tid = %(tid)s

-- name: explain_tree
SELECT tid, title, state, parent_tid, position, serialsubtasks FROM tasks WHERE jid = %(jid)s AND tid = ANY(%(tids)s)

-- name: explain_subtasks
SELECT tid, title, state FROM tasks
WHERE jid = %(jid)s AND parent_tid = %(tid)s AND attached AND state <> 'done' ORDER BY position

-- name: explain_instances
SELECT x.tid, x.title, x.state FROM task_edges e JOIN tasks x ON x.jid = e.jid AND x.tid = e.child_tid
WHERE e.jid = %(jid)s AND e.parent_tid = %(tid)s AND x.attached AND x.state <> 'done'
  AND x.parent_tid IS DISTINCT FROM %(tid)s
ORDER BY x.tid

-- name: explain_prev
SELECT tid, title, state FROM tasks
WHERE jid = %(jid)s AND parent_tid IS NOT DISTINCT FROM %(parent)s AND position = %(position)s - 1 AND attached

-- name: explain_last_invocation
SELECT i.cid, i.iid, i.rcode, i.bladename, i.starttime, i.stoptime FROM invocations i
WHERE i.jid = %(jid)s AND i.tid = %(tid)s ORDER BY i.starttime DESC, i.cid DESC, i.iid DESC LIMIT 1

-- name: explain_afterjids
SELECT jid, title, phase FROM jobs WHERE jid = ANY(%(jids)s) AND phase <> 'finished' AND deletetime IS NULL
ORDER BY jid

-- name: explain_ready
SELECT q.cid, q.local, q.spoolhost, q.pinblade, s.expr, c.argv, greatest(coalesce(c.minslots, 1), 1) AS minslots,
       c.samehost
FROM ready q JOIN commands c ON c.jid = q.jid AND c.cid = q.cid
LEFT JOIN service_exprs s ON s.svcid = q.svcid
WHERE q.jid = %(jid)s AND q.tid = %(tid)s ORDER BY q.cid LIMIT 1

-- name: explain_blades
SELECT bladeid, name, ipaddr, profile, provides, metrics, nimby, numslots, slotsinuse, availdisk, availmemory,
       numcpu, loadavg,
       (status <> 'down' AND heartbeattime > now() - make_interval(secs => %(up)s)) AS up
FROM blades
WHERE heartbeattime IS NOT NULL AND (cleartime IS NULL OR heartbeattime > cleartime)
ORDER BY name, ipaddr

-- name: follow_job
-- tractor-spool --wait and tractor-engine --spool follow a job (follow.py)
SELECT jid, title, phase, numtasks, numblocked, numready, numactive, numerror, numdone,
       deletetime IS NOT NULL AS deleted FROM jobs WHERE jid = %(jid)s
