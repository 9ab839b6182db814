-- A command's end as its blade reports it (fenced by the invocation), and -expand commands'
-- tasks grafted into their running job.
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else; a signature blades call is never changed (add _v2 instead).

-- A command's process ended with p_rcode (negative: killed by that signal;
-- 20000+errno: could not launch).  Fenced: only the current invocation of
-- the blade that claimed it counts; anything else returns 'stale' and
-- changes nothing.  Returns 'done', 'retry' (queued again automatically),
-- 'resume' (a -resumewhile checkpoint outside a -resumeblock: the next pass
-- is queued), 'checkpoint' (one inside a block: done for this pass), 'pass'
-- (the block's root finished a pass and the next began), 'error' or
-- 'stale'.
CREATE OR REPLACE FUNCTION tractor_finish_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid, p_rcode integer,
                                  p_elapsedreal double precision, p_elapsedapp double precision,
                                  p_elapsedsys double precision) RETURNS text
-- (enable_seqscan off: see tractor_claim_v3 in blades.sql)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off AS $$
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    RETURN tractor_finish(p_jid, p_cid, p_iid, p_blade, p_rcode, p_elapsedreal, p_elapsedapp, p_elapsedsys, false,
                          NULL);
END $$;

-- A command whose -resumewhile {testcheckpoint exr FILE} the blade found true (FILE is a
-- checkpoint image) exited 0: reported as a checkpoint (as an -resumewhile {exitcode N} match is).
CREATE OR REPLACE FUNCTION tractor_finish_checkpoint_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid,
                                                        p_elapsedreal double precision,
                                                        p_elapsedapp double precision,
                                                        p_elapsedsys double precision) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off AS $$
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    RETURN tractor_finish(p_jid, p_cid, p_iid, p_blade, 0, p_elapsedreal, p_elapsedapp, p_elapsedsys, true, NULL);
END $$;

