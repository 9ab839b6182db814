-- Operations on tasks and jobs (tq retry, resume, skip, kill, restart; the Python API):
-- per job (_v1 of one job) and batched over many jobs (tractor_tasks_*).
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else; a signature blades call is never changed (add _v2 instead).

-- Stop a task's running command: its invocation is no longer current (the
-- blade's next heartbeat kills the process group) and its slots are free.
CREATE OR REPLACE FUNCTION tractor_task_stop(p_jid bigint, p_tid integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    inv invocations%ROWTYPE;
    stopped boolean := false;
BEGIN
    -- by the task's cids: invocations are keyed (jid, cid, iid)
    FOR inv IN UPDATE invocations SET current = false, stoptime = now(), leasetime = NULL
               WHERE jid = p_jid AND cid IN (SELECT c.cid FROM commands c WHERE c.jid = p_jid AND c.tid = p_tid)
                 AND current AND stoptime IS NULL
               RETURNING * LOOP
        PERFORM tractor_slots_change(inv.bladeid, -inv.numslots);
        stopped := true;
    END LOOP;
    RETURN stopped;
END $$;

-- The running commands of the given tasks stop: their invocations are no
-- longer current (the blade's next heartbeat kills the process groups) and
-- their slots are free.
CREATE OR REPLACE FUNCTION tractor_tasks_stop(p_jids bigint[], p_tids integer[]) RETURNS void
LANGUAGE plpgsql
-- driven by the pairs through the indexes (see tractor_tasks_retry_v1)
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
AS $$
BEGIN
    -- the invocations, then their blades' rows (blades.sql: lock order)
    WITH stopped AS (
        UPDATE invocations i SET current = false, stoptime = now(), leasetime = NULL
        FROM unnest(p_jids, p_tids) AS r(jid, tid), commands c
        WHERE c.jid = r.jid AND c.tid = r.tid AND i.jid = c.jid AND i.cid = c.cid AND i.current
          AND i.stoptime IS NULL
        RETURNING i.bladeid, i.numslots
    )
    UPDATE blades b SET slotsinuse = greatest(b.slotsinuse - x.n, 0)
    FROM (SELECT st.bladeid, sum(st.numslots) AS n FROM stopped st GROUP BY st.bladeid) x
    WHERE b.bladeid = x.bladeid;
END $$;

-- One job's tasks after an operation: pending counts recomputed, tasks free
-- to go released (first command not done), ready ones that wait again
-- blocked; returns the job's ready count.
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

-- The per-job retry (kept for clients that call it) does what the batch one
-- does: one call of tractor_tasks_retry_v1 for the job.
CREATE OR REPLACE FUNCTION tractor_task_retry_v1(p_jid bigint, p_tids integer[], p_recover boolean)
RETURNS integer[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(r.tid ORDER BY r.tid), ARRAY[]::integer[])
    FROM tractor_tasks_retry_v1(array_fill(p_jid, ARRAY[cardinality(p_tids)]), p_tids, p_recover) r
$$;

-- tq retry (p_recover false) and tq resume (true) of any tasks of any jobs:
-- what tractor_task_retry_v1 does for one job, for (p_jids[i], p_tids[i])
-- pairs.  The tasks and every task depending on them (ancestors and,
-- transitively, Instance referrers) are reset, and so are the running
-- tasks behind the serial gates they close (a serial successor runs only
-- after its predecessor is done); active ones are stopped (their process
-- groups are killed within a heartbeat) and their retrycount counts the
-- retry.  Then every task whose wait may have
-- changed (the reset ones, and the subtrees their serial gates close) is
-- rescheduled: its pending count; at zero ready with its first command
-- queued (or, without -cmds, done, releasing its waiters), above zero
-- blocked.  Each task and command row is written once or twice, in one
-- statement per step for all pairs.  Jobs are locked in jid order, so two
-- such calls cannot deadlock.  Returns the (jid, tid) pairs reset.
CREATE OR REPLACE FUNCTION tractor_tasks_retry_v1(p_jids bigint[], p_tids integer[], p_recover boolean)
RETURNS TABLE (jid bigint, tid integer)
LANGUAGE plpgsql
-- Every step is driven by the pairs, a few index lookups each: the
-- planner's estimates for task states are stale by then (the states
-- changed in this very transaction), and a wrong guess scans a million
-- tasks or JIT-compiles a plan, so it is told to use the indexes.
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    r record;
    waiters integer[];
    recount bigint[] := ARRAY[]::bigint[];
BEGIN
    PERFORM 1 FROM jobs jb WHERE jb.jid IN (SELECT DISTINCT x FROM unnest(p_jids) AS x) ORDER BY jb.jid FOR UPDATE;

    -- Every task whose state may change: the reset ones (the tasks asked
    -- for and what depends on them) and the subtrees their serial gates
    -- close; with the state each has now (for the job counters), whether
    -- it runs now, and its first command.  (Sets are combined by grouping,
    -- never by joining two of them: joins here are index lookups.)
    CREATE TEMP TABLE IF NOT EXISTS tractor_resched (
        jid bigint, tid integer, asked boolean, reset boolean, attached boolean, oldstate text, running boolean,
        first_cid integer, pending integer, newstate text,
        PRIMARY KEY (jid, tid)
    ) ON COMMIT DROP;
    TRUNCATE tractor_resched;
    WITH RECURSIVE dep(jid, tid, asked) AS (
        SELECT x.jid, x.tid, true FROM unnest(p_jids, p_tids) AS x(jid, tid)
        UNION
        -- (the parent looked up by the primary key; OFFSET 0 keeps the
        -- planner from pushing "parent_tid IS NOT NULL" down, where it
        -- would walk the job's entries in tasks_parent_idx instead)
        SELECT x.jid, x.up, false FROM dep JOIN LATERAL (
            (SELECT tk.jid, tk.parent_tid AS up FROM tasks tk
             WHERE tk.jid = dep.jid AND tk.tid = dep.tid OFFSET 0)
            UNION ALL
            SELECT e.jid, e.parent_tid FROM task_edges e
            WHERE e.jid = dep.jid AND e.child_tid = dep.tid AND e.parent_tid > 0
        ) x ON x.up IS NOT NULL
    ), resets AS (
        SELECT d.jid, d.tid, bool_or(d.asked) AS asked FROM dep d GROUP BY d.jid, d.tid
    ), gated AS (
        -- the next sibling is the first task after me's subtree, if it has me's parent; one of
        -- its subtree that runs is stopped and reset: it may run only after me is done again
        SELECT g.jid, g.tid, g.state = 'active' AS running
        FROM resets r
        JOIN tasks me ON me.jid = r.jid AND me.tid = r.tid
        JOIN tasks nxt ON nxt.jid = me.jid AND nxt.tid = coalesce(me.lasttid, me.tid) + 1
                      AND nxt.parent_tid IS NOT DISTINCT FROM me.parent_tid AND nxt.attached
        LEFT JOIN tasks par ON par.jid = me.jid AND par.tid = me.parent_tid
        JOIN tasks g ON g.jid = me.jid AND g.tid BETWEEN nxt.tid AND coalesce(nxt.lasttid, nxt.tid)
        WHERE coalesce(par.serialsubtasks, (SELECT j.serialsubtasks FROM jobs j WHERE j.jid = me.jid))
    ), touched AS (
        SELECT u.jid, u.tid, bool_or(u.asked) AS asked, bool_or(u.reset) AS reset FROM (
            SELECT r.jid, r.tid, r.asked, true AS reset FROM resets r
            UNION ALL
            SELECT g.jid, g.tid, false, g.running FROM gated g
        ) u GROUP BY u.jid, u.tid
    )
    INSERT INTO tractor_resched (jid, tid, asked, reset, attached, oldstate, running, first_cid)
    SELECT t.jid, t.tid, u.asked, u.reset, t.attached, t.state,
           t.state = 'active' AND EXISTS (
               SELECT 1 FROM commands c JOIN invocations i ON i.jid = c.jid AND i.cid = c.cid
               WHERE c.jid = t.jid AND c.tid = t.tid AND i.current AND i.stoptime IS NULL),
           -- (a reset task starts from its first command; another goes on
           -- with its first one not done, as after an expand)
           (SELECT min(c.cid) FROM commands c WHERE c.jid = t.jid AND c.tid = t.tid AND c.runtype = 'regular'
                                                AND (u.reset OR c.state <> 'done'))
    FROM touched u JOIN tasks t ON t.jid = u.jid AND t.tid = u.tid
    WHERE u.reset OR t.attached;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    -- The reset tasks' invocations are no longer current; running ones
    -- are stopped (the blade's next heartbeat kills the process group) and
    -- their slots freed.
    -- (the invocations, then their blades' rows: blades.sql, lock order)
    WITH stopped AS (
        UPDATE invocations i SET current = false, stoptime = now(), leasetime = NULL
        FROM tractor_resched s, commands c
        WHERE s.reset AND s.running AND c.jid = s.jid AND c.tid = s.tid AND i.jid = c.jid AND i.cid = c.cid
          AND i.current AND i.stoptime IS NULL
        RETURNING i.bladeid, i.numslots
    )
    UPDATE blades b SET slotsinuse = greatest(b.slotsinuse - x.n, 0)
    FROM (SELECT st.bladeid, sum(st.numslots) AS n FROM stopped st GROUP BY st.bladeid) x
    WHERE b.bladeid = x.bladeid;
    UPDATE invocations i SET current = false, stoptime = coalesce(i.stoptime, now()),
           leasetime = CASE WHEN i.stoptime IS NULL THEN NULL ELSE i.leasetime END
    FROM tractor_resched s, commands c
    WHERE s.reset AND c.jid = s.jid AND c.tid = s.tid AND i.jid = c.jid AND i.cid = c.cid AND i.current;
    -- Reset tasks that were done wait again: what waits on them counts
    -- them below.  (The others are not done already; every reset task
    -- gets its new state, once, further down.)
    UPDATE tasks tk SET state = 'blocked'
    FROM tractor_resched s
    WHERE s.reset AND s.oldstate = 'done' AND tk.jid = s.jid AND tk.tid = s.tid;

    -- what each waits for now, and so what it becomes: its subtasks and
    -- Instance targets not done, and serial gates (which only a task with
    -- a parent or in a -serialsubtasks job can have)
    UPDATE tractor_resched s SET (pending, newstate) = (
        SELECT x.n, CASE WHEN x.n > 0 THEN 'blocked' WHEN s.first_cid IS NULL THEN 'done' ELSE 'ready' END
        FROM (SELECT
            (SELECT count(*) FROM tasks c WHERE c.jid = s.jid AND c.parent_tid = s.tid AND c.attached
                                            AND c.state <> 'done')
          + (SELECT count(*) FROM task_edges e JOIN tasks x ON x.jid = e.jid AND x.tid = e.child_tid
             WHERE e.jid = s.jid AND e.parent_tid = s.tid AND x.state <> 'done')
          + CASE WHEN t.parent_tid IS NOT NULL OR (t.position > 0 AND j.serialsubtasks)
                 THEN tractor_serial_gates(s.jid, s.tid) ELSE 0 END AS n) x)
    FROM tasks t, jobs j
    WHERE s.attached AND t.jid = s.jid AND t.tid = s.tid AND (s.reset OR t.state IN ('blocked', 'ready'))
      AND j.jid = s.jid;

    -- ready rows of commands that are not ready any more
    DELETE FROM ready q USING tractor_resched s, commands c
    WHERE (s.reset OR (s.oldstate = 'ready' AND s.newstate = 'blocked'))
      AND c.jid = s.jid AND c.tid = s.tid AND q.jid = c.jid AND q.cid = c.cid;
    -- commands: the first one of a task going ready is ready, the others of
    -- a reset task (or of a ready task blocked again) blocked
    UPDATE commands c
    SET state = CASE WHEN s.newstate = 'ready' AND c.cid = s.first_cid THEN 'ready' ELSE 'blocked' END,
        statetime = now(), autoretries = CASE WHEN s.reset THEN 0 ELSE c.autoretries END
    FROM tractor_resched s
    WHERE c.jid = s.jid AND c.tid = s.tid
      AND ((s.reset AND (c.state <> 'blocked' OR (s.newstate = 'ready' AND c.cid = s.first_cid)))
           OR (NOT s.reset AND s.oldstate = 'ready' AND s.newstate = 'blocked' AND c.state = 'ready'));
    -- tasks: pending counts and new states (the done ones below); a reset
    -- one starts afresh: no progress, a retry of a running one counted,
    -- and the next launches of the tasks asked for are a resume (%r = 1)
    -- or a fresh start
    UPDATE tasks t SET
        pending = coalesce(s.pending, t.pending),
        state = CASE WHEN s.newstate IS NOT NULL AND s.newstate <> 'done' THEN s.newstate
                     WHEN s.reset THEN 'blocked' ELSE t.state END,
        statetime = CASE WHEN s.reset OR (s.newstate <> 'done' AND t.state <> s.newstate) THEN now()
                         ELSE t.statetime END,
        readytime = CASE WHEN s.newstate = 'ready' AND (s.reset OR t.state <> 'ready') THEN now()
                         ELSE t.readytime END,
        currcid = CASE WHEN s.reset OR (s.newstate = 'ready' AND t.state <> 'ready') THEN NULL ELSE t.currcid END,
        progress = CASE WHEN s.reset THEN 0 ELSE t.progress END,
        resumecount = CASE WHEN s.reset AND NOT p_recover THEN 0 ELSE t.resumecount END,
        retrycount = t.retrycount + CASE WHEN s.reset AND s.running AND NOT p_recover THEN 1 ELSE 0 END,
        recover = CASE WHEN s.asked THEN p_recover ELSE t.recover END
    FROM tractor_resched s
    WHERE t.jid = s.jid AND t.tid = s.tid
      AND (s.reset OR (s.newstate IS NOT NULL AND (t.pending IS DISTINCT FROM s.pending OR t.state <> s.newstate)));
    INSERT INTO ready (jid, cid, tid, svcid, tierpri, priority, local, spoolhost, pinblade)
    SELECT c.jid, c.cid, c.tid, c.svcid, j.tierpri, j.priority, c.local, j.spoolhost,
           CASE WHEN c.resumepin THEN (SELECT i.bladeid FROM invocations i
                                       WHERE i.jid = c.jid AND i.cid = c.cid ORDER BY i.iid DESC LIMIT 1) END
    FROM tractor_resched s
    JOIN commands c ON c.jid = s.jid AND c.cid = s.first_cid
    JOIN jobs j ON j.jid = s.jid
    WHERE s.newstate = 'ready' AND s.oldstate IS DISTINCT FROM 'ready' OR s.newstate = 'ready' AND s.reset
    ON CONFLICT (jid, cid) DO NOTHING;
    PERFORM pg_notify('tractor_ready', q.jid::text)
    FROM (SELECT DISTINCT s.jid FROM tractor_resched s WHERE s.newstate = 'ready') q;

    -- free to go without commands: done at once, which frees their waiters
    -- the way a finishing task does (rare: one at a time; such jobs are
    -- counted again, since the cascade reaches tasks outside the set)
    FOR r IN SELECT s.jid, s.tid FROM tractor_resched s WHERE s.newstate = 'done' ORDER BY s.jid, s.tid LOOP
        UPDATE tasks SET state = 'done', statetime = now(), progress = 100 WHERE jid = r.jid AND tid = r.tid;
        waiters := tractor_task_finished(r.jid, r.tid);
        IF cardinality(waiters) > 0 THEN
            PERFORM tractor_release(r.jid, waiters);
        END IF;
        IF NOT r.jid = ANY(recount) THEN
            recount := recount || r.jid;
        END IF;
    END LOOP;

    -- job counters: by difference over the touched tasks (a task keeps its
    -- state unless it got a new one), or counted again
    UPDATE jobs jb SET
        numblocked = jb.numblocked + d.blocked, numready = jb.numready + d.ready,
        numactive = jb.numactive + d.active, numerror = jb.numerror + d.error, numdone = jb.numdone + d.done
    FROM (
        SELECT s.jid,
               count(*) FILTER (WHERE s.newstate = 'blocked') - count(*) FILTER (WHERE s.oldstate = 'blocked') AS blocked,
               count(*) FILTER (WHERE s.newstate = 'ready') - count(*) FILTER (WHERE s.oldstate = 'ready') AS ready,
               - count(*) FILTER (WHERE s.oldstate = 'active') AS active,
               - count(*) FILTER (WHERE s.oldstate = 'error') AS error,
               - count(*) FILTER (WHERE s.oldstate = 'done') AS done
        FROM tractor_resched s
        WHERE s.attached AND s.newstate IS NOT NULL AND NOT s.jid = ANY(recount)
        GROUP BY s.jid
    ) d
    WHERE jb.jid = d.jid;
    PERFORM tractor_recount(x) FROM unnest(recount) AS x;
    -- a finished job with tasks to run again lives again
    UPDATE jobs jb SET phase = 'live', stoptime = NULL
    WHERE jb.jid IN (SELECT DISTINCT s.jid FROM tractor_resched s) AND jb.phase <> 'live' AND jb.numdone < jb.numtasks;
    RETURN QUERY SELECT s.jid, s.tid FROM tractor_resched s WHERE s.reset ORDER BY s.jid, s.tid;
END $$;

-- tq skip: the tasks count as done without running (an active one is
-- stopped), so what waits for them goes on.  Returns the tids skipped.
CREATE OR REPLACE FUNCTION tractor_task_skip_v1(p_jid bigint, p_tids integer[]) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    skipped integer[];
    t integer;
BEGIN
    PERFORM 1 FROM jobs WHERE jid = p_jid FOR UPDATE;
    SELECT array_agg(tid ORDER BY tid) INTO skipped FROM tasks
    WHERE jid = p_jid AND tid = ANY(p_tids) AND state <> 'done';
    IF skipped IS NULL THEN
        RETURN '{}';
    END IF;
    FOREACH t IN ARRAY skipped LOOP
        PERFORM tractor_task_stop(p_jid, t);
    END LOOP;
    DELETE FROM ready WHERE jid = p_jid
      AND cid IN (SELECT c.cid FROM commands c WHERE c.jid = p_jid AND c.tid = ANY(skipped));
    UPDATE commands SET state = 'skipped', statetime = now()
    WHERE jid = p_jid AND tid = ANY(skipped) AND state IN ('blocked', 'ready', 'active', 'error');
    UPDATE tasks SET state = 'done', statetime = now(), currcid = NULL WHERE jid = p_jid AND tid = ANY(skipped);
    PERFORM tractor_reschedule_v1(p_jid);
    PERFORM tractor_job_check(p_jid);
    RETURN skipped;
END $$;

-- tq skip: the tasks count as done without running (a running one is
-- stopped: its invocation is no longer current, its process group killed
-- at the blade's next heartbeat, its slots free), so what waits for them
-- goes on.  Instead of a job-wide reschedule, each skipped task is
-- finished the way a finishing task is (tractor_task_finished: its parent,
-- its Instance referrers and its serial successors wait for one task less)
-- and what that frees is released.  Returns the (jid, tid) pairs skipped.
CREATE OR REPLACE FUNCTION tractor_tasks_skip_v1(p_jids bigint[], p_tids integer[])
RETURNS TABLE (jid bigint, tid integer)
LANGUAGE plpgsql
-- driven by the pairs through the indexes (see tractor_tasks_retry_v1)
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    r record;
    waiters integer[];
    freed record;
BEGIN
    PERFORM 1 FROM jobs jb WHERE jb.jid IN (SELECT DISTINCT x FROM unnest(p_jids) AS x) ORDER BY jb.jid FOR UPDATE;
    CREATE TEMP TABLE IF NOT EXISTS tractor_skipped (
        jid bigint, tid integer, oldstate text, attached boolean, released integer[],
        PRIMARY KEY (jid, tid)
    ) ON COMMIT DROP;
    TRUNCATE tractor_skipped;
    INSERT INTO tractor_skipped (jid, tid, oldstate, attached)
    SELECT t.jid, t.tid, t.state, t.attached
    FROM (SELECT DISTINCT x.jid, x.tid FROM unnest(p_jids, p_tids) AS x(jid, tid)) x
    JOIN tasks t ON t.jid = x.jid AND t.tid = x.tid
    WHERE t.state <> 'done';
    IF NOT FOUND THEN
        RETURN;
    END IF;

    PERFORM tractor_tasks_stop(array_agg(s.jid), array_agg(s.tid)) FROM tractor_skipped s WHERE s.oldstate = 'active';
    DELETE FROM ready q USING tractor_skipped s, commands c
    WHERE s.oldstate IN ('ready', 'active') AND c.jid = s.jid AND c.tid = s.tid
      AND q.jid = c.jid AND q.cid = c.cid;
    UPDATE commands c SET state = 'skipped', statetime = now()
    FROM tractor_skipped s
    WHERE c.jid = s.jid AND c.tid = s.tid AND c.state IN ('blocked', 'ready', 'active', 'error');
    UPDATE tasks t SET state = 'done', statetime = now(), currcid = NULL
    FROM tractor_skipped s WHERE t.jid = s.jid AND t.tid = s.tid;

    -- what waited for them: one task less each (all are done by now, so a
    -- skipped task that waited for another skipped one is not counted down)
    FOR r IN SELECT s.jid, s.tid FROM tractor_skipped s WHERE s.attached ORDER BY s.jid, s.tid LOOP
        waiters := tractor_task_finished(r.jid, r.tid);
        IF cardinality(waiters) > 0 THEN
            UPDATE tractor_skipped s SET released = waiters WHERE s.jid = r.jid AND s.tid = r.tid;
        END IF;
    END LOOP;

    -- job counters: the skipped tasks' states by difference; what the
    -- releases made ready or done (from blocked) as tractor_release counts it
    UPDATE jobs jb SET
        numblocked = jb.numblocked - d.blocked, numready = jb.numready - d.ready,
        numactive = jb.numactive - d.active, numerror = jb.numerror - d.error,
        numdone = jb.numdone + d.blocked + d.ready + d.active + d.error
    FROM (
        SELECT s.jid,
               count(*) FILTER (WHERE s.oldstate = 'blocked') AS blocked,
               count(*) FILTER (WHERE s.oldstate = 'ready') AS ready,
               count(*) FILTER (WHERE s.oldstate = 'active') AS active,
               count(*) FILTER (WHERE s.oldstate = 'error') AS error
        FROM tractor_skipped s WHERE s.attached GROUP BY s.jid
    ) d
    WHERE jb.jid = d.jid;
    FOR r IN SELECT s.jid, array_agg(w ORDER BY w) AS tids
             FROM tractor_skipped s, unnest(s.released) AS w
             WHERE s.released IS NOT NULL GROUP BY s.jid ORDER BY s.jid LOOP
        freed := tractor_release(r.jid, r.tids);
        UPDATE jobs jb SET numblocked = jb.numblocked - freed.o_ready - freed.o_done,
                           numready = jb.numready + freed.o_ready, numdone = jb.numdone + freed.o_done
        WHERE jb.jid = r.jid;
    END LOOP;
    PERFORM tractor_jobs_settle(array_agg(DISTINCT s.jid)) FROM tractor_skipped s;
    RETURN QUERY SELECT s.jid, s.tid FROM tractor_skipped s ORDER BY s.jid, s.tid;
END $$;

-- tq kill (jinterrupt with a tid): stop the running command; the task is
-- left in error.  Returns the tids that were active.
CREATE OR REPLACE FUNCTION tractor_task_kill_v1(p_jid bigint, p_tids integer[]) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    killed integer[] := '{}';
    t integer;
BEGIN
    PERFORM 1 FROM jobs WHERE jid = p_jid FOR UPDATE;
    FOR t IN SELECT tid FROM tasks WHERE jid = p_jid AND tid = ANY(p_tids) AND state = 'active' ORDER BY tid LOOP
        PERFORM tractor_task_stop(p_jid, t);
        UPDATE commands SET state = 'error', statetime = now() WHERE jid = p_jid AND tid = t AND state = 'active';
        UPDATE tasks SET state = 'error', statetime = now(), currcid = NULL WHERE jid = p_jid AND tid = t;
        killed := killed || t;
    END LOOP;
    IF cardinality(killed) > 0 THEN
        PERFORM tractor_reschedule_v1(p_jid);
        PERFORM tractor_job_check(p_jid);
    END IF;
    RETURN killed;
END $$;

-- tq kill: the running command of each active task is stopped and the task
-- left in error (its dependents do not go on).  A job left with nothing to
-- run moves on to its error postscripts (tractor_job_check).  Returns the
-- (jid, tid) pairs that were active.
CREATE OR REPLACE FUNCTION tractor_tasks_kill_v1(p_jids bigint[], p_tids integer[])
RETURNS TABLE (jid bigint, tid integer)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM jobs jb WHERE jb.jid IN (SELECT DISTINCT x FROM unnest(p_jids) AS x) ORDER BY jb.jid FOR UPDATE;
    CREATE TEMP TABLE IF NOT EXISTS tractor_killed (
        jid bigint, tid integer, attached boolean, PRIMARY KEY (jid, tid)
    ) ON COMMIT DROP;
    TRUNCATE tractor_killed;
    INSERT INTO tractor_killed (jid, tid, attached)
    SELECT t.jid, t.tid, t.attached
    FROM (SELECT DISTINCT x.jid, x.tid FROM unnest(p_jids, p_tids) AS x(jid, tid)) x
    JOIN tasks t ON t.jid = x.jid AND t.tid = x.tid
    WHERE t.state = 'active';
    IF NOT FOUND THEN
        RETURN;
    END IF;

    PERFORM tractor_tasks_stop(array_agg(k.jid), array_agg(k.tid)) FROM tractor_killed k;
    UPDATE commands c SET state = 'error', statetime = now()
    FROM tractor_killed k WHERE c.jid = k.jid AND c.tid = k.tid AND c.state = 'active';
    UPDATE tasks t SET state = 'error', statetime = now(), currcid = NULL
    FROM tractor_killed k WHERE t.jid = k.jid AND t.tid = k.tid;
    UPDATE jobs jb SET numactive = jb.numactive - d.n, numerror = jb.numerror + d.n
    FROM (SELECT k.jid, count(*) AS n FROM tractor_killed k WHERE k.attached GROUP BY k.jid) d
    WHERE jb.jid = d.jid;
    PERFORM tractor_jobs_settle(array_agg(DISTINCT k.jid)) FROM tractor_killed k;
    RETURN QUERY SELECT k.jid, k.tid FROM tractor_killed k ORDER BY k.jid, k.tid;
END $$;

-- tq restart: the whole job starts over, in one transaction.  Running
-- commands are stopped (their blades kill them at the next heartbeat) and
-- the tasks that ran them count a retry; every task made by an expand
-- command is detached (tractor_expand_detach); every attached task and
-- every command of the job is reset (all invocations stop being current),
-- the job is live again, and the tasks that wait for nothing are queued
-- (tractor_reschedule_v1, which also counts the job again).  Returns the
-- tids of the attached tasks.
CREATE OR REPLACE FUNCTION tractor_job_restart_v1(p_jid bigint) RETURNS integer[]
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
        PERFORM tractor_slots_change(inv.bladeid, -inv.numslots);
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
