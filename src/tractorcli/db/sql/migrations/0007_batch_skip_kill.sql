-- tq skip and tq kill over many jobs in one call, as 0005 does for retry:
-- (jid, tid) pairs of any jobs, one statement per step, jobs locked in jid
-- order, counters by difference.  The per-job _v1 functions of 0004 stay
-- for older clients.

-- The running commands of the given tasks stop: their invocations are no
-- longer current (the blade's next heartbeat kills the process groups) and
-- their slots are free.
CREATE FUNCTION tractor_tasks_stop(p_jids bigint[], p_tids integer[]) RETURNS void
LANGUAGE plpgsql
-- driven by the pairs through the indexes (see tractor_tasks_retry_v1)
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
AS $$
BEGIN
    UPDATE blades b SET slotsinuse = greatest(b.slotsinuse - x.n, 0)
    FROM (SELECT i.bladeid, sum(i.numslots) AS n
          FROM unnest(p_jids, p_tids) AS r(jid, tid)
          JOIN commands c ON c.jid = r.jid AND c.tid = r.tid
          JOIN invocations i ON i.jid = c.jid AND i.cid = c.cid AND i.current AND i.stoptime IS NULL
          GROUP BY i.bladeid) x
    WHERE b.bladeid = x.bladeid;
    UPDATE invocations i SET current = false, stoptime = now(), leasetime = NULL
    FROM unnest(p_jids, p_tids) AS r(jid, tid), commands c
    WHERE c.jid = r.jid AND c.tid = r.tid AND i.jid = c.jid AND i.cid = c.cid AND i.current AND i.stoptime IS NULL;
END $$;

-- After an operation on their tasks: a job that had ended (stalled on
-- errors) and has work again lives again, as tractor_recount has it; then
-- each may end or run its postscripts (tractor_job_check).
CREATE FUNCTION tractor_jobs_settle(p_jids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    j bigint;
BEGIN
    UPDATE jobs jb SET phase = 'live', stoptime = NULL
    WHERE jb.jid = ANY(p_jids) AND jb.phase <> 'live' AND jb.numdone < jb.numtasks;
    FOR j IN SELECT DISTINCT x FROM unnest(p_jids) AS x ORDER BY x LOOP
        PERFORM tractor_job_check(j);
    END LOOP;
END $$;

-- tq skip: the tasks count as done without running (a running one is
-- stopped: its invocation is no longer current, its process group killed
-- at the blade's next heartbeat, its slots free), so what waits for them
-- goes on.  Instead of 0004's job-wide reschedule, each skipped task is
-- finished the way a finishing task is (tractor_task_finished: its parent,
-- its Instance referrers and its serial successors wait for one task less)
-- and what that frees is released.  Returns the (jid, tid) pairs skipped.
CREATE FUNCTION tractor_tasks_skip_v1(p_jids bigint[], p_tids integer[])
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

-- tq kill: the running command of each active task is stopped and the task
-- left in error (its dependents do not go on).  A job left with nothing to
-- run moves on to its error postscripts (tractor_job_check).  Returns the
-- (jid, tid) pairs that were active.
CREATE FUNCTION tractor_tasks_kill_v1(p_jids bigint[], p_tids integer[])
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
