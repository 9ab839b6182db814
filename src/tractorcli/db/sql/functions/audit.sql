-- The invariant audit (tractor-dbctl --check, tq audit): what the state machine promises about
-- the job database, checked against its rows.  Each violation is one row: the invariant, the
-- ids it concerns and what was found.  With p_repair what can be derived from other rows is
-- set right (a job's counters from its tasks, the ready queue from the commands' states, a
-- blade's slots in use from what it runs) and the row says so; the rest is only reported.
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else; a signature clients call is never changed (add _v2 instead).

-- The values a row may hold (the job tables' CHECK constraints before migration 20, which
-- moved them here): what is wrong with a job's, task's or command's values, one text each
-- ('{}': nothing).  The audit reports them; tractor_staged_values_ok (spool.sql) refuses staged
-- rows with any.  (One expression each: the planner inlines them into the audit's scans.)
CREATE OR REPLACE FUNCTION tractor_job_value_problems(p_phase text, p_maxactive integer, p_scriptformat text)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT array_remove(ARRAY[
        CASE WHEN p_phase NOT IN ('live', 'postscript', 'finished') THEN format('phase %L', p_phase) END,
        CASE WHEN p_maxactive < 0 THEN format('maxactive %s', p_maxactive) END,
        CASE WHEN p_scriptformat NOT IN ('alfred', 'json', 'generated') THEN format('scriptformat %L', p_scriptformat) END
    ], NULL)
$$;

CREATE OR REPLACE FUNCTION tractor_task_value_problems(p_state text, p_progress double precision,
                                                       p_pending integer, p_tid integer)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT array_remove(ARRAY[
        CASE WHEN p_state NOT IN ('blocked', 'ready', 'active', 'error', 'done') THEN format('state %L', p_state) END,
        CASE WHEN NOT (p_progress >= 0 AND p_progress <= 100) THEN format('progress %s', p_progress) END,
        CASE WHEN p_pending < 0 THEN format('pending %s', p_pending) END,
        CASE WHEN p_tid <= 0 THEN format('tid %s', p_tid) END
    ], NULL)
$$;

CREATE OR REPLACE FUNCTION tractor_command_value_problems(p_state text, p_runtype text, p_cid integer)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT array_remove(ARRAY[
        CASE WHEN p_state NOT IN ('blocked', 'ready', 'active', 'error', 'done', 'skipped')
             THEN format('state %L', p_state) END,
        CASE WHEN p_runtype NOT IN ('regular', 'cleanup', 'post_always', 'post_error', 'post_done')
             THEN format('runtype %L', p_runtype) END,
        CASE WHEN p_cid <= 0 THEN format('cid %s', p_cid) END
    ], NULL)
$$;

CREATE OR REPLACE FUNCTION tractor_audit_v1(p_repair boolean)
RETURNS TABLE (invariant text, ids text, detail text, repaired boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    IF p_repair AND NOT (tractor_is_site() OR tractor_is_wrangler(session_user)) THEN
        RAISE EXCEPTION 'only the site''s role, Administrators and Wranglers may repair the job database'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Each check is one query, so it sees one snapshot and the farm runs on while it looks.
    -- Repairs write what the rows say, so nothing may change them meanwhile.
    IF p_repair THEN
        LOCK TABLE jobs, tasks, commands, ready, invocations, blades IN SHARE ROW EXCLUSIVE MODE;
    END IF;

    -- a job's counters are its tasks' states
    FOR r IN
        SELECT j.jid, j.numtasks, j.numblocked, j.numready, j.numactive, j.numerror, j.numdone,
               coalesce(c.n, 0) AS n, coalesce(c.blocked, 0) AS blocked, coalesce(c.ready, 0) AS ready,
               coalesce(c.active, 0) AS active, coalesce(c.error, 0) AS error, coalesce(c.done, 0) AS done
        FROM jobs j
        LEFT JOIN (SELECT t.jid, count(*) FILTER (WHERE t.attached) AS n,
                          count(*) FILTER (WHERE t.attached AND t.state = 'blocked') AS blocked,
                          count(*) FILTER (WHERE t.attached AND t.state = 'ready') AS ready,
                          count(*) FILTER (WHERE t.attached AND t.state = 'active') AS active,
                          count(*) FILTER (WHERE t.attached AND t.state = 'error') AS error,
                          count(*) FILTER (WHERE t.attached AND t.state = 'done') AS done
                   FROM tasks t GROUP BY t.jid) c ON c.jid = j.jid
        WHERE (j.numtasks, j.numblocked, j.numready, j.numactive, j.numerror, j.numdone)
              IS DISTINCT FROM (coalesce(c.n, 0), coalesce(c.blocked, 0), coalesce(c.ready, 0),
                                coalesce(c.active, 0), coalesce(c.error, 0), coalesce(c.done, 0))
        ORDER BY j.jid
    LOOP
        IF p_repair THEN
            UPDATE jobs SET numtasks = r.n, numblocked = r.blocked, numready = r.ready, numactive = r.active,
                            numerror = r.error, numdone = r.done
            WHERE jid = r.jid;
        END IF;
        invariant := 'job counters';
        ids := format('job %s', r.jid);
        detail := format('tasks/blocked/ready/active/error/done %s/%s/%s/%s/%s/%s, but its tasks are %s/%s/%s/%s/%s/%s',
                         r.numtasks, r.numblocked, r.numready, r.numactive, r.numerror, r.numdone,
                         r.n, r.blocked, r.ready, r.active, r.error, r.done);
        repaired := p_repair;
        RETURN NEXT;
    END LOOP;

    -- an active command has a current invocation still running; a running invocation's command is active
    FOR r IN
        SELECT c.jid, c.cid, c.state, i.iid, i.bladename
        FROM commands c
        LEFT JOIN invocations i ON i.jid = c.jid AND i.cid = c.cid AND i.current AND i.stoptime IS NULL
        WHERE (c.state = 'active') <> (i.iid IS NOT NULL)
        ORDER BY c.jid, c.cid
    LOOP
        invariant := 'active commands';
        ids := format('job %s command %s', r.jid, r.cid);
        detail := CASE WHEN r.iid IS NULL THEN 'active with no running invocation'
                       ELSE format('%s, yet invocation %s runs on %s', r.state, r.iid, r.bladename) END;
        repaired := false;
        RETURN NEXT;
    END LOOP;

    -- a task is ready or active only when what it waits for is done: its subtasks, its Instance
    -- targets and, under -serialsubtasks, the sibling before it
    FOR r IN
        SELECT t.jid, t.tid, t.state, w.what, w.tid AS wtid
        FROM tasks t
        CROSS JOIN LATERAL (
            SELECT 'subtask' AS what, s.tid FROM tasks s
            WHERE s.jid = t.jid AND s.parent_tid = t.tid AND s.attached AND s.state <> 'done'
            UNION ALL
            SELECT 'Instance target', x.tid FROM task_edges e JOIN tasks x ON x.jid = e.jid AND x.tid = e.child_tid
            WHERE e.jid = t.jid AND e.parent_tid = t.tid AND e.kind = 'instance' AND x.state <> 'done'
            UNION ALL
            SELECT 'serial predecessor', p.tid FROM tasks p
            WHERE p.jid = t.jid AND coalesce(p.lasttid, p.tid) + 1 = t.tid AND p.attached
              AND p.parent_tid IS NOT DISTINCT FROM t.parent_tid AND p.state <> 'done'
              AND CASE WHEN t.parent_tid IS NULL
                       THEN (SELECT j.serialsubtasks FROM jobs j WHERE j.jid = t.jid)
                       ELSE (SELECT q.serialsubtasks FROM tasks q WHERE q.jid = t.jid AND q.tid = t.parent_tid) END
        ) w
        WHERE t.state IN ('ready', 'active') AND t.attached
        ORDER BY t.jid, t.tid, w.tid
    LOOP
        invariant := 'task order';
        ids := format('job %s task %s', r.jid, r.tid);
        detail := format('%s while its %s %s is not done', r.state, r.what, r.wtid);
        repaired := false;
        RETURN NEXT;
    END LOOP;

    -- the ready queue holds exactly the commands in state ready (those of paused and deleted
    -- jobs too: claims pass their jobs by, and unpause or undelete finds them queued)
    FOR r IN
        SELECT c.jid, c.cid, c.state, q.cid IS NOT NULL AS queued
        FROM commands c
        LEFT JOIN ready q ON q.jid = c.jid AND q.cid = c.cid
        WHERE (c.state = 'ready') <> (q.cid IS NOT NULL)
        ORDER BY c.jid, c.cid
    LOOP
        IF p_repair AND r.queued THEN
            DELETE FROM ready WHERE ready.jid = r.jid AND ready.cid = r.cid;
        ELSIF p_repair THEN
            PERFORM tractor_queue_command(r.jid, r.cid);
        END IF;
        invariant := 'ready queue';
        ids := format('job %s command %s', r.jid, r.cid);
        detail := CASE WHEN r.queued THEN format('queued, but %s', r.state) ELSE 'ready, but not queued' END;
        repaired := p_repair;
        RETURN NEXT;
    END LOOP;

    -- a blade's slots in use are those of the commands it runs
    FOR r IN
        SELECT b.bladeid, b.name, b.slotsinuse, coalesce(u.n, 0) AS n
        FROM blades b
        LEFT JOIN (SELECT i.bladeid, sum(i.numslots)::integer AS n FROM invocations i
                   WHERE i.current AND i.stoptime IS NULL GROUP BY i.bladeid) u ON u.bladeid = b.bladeid
        WHERE b.slotsinuse <> coalesce(u.n, 0)
        ORDER BY b.name
    LOOP
        IF p_repair THEN
            UPDATE blades SET slotsinuse = r.n WHERE bladeid = r.bladeid;
        END IF;
        invariant := 'blade slots';
        ids := format('blade %s', r.name);
        detail := format('%s slot(s) in use, but it runs commands in %s', r.slotsinuse, r.n);
        repaired := p_repair;
        RETURN NEXT;
    END LOOP;

    -- row values in their sets and ranges (the hot tables keep no CHECK constraints: migration 20)
    FOR r IN
        SELECT 'job' AS kind, j.jid, NULL::integer AS id, p.what
        FROM jobs j CROSS JOIN LATERAL unnest(tractor_job_value_problems(j.phase, j.maxactive, j.scriptformat)) AS p(what)
        UNION ALL
        SELECT 'task', t.jid, t.tid, p.what
        FROM tasks t CROSS JOIN LATERAL unnest(tractor_task_value_problems(t.state, t.progress, t.pending, t.tid)) AS p(what)
        UNION ALL
        SELECT 'command', c.jid, c.cid, p.what
        FROM commands c CROSS JOIN LATERAL unnest(tractor_command_value_problems(c.state, c.runtype, c.cid)) AS p(what)
        UNION ALL
        SELECT 'invocation', i.jid, i.cid, format('iid %s', i.iid) FROM invocations i WHERE i.iid <= 0
        ORDER BY 2, 3 NULLS FIRST, 4
    LOOP
        invariant := 'row values';
        ids := format('job %s', r.jid) || CASE WHEN r.id IS NULL THEN '' ELSE format(' %s %s', r.kind, r.id) END;
        detail := r.what;
        repaired := false;
        RETURN NEXT;
    END LOOP;

    -- no orphans: rows that name a task or blade that is not there
    FOR r IN
        SELECT 'command' AS kind, c.jid, c.cid AS id FROM commands c
        WHERE c.tid > 0 AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.jid = c.jid AND t.tid = c.tid)
        UNION ALL
        SELECT 'running invocation', i.jid, i.cid FROM invocations i
        WHERE i.current AND i.stoptime IS NULL AND i.bladeid IS NULL
        UNION ALL
        SELECT 'task', t.jid, t.tid FROM tasks t
        WHERE t.parent_tid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tasks p WHERE p.jid = t.jid AND p.tid = t.parent_tid)
        ORDER BY 2, 3
    LOOP
        invariant := 'orphans';
        ids := format('job %s %s %s', r.jid, CASE WHEN r.kind = 'task' THEN 'task' ELSE 'command' END, r.id);
        detail := CASE r.kind WHEN 'command' THEN 'its task is not there'
                              WHEN 'task' THEN 'its parent task is not there'
                              ELSE 'running on no blade' END;
        repaired := false;
        RETURN NEXT;
    END LOOP;
END $$;
