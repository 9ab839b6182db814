-- Expand: tasks grafted into a running job by `-expand` commands, and the
-- job restart that detaches them (reference sections 4.4, 4.7, 6.3, 6.4).
--
-- The blade parses an expand command's output (stdout or its -expand file,
-- then the TR_EXPAND_CHUNK files it announced, all read by the time the
-- command exits) and, when the command exited 0, grafts the tasks in ONE
-- transaction with the command's finish (db/expand.py):
--
--   1. tractor_expand_begin_v1 fences the report (the invocation is current,
--      unfinished and this blade's; its row is locked) and locks the job
--      row; it returns what numbering and the spool rules need.  No row:
--      the report is stale and nothing is grafted (the finish then says
--      'stale').
--   2. the client writes the new tasks, edges, commands and ready rows the
--      way tractor-spool writes a job (db/spool.py: same initial states,
--      pending counts, service combination, tags, envkey, slots), numbered
--      after the job's maxtid and maxcid, the new top-level tasks children
--      of the expanding task, placed after its existing subtasks (with a
--      gap of one position: see tractor_expand_begin_v1);
--   3. tractor_finish_v2 detaches what the same command grafted before (if
--      it ran before), marks the new tasks (tasks.expandedby, expandcid),
--      counts them into the job, and finishes the command.
--
-- Semantics chosen where the reference is silent:
--
-- * The expanding task waits for its grafted subtasks: it goes back to
--   'blocked' with `pending` = its new subtasks not done, like a task whose
--   subtasks are not done yet.  Its serial next sibling and its parent go
--   on waiting for it.  When the subtasks are done, it is released as any
--   task is, and runs its first regular command that is not done: the ones
--   after the expand command (finished commands never run again), or, with
--   none left, it is done.  This is why tractor_release (a subtask
--   finished) and tractor_reschedule_v1 (tq skip, kill, restart) pick "the
--   first regular command not done" (tractor_first_cmd) instead of the
--   first regular command: a retried or restarted task has all its
--   commands reset to 'blocked', so for them it is the same thing.  (The
--   batch retry of 0005 can only release a task it resets, or one whose
--   subtasks are all done, which is never a task still waiting for grafted
--   subtasks.)
-- * The new tasks inherit the expanding task's -serialsubtasks: under a
--   serial task they run one after another in the order written.
-- * Instance references in expand output name tasks of the same output.
-- * An expand command that fails grafts nothing; so does one whose output
--   does not parse (the blade reports it as failed, code 21003, with the
--   file:line:col of the error in the log).
-- * tq restart (tractor_job_restart_v1) detaches every task made by an
--   expand command (attached = false: not counted, never dispatched, kept
--   for the record), then every attached task starts over, so the expand
--   commands run again and graft fresh tasks.
-- * An expand command that runs again for any other reason (its task was
--   retried, or reset because a subtask was) replaces what it grafted
--   before: when it succeeds, its earlier tasks and everything below them
--   are detached in the same transaction, so the job never holds two
--   copies of one expansion.
--
-- * Job-level expand commands (-cleanup, -postscript) have no task to graft
--   under: their output is ignored.
--
-- Tids and cids of one graft batch are contiguous and depth-first, like a
-- spooled job's, so `lasttid` ranges and "cid + 1 is the next command" hold
-- inside a batch.  They do not hold across batches: the tid range of a
-- spooled task's subtree does not include what was grafted below it later.
-- So when an operation closes a serial gate again over a task that is
-- waiting for grafted subtasks (a retry of its previous sibling), the
-- task itself waits again, but grafted subtasks already ready may still
-- run meanwhile.

-- What made a grafted task: the expanding task (tid) and its expand command
-- (cid); both NULL for spooled tasks.
ALTER TABLE tasks ADD COLUMN expandedby integer;
ALTER TABLE tasks ADD COLUMN expandcid integer;

-- The next command a task released from waiting runs: its first regular
-- command not done (see above).  NULL: none left.
CREATE FUNCTION tractor_first_cmd(p_jid bigint, p_tid integer) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT min(c.cid) FROM commands c
    WHERE c.jid = p_jid AND c.tid = p_tid AND c.runtype = 'regular' AND c.state <> 'done'
$$;

-- As in 0003, with the first command not done.
CREATE OR REPLACE FUNCTION tractor_release(p_jid bigint, p_tids integer[], OUT o_ready integer, OUT o_done integer)
LANGUAGE plpgsql AS $$
DECLARE
    queue integer[] := p_tids;
    t integer;
    first_cid integer;
    waiters integer[];
BEGIN
    o_ready := 0;
    o_done := 0;
    WHILE cardinality(queue) > 0 LOOP
        t := queue[1];
        queue := queue[2:];
        first_cid := tractor_first_cmd(p_jid, t);
        IF first_cid IS NOT NULL THEN
            UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL
            WHERE jid = p_jid AND tid = t;
            PERFORM tractor_queue_command(p_jid, first_cid);
            o_ready := o_ready + 1;
        ELSE
            UPDATE tasks SET state = 'done', statetime = now(), progress = 100 WHERE jid = p_jid AND tid = t;
            o_done := o_done + 1;
            waiters := tractor_task_finished(p_jid, t);
            queue := queue || waiters;
        END IF;
    END LOOP;
END $$;

-- As in 0004, with the first command not done.
CREATE OR REPLACE FUNCTION tractor_reschedule_v1(p_jid bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
    r record;
    first_cid integer;
BEGIN
    PERFORM 1 FROM jobs WHERE jid = p_jid FOR UPDATE;
    LOOP
        UPDATE tasks t SET pending = p.pending
        FROM tractor_pending_all(p_jid) p
        WHERE t.jid = p_jid AND t.tid = p.tid AND t.state IN ('blocked', 'ready') AND t.pending <> p.pending;
        -- ready tasks that wait again (a prerequisite was reset): blocked
        FOR r IN SELECT tid FROM tasks WHERE jid = p_jid AND state = 'ready' AND pending > 0 AND attached LOOP
            DELETE FROM ready WHERE jid = p_jid
                  AND cid IN (SELECT c.cid FROM commands c WHERE c.jid = p_jid AND c.tid = r.tid);
            UPDATE commands SET state = 'blocked', statetime = now()
            WHERE jid = p_jid AND tid = r.tid AND state = 'ready';
            UPDATE tasks SET state = 'blocked', statetime = now() WHERE jid = p_jid AND tid = r.tid;
        END LOOP;
        changed := 0;
        FOR r IN SELECT tid FROM tasks WHERE jid = p_jid AND state = 'blocked' AND pending = 0 AND attached
                 ORDER BY tid LOOP
            first_cid := tractor_first_cmd(p_jid, r.tid);
            IF first_cid IS NULL THEN
                UPDATE tasks SET state = 'done', statetime = now(), progress = 100 WHERE jid = p_jid AND tid = r.tid;
                changed := changed + 1;  -- done at once: others may now be free
            ELSE
                UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL
                WHERE jid = p_jid AND tid = r.tid;
                PERFORM tractor_queue_command(p_jid, first_cid);
            END IF;
        END LOOP;
        EXIT WHEN changed = 0;
    END LOOP;
    PERFORM tractor_recount(p_jid);
    RETURN (SELECT numready FROM jobs WHERE jid = p_jid);
END $$;

-- --- what blades call ---------------------------------------------------------------

-- Step 1 of a graft (see the top).  Fenced like tractor_finish_v1: only the
-- current, unfinished invocation of this blade; it and the job row are
-- locked until the transaction ends, so the numbering cannot race another
-- graft of the same job.  No row: stale, or a job-level command (tid 0),
-- which has no task to graft under.
CREATE FUNCTION tractor_expand_begin_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid)
RETURNS TABLE (tid integer, serialsubtasks boolean, nextposition integer, maxtid integer, maxcid integer,
               service text, avoid text[], envkey text[], tags text[], minslots integer, maxslots integer,
               tierpri integer, priority double precision, spoolhost text, graftime timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    inv invocations%ROWTYPE;
BEGIN
    SELECT * INTO inv FROM invocations i
    WHERE i.jid = p_jid AND i.cid = p_cid AND i.iid = p_iid AND i.current AND i.stoptime IS NULL
      AND i.bladeid IS NOT DISTINCT FROM p_blade
    FOR UPDATE;
    IF NOT FOUND OR inv.tid = 0 THEN
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
CREATE FUNCTION tractor_expand_detach(p_jid bigint, p_tids integer[]) RETURNS integer
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
        UPDATE blades SET slotsinuse = greatest(slotsinuse - inv.numslots, 0) WHERE bladeid = inv.bladeid;
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
CREATE FUNCTION tractor_finish_v2(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid, p_rcode integer,
                                  p_elapsedreal double precision, p_elapsedapp double precision,
                                  p_elapsedsys double precision, p_first integer, p_last integer) RETURNS text
LANGUAGE plpgsql AS $$
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
    SELECT * INTO inv FROM invocations i
    WHERE i.jid = p_jid AND i.cid = p_cid AND i.iid = p_iid AND i.current AND i.stoptime IS NULL
      AND i.bladeid IS NOT DISTINCT FROM p_blade
    FOR UPDATE;
    IF NOT FOUND OR p_rcode <> 0 OR inv.tid = 0 THEN
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
    UPDATE blades SET slotsinuse = greatest(slotsinuse - inv.numslots, 0) WHERE bladeid = p_blade;
    UPDATE commands SET state = 'done', statetime = now() WHERE jid = p_jid AND cid = p_cid;
    UPDATE tasks SET state = 'blocked', statetime = now(), currcid = NULL, pending = waiting
    WHERE jid = p_jid AND tid = x;
    UPDATE jobs SET numactive = numactive - 1, numblocked = numblocked + 1 WHERE jid = p_jid;
    RETURN 'expanded';
END $$;

-- --- what tq calls ----------------------------------------------------------------

-- tq restart: the whole job starts over, in one transaction.  Running
-- commands are stopped (their blades kill them at the next heartbeat) and
-- the tasks that ran them count a retry; every task made by an expand
-- command is detached (tractor_expand_detach); every attached task and
-- every command of the job is reset (all invocations stop being current),
-- the job is live again, and the tasks that wait for nothing are queued
-- (tractor_reschedule_v1, which also counts the job again).  Returns the
-- tids of the attached tasks.
CREATE FUNCTION tractor_job_restart_v1(p_jid bigint) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    inv invocations%ROWTYPE;
    grafted integer[];
    tids integer[];
BEGIN
    PERFORM 1 FROM jobs WHERE jid = p_jid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ARRAY[]::integer[];
    END IF;
    FOR inv IN UPDATE invocations SET current = false, stoptime = now(), leasetime = NULL
               WHERE jid = p_jid AND current AND stoptime IS NULL
               RETURNING * LOOP
        UPDATE blades SET slotsinuse = greatest(slotsinuse - inv.numslots, 0) WHERE bladeid = inv.bladeid;
        UPDATE tasks SET retrycount = retrycount + 1 WHERE jid = p_jid AND tid = inv.tid AND attached;
    END LOOP;
    UPDATE invocations SET current = false WHERE jid = p_jid AND current;
    DELETE FROM ready WHERE jid = p_jid;
    SELECT array_agg(tid) INTO grafted FROM tasks WHERE jid = p_jid AND expandedby IS NOT NULL AND attached;
    IF grafted IS NOT NULL THEN
        PERFORM tractor_expand_detach(p_jid, grafted);
    END IF;
    -- everything else starts over
    UPDATE commands c SET state = 'blocked', statetime = now(), autoretries = 0
    FROM tasks t
    WHERE c.jid = p_jid AND t.jid = p_jid AND t.tid = c.tid AND t.attached;
    UPDATE commands SET state = 'blocked', statetime = now(), autoretries = 0 WHERE jid = p_jid AND tid = 0;
    UPDATE tasks SET state = 'blocked', statetime = now(), currcid = NULL, progress = 0, resumecount = 0,
                     recover = false, readytime = NULL, activetime = NULL
    WHERE jid = p_jid AND attached;
    UPDATE jobs SET numtasks = (SELECT count(*) FROM tasks WHERE jid = p_jid AND attached),
                    phase = 'live', stoptime = NULL
    WHERE jid = p_jid;
    PERFORM tractor_reschedule_v1(p_jid);
    PERFORM tractor_job_check(p_jid);
    SELECT coalesce(array_agg(tid ORDER BY tid), ARRAY[]::integer[]) INTO tids FROM tasks
    WHERE jid = p_jid AND attached;
    RETURN tids;
END $$;