-- The nearest -resumeblock task at or above task p_tid (NULL: none).  (plpgsql: its plan is
-- kept, where a SQL function called from plpgsql is planned again at every call.)
CREATE OR REPLACE FUNCTION tractor_resume_block(p_jid bigint, p_tid integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (WITH RECURSIVE up(tid, parent_tid, resumeblock, depth) AS (
                SELECT t.tid, t.parent_tid, t.resumeblock, 0 FROM tasks t WHERE t.jid = p_jid AND t.tid = p_tid
                UNION ALL
                SELECT t.tid, t.parent_tid, t.resumeblock, up.depth + 1
                FROM up JOIN tasks t ON t.jid = p_jid AND t.tid = up.parent_tid
                WHERE NOT up.resumeblock
            )
            SELECT tid FROM up WHERE resumeblock ORDER BY depth LIMIT 1);
END $$;

-- The -resumeblock task p_root finished a pass: when tasks of its block only reached a
-- checkpoint in it, the next pass starts.  Those tasks are resumed (%r 1; under -resumepin on
-- the blade of their last run) and every task depending on them up to the root is reset, as
-- tq resume does (tractor_tasks_retry_v1); the loop count (%R) of the block's reset tasks goes
-- up by one.  Returns whether a pass started.
CREATE OR REPLACE FUNCTION tractor_next_pass(p_jid bigint, p_root integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    r tasks%ROWTYPE;
    v_tids integer[];
    v_reset integer[];
BEGIN
    SELECT * INTO r FROM tasks WHERE jid = p_jid AND tid = p_root;
    SELECT array_agg(t.tid ORDER BY t.tid) INTO v_tids FROM tasks t
    WHERE t.jid = p_jid AND t.tid BETWEEN r.tid AND coalesce(r.lasttid, r.tid) AND t.checkpointed AND t.attached;
    IF v_tids IS NULL THEN
        RETURN false;
    END IF;
    UPDATE tasks SET checkpointed = false WHERE jid = p_jid AND tid = ANY(v_tids);
    SELECT array_agg(x.tid) INTO v_reset
    FROM tractor_tasks_retry_v1(array_fill(p_jid, ARRAY[cardinality(v_tids)]), v_tids, true) AS x;
    UPDATE tasks SET resumecount = resumecount + 1
    WHERE jid = p_jid AND tid = ANY(v_reset) AND tid BETWEEN r.tid AND coalesce(r.lasttid, r.tid);
    RETURN true;
END $$;

-- %q of a task's command: 1.0 when no task below it (its block's pass) only reached a
-- checkpoint, else the share of its subtasks (all levels) that finished for good.
CREATE OR REPLACE FUNCTION tractor_quality(p_jid bigint, p_tid integer) RETURNS real
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_last integer;
    n integer;
    ck integer;
BEGIN
    SELECT t.lasttid INTO v_last FROM tasks t WHERE t.jid = p_jid AND t.tid = p_tid;
    IF v_last IS NULL OR v_last <= p_tid THEN
        RETURN 1.0;  -- no subtasks (most tasks): asked at every claim, answered from the task's row
    END IF;
    SELECT count(*), count(*) FILTER (WHERE d.checkpointed) INTO n, ck
    FROM tasks d WHERE d.jid = p_jid AND d.tid > p_tid AND d.tid <= v_last AND d.attached;
    RETURN CASE WHEN ck = 0 THEN 1.0 ELSE (n - ck)::real / n END;
END $$;

-- The current, unfinished invocation (p_jid, p_cid, p_iid), locked (FOR NO KEY UPDATE, as an
-- UPDATE of it would) until the transaction ends; a row of NULLs when it is not running.  It is
-- found by its key alone and checked after: in a statement that also says `current AND
-- stoptime IS NULL` the planner may read the partial index of running invocations
-- (invocations_blade_idx) from end to end instead of the key, and it does when the statistics
-- were taken while nothing ran (a quiet night, a long history): every report then read every
-- running invocation, about 1 ms each with 4,000 running.  plpgsql, so that no caller's
-- condition is ever folded into the statement.  (enable_seqscan off: see tractor_claim_v3.)
CREATE OR REPLACE FUNCTION tractor_running_invocation(p_jid bigint, p_cid integer, p_iid integer)
RETURNS invocations
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    inv invocations%ROWTYPE;
BEGIN
    SELECT * INTO inv FROM invocations WHERE jid = p_jid AND cid = p_cid AND iid = p_iid FOR NO KEY UPDATE;
    IF FOUND AND inv.current AND inv.stoptime IS NULL THEN
        RETURN inv;
    END IF;
    RETURN NULL;
END $$;

-- tractor_finish_v1 and tractor_finish_checkpoint_v1 (p_checkpoint: the blade found the
-- -resumewhile testcheckpoint true).  A checkpoint (that, or an exit code -resumewhile
-- {exitcode N} names) inside a -resumeblock is done for this pass: the task is marked
-- checkpointed and goes on as if the command had succeeded; when the block's root then
-- finishes, tractor_next_pass starts the next pass.  A checkpoint outside any block runs the
-- command again at once (its own loop), on the same blade under -resumepin.
-- p_pid: the command's process id when the blade sends it with this report (the cycle of a
-- command that ended before its pid went), recorded with the end in one write (NULL: none).
CREATE OR REPLACE FUNCTION tractor_finish(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid, p_rcode integer,
                                          p_elapsedreal double precision, p_elapsedapp double precision,
                                          p_elapsedsys double precision, p_checkpoint boolean, p_pid integer)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    inv invocations%ROWTYPE;
    cmd commands%ROWTYPE;
    nxt integer;
    released integer[];
    n_ready integer := 0;  -- what tractor_release made of the released tasks
    n_done integer := 0;
    t_parent integer;  -- the finished task's parent_tid and lasttid
    t_last integer;
    job_serial boolean;
    outcome text;
    v_checkpoint boolean := p_checkpoint;
    in_block boolean := false;
    root integer;
    running boolean := false;  -- the job's counters say it runs on: no end, no postscripts yet
