-- Spooling by people and who may act for whom.  The site's role writes a
-- job's rows itself (db/spool.py, binary COPY into the tables); a person's
-- role may write no table, so it stages the same rows in temporary tables of
-- its own session (pg_temp.spool_*, jid 0) and this function, owned by the
-- site's role, moves them in: the owner is the person who is logged in
-- (session_user), the rows are checked to be one whole consistent job, and
-- the ready queue and the job's service list are made here, not taken from
-- the client.
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else; a signature blades call is never changed (add _v2 instead).
-- SECURITY DEFINER functions have a fixed search_path, pg_temp last (temporary tables are named pg_temp.*).

-- The ids of service expressions a spool needs, storing the new ones (the
-- table is the site's; people may only add expressions, through here).
CREATE OR REPLACE FUNCTION tractor_service_ids_v1(p_exprs text[])
RETURNS TABLE (svcid integer, expr text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO service_exprs (expr)
    SELECT DISTINCT u.e FROM unnest(p_exprs) AS u(e)
    WHERE u.e IS NOT NULL AND NOT EXISTS (SELECT 1 FROM service_exprs s WHERE s.expr = u.e)
    ON CONFLICT (expr) DO NOTHING;
    RETURN QUERY SELECT s.svcid, s.expr FROM service_exprs s WHERE s.expr = ANY(p_exprs) FOR KEY SHARE;
END $$;

-- The staged rows (pg_temp.spool_*) hold only values their tables may (audit.sql, "the values a
-- row may hold"): a person or a blade login stages these rows itself, so a staged spool or graft
-- is refused when one does not (the site's own spool writes its rows by construction).
CREATE OR REPLACE FUNCTION tractor_staged_values_ok() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (SELECT 1 FROM pg_temp.spool_jobs j
                       WHERE tractor_job_value_problems(j.phase, j.maxactive, j.scriptformat) <> '{}')
       AND NOT EXISTS (SELECT 1 FROM pg_temp.spool_tasks t
                       WHERE tractor_task_value_problems(t.state, t.progress, t.pending, t.tid) <> '{}')
       AND NOT EXISTS (SELECT 1 FROM pg_temp.spool_commands c
                       WHERE tractor_command_value_problems(c.state, c.runtype, c.cid) <> '{}')
$$;

-- The staged job (pg_temp.spool_jobs, spool_tasks, spool_task_edges,
-- spool_commands; jid 0) becomes a job owned by `p_owner` (NULL or '': the
-- logged-in role), which must be the logged-in role unless it may act for
-- the owner.  Returns the new jid and the spool time.
CREATE OR REPLACE FUNCTION tractor_spool_staged_v1(p_owner text)
RETURNS TABLE (jid bigint, spooltime timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_owner text := coalesce(nullif(p_owner, ''), session_user);
    v_jid bigint;
    v_time timestamptz;
    j record;
    n_jobs integer;
BEGIN
    IF tractor_is_blade() THEN
        RAISE EXCEPTION '% is a blade login: blades may not spool jobs', session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT tractor_may_act_for(session_user, v_owner) THEN
        RAISE EXCEPTION '% may not spool jobs as % (crews.toml)', session_user, v_owner
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM tractor_check_temp_tables(true);
    SELECT count(*) INTO n_jobs FROM pg_temp.spool_jobs;
    IF n_jobs <> 1 THEN
        RAISE EXCEPTION 'a staged spool holds one job row, not %', n_jobs USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO j FROM pg_temp.spool_jobs;
    -- one whole job: every row is the staged job's, its counts agree
    IF j.jid <> 0
       OR EXISTS (SELECT 1 FROM pg_temp.spool_tasks t WHERE t.jid <> 0)
       OR EXISTS (SELECT 1 FROM pg_temp.spool_task_edges e WHERE e.jid <> 0)
       OR EXISTS (SELECT 1 FROM pg_temp.spool_commands c WHERE c.jid <> 0)
       OR (SELECT count(*) FROM pg_temp.spool_tasks) <> j.numtasks
       OR j.maxtid <> j.numtasks
       OR (SELECT count(*) FROM pg_temp.spool_commands) <> j.maxcid
       OR (SELECT count(*) FROM pg_temp.spool_tasks t WHERE t.state = 'ready') <> j.numready
       OR (SELECT count(*) FROM pg_temp.spool_tasks t WHERE t.state = 'done') <> j.numdone
       OR (SELECT count(*) FROM pg_temp.spool_tasks t WHERE t.state = 'blocked') <> j.numblocked
       OR EXISTS (SELECT 1 FROM pg_temp.spool_tasks t WHERE t.state NOT IN ('blocked', 'ready', 'done'))
       OR EXISTS (SELECT 1 FROM pg_temp.spool_commands c WHERE c.state NOT IN ('blocked', 'ready'))
       OR NOT tractor_staged_values_ok()
    THEN
        RAISE EXCEPTION 'the staged job is not one consistent job' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tiers t WHERE t.name = lower(j.tier)) THEN
        RAISE EXCEPTION 'unknown tier %', j.tier USING ERRCODE = 'invalid_parameter_value';
    END IF;

    v_jid := nextval('jid_seq');
    INSERT INTO jobs (
        jid, owner, spoolhost, spoolfile, spoolcwd, spooladdr, title, assignments,
        tier, priority, crews, projects, tags, service, avoid, envkey, editpolicy,
        minslots, maxslots, etalevel, afterjids, pausetime, aftertime,
        numtasks, numblocked, numready, numdone, maxtid, maxcid,
        comment, metadata, maxactive, serialsubtasks, dirmap, script, scriptformat, tierpri, svcids)
    SELECT v_jid, v_owner, s.spoolhost, s.spoolfile, s.spoolcwd, s.spooladdr, s.title, s.assignments,
           s.tier, s.priority, s.crews, s.projects, s.tags, s.service, s.avoid, s.envkey, s.editpolicy,
           s.minslots, s.maxslots, s.etalevel, s.afterjids, CASE WHEN s.pausetime IS NOT NULL THEN now() END,
           s.aftertime, s.numtasks, s.numblocked, s.numready, s.numdone, s.maxtid, s.maxcid,
           s.comment, s.metadata, s.maxactive, s.serialsubtasks, s.dirmap, s.script, s.scriptformat,
           -- the tier's priority is the site's, whatever was staged
           (SELECT t.priority FROM tiers t WHERE t.name = lower(s.tier)),
           ARRAY(SELECT DISTINCT c.svcid FROM pg_temp.spool_commands c WHERE c.svcid IS NOT NULL ORDER BY 1)
    FROM pg_temp.spool_jobs s
    RETURNING jobs.spooltime INTO v_time;

    INSERT INTO tasks (jid, tid, title, id, service, minslots, maxslots, serialsubtasks, resumeblock,
                       state, readytime, preview, chaser, metadata, parent_tid, position, pending, lasttid)
    SELECT v_jid, t.tid, t.title, t.id, t.service, t.minslots, t.maxslots, t.serialsubtasks, t.resumeblock,
           t.state, CASE WHEN t.state = 'ready' THEN v_time END, t.preview, t.chaser, t.metadata,
           t.parent_tid, t.position, t.pending, t.lasttid
    FROM pg_temp.spool_tasks t;
    INSERT INTO task_edges (jid, parent_tid, child_tid, kind)
    SELECT v_jid, e.parent_tid, e.child_tid, e.kind FROM pg_temp.spool_task_edges e;
    INSERT INTO commands (jid, cid, tid, position, argv, local, expand, runtype, msg, service, svcid,
                          tags, id, refersto, minslots, maxslots, samehost, envkey, retryrcodes,
                          metadata, metrics, resumewhile, resumepin, minrunsecs, maxrunsecs, state)
    SELECT v_jid, c.cid, c.tid, c.position, c.argv, c.local, c.expand, c.runtype, c.msg, c.service, c.svcid,
           c.tags, c.id, c.refersto, c.minslots, c.maxslots, c.samehost, c.envkey, c.retryrcodes,
           c.metadata, c.metrics, c.resumewhile, c.resumepin, c.minrunsecs, c.maxrunsecs, c.state
    FROM pg_temp.spool_commands c;
    -- the ready queue from the job's own rows
    INSERT INTO ready (jid, cid, tid, svcid, tierpri, priority, local, spoolhost)
    SELECT v_jid, c.cid, c.tid, c.svcid, jb.tierpri, jb.priority, c.local, jb.spoolhost
    FROM commands c JOIN jobs jb ON jb.jid = c.jid
    WHERE c.jid = v_jid AND c.state = 'ready';
    IF FOUND THEN
        PERFORM pg_notify('tractor_ready', v_jid::text);
    END IF;
    DELETE FROM pg_temp.spool_jobs;
    DELETE FROM pg_temp.spool_tasks;
    DELETE FROM pg_temp.spool_task_edges;
    DELETE FROM pg_temp.spool_commands;
    RETURN QUERY SELECT v_jid, v_time;
END $$;

-- Job ids are never used twice, so jidcounter (the last jid used: queries.sql job_counter) must
-- not go back when the newest jobs are removed.  Whatever removes jobs (--purge-jobs,
-- --clear-history, --purge-archive-to-year-month, an administrator's DELETE) leaves the highest
-- jid it removed as the floor of the counter (params jidfloor).
CREATE OR REPLACE FUNCTION tractor_keep_jid_floor() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        SELECT max(jid) INTO top FROM jobs;  -- (a BEFORE trigger: they are still there)
    ELSE
        SELECT max(jid) INTO top FROM gone;
    END IF;
    INSERT INTO params (name, value)
    SELECT 'jidfloor', top::text
    WHERE top > coalesce((SELECT max(p.value::bigint) FROM params p WHERE p.name = 'jidfloor'), 0)
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER jobs_keep_jid_floor_delete
AFTER DELETE ON jobs REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION tractor_keep_jid_floor();

CREATE OR REPLACE TRIGGER jobs_keep_jid_floor_truncate
BEFORE TRUNCATE ON jobs
FOR EACH STATEMENT EXECUTE FUNCTION tractor_keep_jid_floor();