BEGIN
    -- the job before the invocation, as operations on the job take them (blades.sql: lock order)
    SELECT serialsubtasks INTO job_serial FROM jobs WHERE jid = p_jid FOR NO KEY UPDATE;
    inv := tractor_running_invocation(p_jid, p_cid, p_iid);
    IF inv.jid IS NULL OR inv.bladeid IS DISTINCT FROM p_blade THEN
        -- a lapsed run (its lease ran out while the blade could not report) still counts when
        -- nobody has taken its command since
        IF NOT tractor_unrequeue(p_jid, p_cid, p_iid, p_blade) THEN
            RETURN 'stale';
        END IF;
    END IF;
    UPDATE invocations SET stoptime = now(), rcode = p_rcode, leasetime = NULL,
                           elapsedreal = p_elapsedreal, elapsedapp = p_elapsedapp, elapsedsys = p_elapsedsys,
                           pid = coalesce(pid, p_pid)
    WHERE jid = p_jid AND cid = p_cid AND iid = p_iid
    RETURNING * INTO inv;
    PERFORM tractor_slots_change(p_blade, -inv.numslots);
    IF p_rcode = 0 AND NOT v_checkpoint THEN
        -- the common end, done: the command written and read in one statement
        UPDATE commands SET state = 'done', statetime = now() WHERE jid = p_jid AND cid = p_cid
        RETURNING * INTO cmd;
    ELSE
        SELECT * INTO cmd FROM commands WHERE jid = p_jid AND cid = p_cid FOR UPDATE;
        IF NOT v_checkpoint AND cardinality(cmd.resumewhile) > 1
           AND lower(cmd.resumewhile[1]) = 'exitcode' AND p_rcode::text = ANY(cmd.resumewhile[2:]) THEN
            v_checkpoint := true;
        END IF;
        IF v_checkpoint AND cmd.tid > 0 THEN
            in_block := tractor_resume_block(p_jid, cmd.tid) IS NOT NULL;
        END IF;
        IF in_block THEN
            UPDATE commands SET state = 'done', statetime = now() WHERE jid = p_jid AND cid = p_cid;
        END IF;
    END IF;

    IF p_rcode = 0 AND NOT v_checkpoint OR in_block THEN
        outcome := CASE WHEN in_block THEN 'checkpoint' ELSE 'done' END;
        IF in_block THEN
            UPDATE tasks SET checkpointed = true WHERE jid = p_jid AND tid = cmd.tid;
        END IF;
        IF cmd.tid = 0 THEN
            PERFORM tractor_job_check(p_jid);
            RETURN outcome;
        END IF;
        SELECT c.cid INTO nxt FROM commands c WHERE c.jid = p_jid AND c.cid = p_cid + 1 AND c.tid = cmd.tid;
        IF FOUND THEN
            UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL
            WHERE jid = p_jid AND tid = cmd.tid;
            PERFORM tractor_queue_command(p_jid, nxt);
            UPDATE jobs SET numactive = numactive - 1, numready = numready + 1 WHERE jid = p_jid
            RETURNING tractor_job_running(jobs) INTO running;
        ELSE
            UPDATE tasks SET state = 'done', statetime = now(), progress = 100, currcid = NULL
            WHERE jid = p_jid AND tid = cmd.tid
            RETURNING CASE WHEN resumeblock THEN tid END, parent_tid, lasttid INTO root, t_parent, t_last;
            IF root IS NOT NULL THEN
                -- a checkpoint-resume block's root ended a pass: another, or on as done
                UPDATE jobs SET numactive = numactive - 1, numdone = numdone + 1 WHERE jid = p_jid;
                IF tractor_next_pass(p_jid, root) THEN
                    RETURN 'pass';
                END IF;
                UPDATE jobs SET numactive = numactive + 1, numdone = numdone - 1 WHERE jid = p_jid;
            END IF;
            released := tractor_task_done_waiters(p_jid, cmd.tid, t_parent, t_last, job_serial);
            IF cardinality(released) > 0 THEN  -- (most tasks release nothing: no call)
                SELECT r.o_ready, r.o_done INTO n_ready, n_done FROM tractor_release(p_jid, released) AS r;
            END IF;
            UPDATE jobs SET numactive = numactive - 1, numdone = numdone + 1 + n_done,
                            numready = numready + n_ready,
                            numblocked = numblocked - n_ready - n_done
            WHERE jid = p_jid
            RETURNING tractor_job_running(jobs) INTO running;
        END IF;
    ELSIF v_checkpoint THEN
        -- a checkpoint outside any -resumeblock (or of a job-level command): the
        -- command runs again as the next pass (%R + 1), on the same blade under -resumepin
        UPDATE commands SET state = 'ready' WHERE jid = p_jid AND cid = p_cid;
        outcome := 'resume';
        IF cmd.tid > 0 THEN
            UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL,
                             resumecount = resumecount + 1
            WHERE jid = p_jid AND tid = cmd.tid;
            UPDATE jobs SET numactive = numactive - 1, numready = numready + 1 WHERE jid = p_jid;
        END IF;
        PERFORM tractor_queue_command(p_jid, p_cid);
        RETURN outcome;
    ELSIF p_rcode NOT IN (-2, -9, -15)
          AND ((p_rcode = ANY(cmd.retryrcodes)
                AND cmd.autoretries < tractor_param_int('CmdRetryrcRetryAttempts', 1))
               OR cmd.autoretries < tractor_param_int('CmdAutoRetryAttempts', 0)) THEN
        UPDATE commands SET autoretries = autoretries + 1 WHERE jid = p_jid AND cid = p_cid;
        PERFORM tractor_queue_command(p_jid, p_cid);
        outcome := 'retry';
        IF cmd.tid > 0 THEN
            UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL,
                             retrycount = retrycount + 1
            WHERE jid = p_jid AND tid = cmd.tid;
            UPDATE jobs SET numactive = numactive - 1, numready = numready + 1 WHERE jid = p_jid;
        END IF;
        RETURN outcome;
    ELSE
        UPDATE commands SET state = 'error', statetime = now() WHERE jid = p_jid AND cid = p_cid;
        outcome := 'error';
        IF cmd.tid = 0 THEN
            PERFORM tractor_job_check(p_jid);
            RETURN outcome;
        END IF;
        UPDATE tasks SET state = 'error', statetime = now(), currcid = NULL WHERE jid = p_jid AND tid = cmd.tid;
        UPDATE jobs SET numactive = numactive - 1, numerror = numerror + 1 WHERE jid = p_jid
        RETURNING tractor_job_running(jobs) INTO running;
    END IF;
    IF NOT running THEN
        PERFORM tractor_job_check(p_jid);
    END IF;
    RETURN outcome;
END $$;

-- Step 1 of a graft (see the top).  Fenced like tractor_finish_v1: only the
-- current, unfinished invocation of this blade; it and the job row are
-- locked until the transaction ends, so the numbering cannot race another
-- graft of the same job.  No row: stale, or a job-level command (tid 0),
-- which has no task to graft under.
CREATE OR REPLACE FUNCTION tractor_expand_begin_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid)
RETURNS TABLE (tid integer, serialsubtasks boolean, nextposition integer, maxtid integer, maxcid integer,
               service text, avoid text[], envkey text[], tags text[], minslots integer, maxslots integer,
               tierpri integer, priority double precision, spoolhost text, graftime timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    inv invocations%ROWTYPE;
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    inv := tractor_running_invocation(p_jid, p_cid, p_iid);
    IF inv.jid IS NULL OR inv.bladeid IS DISTINCT FROM p_blade OR inv.tid = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT t.tid, t.serialsubtasks,
           -- one place left free after the existing subtasks (attached or detached): the
           -- first new one has no previous sibling to wait for in any -serialsubtasks
           -- arithmetic (position - 1); the ones it had are done, or detached
           coalesce((SELECT max(k.position) + 2 FROM tasks k WHERE k.jid = p_jid AND k.parent_tid = t.tid), 0),
           j.maxtid, j.maxcid, j.service, j.avoid, j.envkey, j.tags, j.minslots, j.maxslots,
           j.tierpri, j.priority, j.spoolhost, now()
    FROM jobs j JOIN tasks t ON t.jid = j.jid AND t.tid = inv.tid
    WHERE j.jid = p_jid
    FOR UPDATE OF j;
END $$;

-- Detach tasks (callers pass whole subtrees): their running commands are
-- stopped (the blades kill them at the next heartbeat), their ready rows
-- go, an unfinished state becomes 'blocked', and they are no longer
-- attached: not counted (the caller counts the job again), never
-- dispatched, kept for the record (tq explain says "detached").  Returns
-- how many were detached.
CREATE OR REPLACE FUNCTION tractor_expand_detach(p_jid bigint, p_tids integer[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    inv invocations%ROWTYPE;
    cids integer[];
    n integer;
BEGIN
    SELECT coalesce(array_agg(c.cid), ARRAY[]::integer[]) INTO cids FROM commands c
    WHERE c.jid = p_jid AND c.tid = ANY(p_tids);
    FOR inv IN UPDATE invocations SET current = false, stoptime = now(), leasetime = NULL
               WHERE jid = p_jid AND cid = ANY(cids) AND current AND stoptime IS NULL
               RETURNING * LOOP
        PERFORM tractor_slots_change(inv.bladeid, -inv.numslots);
    END LOOP;
    UPDATE invocations SET current = false WHERE jid = p_jid AND cid = ANY(cids) AND current;
    DELETE FROM ready WHERE jid = p_jid AND cid = ANY(cids);
    UPDATE commands SET state = 'blocked', statetime = now()
    WHERE jid = p_jid AND cid = ANY(cids) AND state IN ('ready', 'active');
    UPDATE tasks SET attached = false, statetime = now(), currcid = NULL,
                     state = CASE WHEN state IN ('ready', 'active') THEN 'blocked' ELSE state END
    WHERE jid = p_jid AND tid = ANY(p_tids) AND attached;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Step 3 of a graft, and the finish of an expand command that exited 0:
-- as tractor_finish_v1, and
-- * what the same command grafted before (its task ran it again) is
--   detached, with everything below it;
-- * the tasks p_first..p_last (just written by the client, numbered after
--   the job's maxtid; NULL: the command printed none) are grafted under
--   the command's task: marked, counted into the job, and the task waits
--   for them.
-- Returns 'expanded' when the task now waits for its new subtasks;
-- otherwise what tractor_finish_v1 returns ('done' when the grafted tasks
-- were all done at once, having no commands; 'stale' for a report that is
-- fenced out, which must not come with tasks: that is an error, and the
-- caller's transaction rolls back).
CREATE OR REPLACE FUNCTION tractor_finish_v2(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid, p_rcode integer,
                                  p_elapsedreal double precision, p_elapsedapp double precision,
                                  p_elapsedsys double precision, p_first integer, p_last integer) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    inv invocations%ROWTYPE;
    x integer;
    grafting boolean := p_first IS NOT NULL AND p_last IS NOT NULL AND p_last >= p_first;
    old integer[];
    detached integer := 0;
    n_new integer;
    n_blocked integer;
    n_ready integer;
    n_done integer;
    new_maxcid integer;
    new_svcids integer[];
    waiting integer;
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    inv := tractor_running_invocation(p_jid, p_cid, p_iid);
    IF inv.jid IS NULL OR inv.bladeid IS DISTINCT FROM p_blade OR p_rcode <> 0 OR inv.tid = 0 THEN
        IF grafting THEN  -- tractor_expand_begin_v1 checked and locked this in the same transaction
            RAISE EXCEPTION 'tractor_finish_v2: tasks %..% of job % cannot be grafted by command % (stale '
                            'report, failed command or job-level command)', p_first, p_last, p_jid, p_cid
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN tractor_finish_v1(p_jid, p_cid, p_iid, p_blade, p_rcode, p_elapsedreal, p_elapsedapp, p_elapsedsys);
    END IF;
    x := inv.tid;
    PERFORM 1 FROM jobs WHERE jid = p_jid FOR UPDATE;

    -- the tasks this command grafted before, and everything below them
    WITH RECURSIVE o(tid) AS (
        SELECT t.tid FROM tasks t
        WHERE t.jid = p_jid AND t.parent_tid = x AND t.expandcid = p_cid AND t.attached
        UNION
        SELECT k.tid FROM o JOIN tasks k ON k.jid = p_jid AND k.parent_tid = o.tid AND k.attached
    )
    SELECT array_agg(o.tid) INTO old FROM o;
    IF old IS NOT NULL THEN
        detached := tractor_expand_detach(p_jid, old);
    END IF;

    IF grafting THEN
        UPDATE tasks SET expandedby = x, expandcid = p_cid
        WHERE jid = p_jid AND tid BETWEEN p_first AND p_last AND expandedby IS NULL;
        SELECT count(*), count(*) FILTER (WHERE state = 'blocked'), count(*) FILTER (WHERE state = 'ready'),
               count(*) FILTER (WHERE state = 'done')
        INTO n_new, n_blocked, n_ready, n_done
        FROM tasks WHERE jid = p_jid AND tid BETWEEN p_first AND p_last;
        SELECT max(c.cid), coalesce(array_agg(DISTINCT c.svcid) FILTER (WHERE c.svcid IS NOT NULL),
                                    ARRAY[]::integer[])
        INTO new_maxcid, new_svcids
        FROM commands c WHERE c.jid = p_jid AND c.tid BETWEEN p_first AND p_last;
        UPDATE jobs SET numtasks = numtasks + n_new, numblocked = numblocked + n_blocked,
                        numready = numready + n_ready, numdone = numdone + n_done,
                        maxtid = greatest(maxtid, p_last), maxcid = greatest(maxcid, coalesce(new_maxcid, 0)),
                        svcids = ARRAY(SELECT DISTINCT s FROM unnest(svcids || new_svcids) s ORDER BY s)
        WHERE jid = p_jid;
        IF n_ready > 0 THEN
            PERFORM pg_notify('tractor_ready', p_jid::text);
        END IF;
    END IF;
    IF detached > 0 THEN  -- rare: count the job again
        UPDATE jobs SET numtasks = (SELECT count(*) FROM tasks WHERE jid = p_jid AND attached) WHERE jid = p_jid;
        PERFORM tractor_recount(p_jid);
    END IF;

    SELECT count(*) INTO waiting FROM tasks
    WHERE grafting AND jid = p_jid AND parent_tid = x AND tid BETWEEN p_first AND p_last AND state <> 'done';
    IF waiting = 0 THEN
        -- nothing to wait for (no tasks, or none with commands): go on as usual
        RETURN tractor_finish_v1(p_jid, p_cid, p_iid, p_blade, p_rcode, p_elapsedreal, p_elapsedapp, p_elapsedsys);
    END IF;
    -- the command is done; its task waits for its new subtasks (then runs the rest of its commands)
    UPDATE invocations SET stoptime = now(), rcode = p_rcode, leasetime = NULL,
                           elapsedreal = p_elapsedreal, elapsedapp = p_elapsedapp, elapsedsys = p_elapsedsys
    WHERE jid = p_jid AND cid = p_cid AND iid = p_iid;
    PERFORM tractor_slots_change(p_blade, -inv.numslots);
    UPDATE commands SET state = 'done', statetime = now() WHERE jid = p_jid AND cid = p_cid;
    UPDATE tasks SET state = 'blocked', statetime = now(), currcid = NULL, pending = waiting
    WHERE jid = p_jid AND tid = x;
    UPDATE jobs SET numactive = numactive - 1, numblocked = numblocked + 1 WHERE jid = p_jid;
    RETURN 'expanded';
END $$;

-- Why an expand command's output was not grafted, as a note on its task
-- (the invocation must be this blade's).
CREATE OR REPLACE FUNCTION tractor_expand_note_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid,
                                                  p_text text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF session_user <> current_user THEN
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    INSERT INTO notes (notetype, noteuser, notetext, itemtype, itemid)
    SELECT 'comment', 'tractor-blade', p_text, 'task', ARRAY[i.jid::text, i.tid::text]
    FROM invocations i
    WHERE i.jid = p_jid AND i.cid = p_cid AND i.iid = p_iid AND i.bladeid IS NOT DISTINCT FROM p_blade;
END $$;

-- Step 2 of a graft by a blade login, which may write no table: the rows
-- it staged (pg_temp.spool_tasks, spool_task_edges, spool_commands, built by
-- db/expand.py as for the site's role) move into the job.  Checked first:
-- the invocation is current and this blade's (tractor_expand_begin_v1 has
-- locked it and the job), every row is this job's, the tids and cids are
-- new ones above the job's maxtid and maxcid, the new top-level tasks hang
-- under the expanding task, states are initial ones.  The ready queue is
-- made here from the job's row.  tractor_finish_v2 then counts them in.
CREATE OR REPLACE FUNCTION tractor_graft_staged_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    inv invocations%ROWTYPE;
    j jobs%ROWTYPE;
BEGIN
    IF session_user <> current_user THEN
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    inv := tractor_running_invocation(p_jid, p_cid, p_iid);
    IF inv.jid IS NULL OR inv.bladeid IS DISTINCT FROM p_blade OR inv.tid = 0 THEN
        RAISE EXCEPTION 'no running expand command %/% (invocation %) of this blade', p_jid, p_cid, p_iid
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO j FROM jobs WHERE jid = p_jid;
    IF EXISTS (SELECT 1 FROM pg_temp.spool_tasks t
               WHERE t.jid <> p_jid OR t.tid <= j.maxtid
                  OR (t.parent_tid <> inv.tid AND t.parent_tid <= j.maxtid)
                  OR t.state NOT IN ('blocked', 'ready', 'done'))
       OR EXISTS (SELECT 1 FROM pg_temp.spool_task_edges e
                  WHERE e.jid <> p_jid OR e.parent_tid <= j.maxtid OR e.child_tid <= j.maxtid)
       OR EXISTS (SELECT 1 FROM pg_temp.spool_commands c
                  WHERE c.jid <> p_jid OR c.cid <= j.maxcid OR c.tid <= j.maxtid
                     OR c.state NOT IN ('blocked', 'ready')
                     OR NOT EXISTS (SELECT 1 FROM pg_temp.spool_tasks t WHERE t.tid = c.tid))
       OR EXISTS (SELECT 1 FROM pg_temp.spool_commands c
                  WHERE c.svcid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM service_exprs s WHERE s.svcid = c.svcid))
       OR NOT tractor_staged_values_ok()
    THEN
        RAISE EXCEPTION 'the staged graft is not one of job % under task %', p_jid, inv.tid
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO tasks (jid, tid, title, id, service, minslots, maxslots, serialsubtasks, resumeblock,
                       state, readytime, preview, chaser, metadata, parent_tid, position, pending, lasttid)
    SELECT t.jid, t.tid, t.title, t.id, t.service, t.minslots, t.maxslots, t.serialsubtasks, t.resumeblock,
           t.state, t.readytime, t.preview, t.chaser, t.metadata, t.parent_tid, t.position, t.pending, t.lasttid
    FROM pg_temp.spool_tasks t;
    INSERT INTO task_edges (jid, parent_tid, child_tid, kind)
    SELECT e.jid, e.parent_tid, e.child_tid, e.kind FROM pg_temp.spool_task_edges e;
    INSERT INTO commands (jid, cid, tid, position, argv, local, expand, runtype, msg, service, svcid,
                          tags, id, refersto, minslots, maxslots, samehost, envkey, retryrcodes,
                          metadata, metrics, resumewhile, resumepin, minrunsecs, maxrunsecs, state)
    SELECT c.jid, c.cid, c.tid, c.position, c.argv, c.local, c.expand, c.runtype, c.msg, c.service, c.svcid,
           c.tags, c.id, c.refersto, c.minslots, c.maxslots, c.samehost, c.envkey, c.retryrcodes,
           c.metadata, c.metrics, c.resumewhile, c.resumepin, c.minrunsecs, c.maxrunsecs, c.state
    FROM pg_temp.spool_commands c;
    INSERT INTO ready (jid, cid, tid, svcid, tierpri, priority, local, spoolhost)
    SELECT c.jid, c.cid, c.tid, c.svcid, j.tierpri, j.priority, c.local, j.spoolhost
    FROM pg_temp.spool_commands c WHERE c.state = 'ready';
    DELETE FROM pg_temp.spool_tasks;
    DELETE FROM pg_temp.spool_task_edges;
    DELETE FROM pg_temp.spool_commands;
END $$;
