-- Task operations (tq retry, resume, skip, kill): the state machine run
-- backwards.  An operation resets some tasks, then `tractor_reschedule_v1`
-- recomputes, for the whole job, what every task that is neither running
-- nor finished waits for, and so which are ready and which blocked.  That
-- is one pass over the job's tasks (a few seconds for a million), done once
-- per job per operation however many tasks it touched.

-- %r: whether a task's next launches resume it (tq resume) or start afresh.
ALTER TABLE tasks ADD COLUMN recover boolean NOT NULL DEFAULT false;

CREATE OR REPLACE VIEW tractor_launch_v1 AS
SELECT c.jid, c.cid, c.tid, c.argv, c.local, c.expand, c.msg, c.envkey AS cmd_envkey, c.minrunsecs,
       c.maxrunsecs, c.retryrcodes, c.resumewhile, c.resumepin, c.minslots, c.maxslots, c.runtype,
       j.owner, j.title AS jobtitle, j.projects, j.spoolcwd, j.spoolhost, j.dirmap, j.assignments,
       j.envkey AS job_envkey, j.priority,
       t.title AS tasktitle, coalesce(t.retrycount, 0) AS retrycount, coalesce(t.resumecount, 0) AS resumecount,
       coalesce(t.recover, false) AS recover
FROM commands c
JOIN jobs j ON j.jid = c.jid
LEFT JOIN tasks t ON t.jid = c.jid AND t.tid = c.tid;

-- What a task waits for, for every task of a job at once:
--   its attached subtasks that are not done,
--   its Instance targets that are not done,
--   and one for every serial gate over it: itself or an ancestor that has
--   a previous sibling (under a -serialsubtasks parent, or the job) not done.
-- A gate over the Task g covers g's subtree, the tid range g..g.lasttid: its
-- count at each task is a running sum of +1 at g and -1 after g.lasttid.
CREATE FUNCTION tractor_pending_all(p_jid bigint)
RETURNS TABLE (tid integer, pending integer)
LANGUAGE sql STABLE AS $$
    WITH t AS (
        SELECT t.tid, t.parent_tid, t.position, coalesce(t.lasttid, t.tid) AS lasttid, t.state
        FROM tasks t WHERE t.jid = p_jid AND t.attached
    ),
    kids AS (
        SELECT c.parent_tid AS tid, count(*) AS n FROM t c
        WHERE c.parent_tid IS NOT NULL AND c.state <> 'done' GROUP BY c.parent_tid
    ),
    refs AS (
        SELECT e.parent_tid AS tid, count(*) AS n FROM task_edges e JOIN t x ON x.tid = e.child_tid
        WHERE e.jid = p_jid AND e.parent_tid > 0 AND x.state <> 'done' GROUP BY e.parent_tid
    ),
    gated AS (
        SELECT g.tid, g.lasttid FROM t g
        JOIN t prev ON prev.parent_tid IS NOT DISTINCT FROM g.parent_tid AND prev.position = g.position - 1
        LEFT JOIN tasks p ON p.jid = p_jid AND p.tid = g.parent_tid
        WHERE g.position > 0 AND prev.state <> 'done'
          AND coalesce(p.serialsubtasks, (SELECT j.serialsubtasks FROM jobs j WHERE j.jid = p_jid))
    ),
    steps AS (
        SELECT g.tid AS at, 1 AS d FROM gated g
        UNION ALL
        SELECT g.lasttid + 1, -1 FROM gated g
    ),
    gates AS (
        SELECT t.tid, coalesce(sum(s.d) OVER (ORDER BY t.tid), 0) AS n
        FROM t LEFT JOIN (SELECT at, sum(d) AS d FROM steps GROUP BY at) s ON s.at = t.tid
    )
    SELECT t.tid, (coalesce(k.n, 0) + coalesce(r.n, 0) + g.n)::integer
    FROM t
    LEFT JOIN kids k ON k.tid = t.tid
    LEFT JOIN refs r ON r.tid = t.tid
    JOIN gates g ON g.tid = t.tid
$$;

-- Bring a job's waiting tasks in line with what they wait for: blocked and
-- ready tasks get their pending count; those at zero are ready (their first
-- command queued) or, without commands, done (which may free others: the
-- pass repeats until nothing changes); the others are blocked, their ready
-- rows gone.  Then the job's counters are counted again, and a finished job
-- whose tasks were reset lives again.  Returns the number of ready tasks.
CREATE FUNCTION tractor_reschedule_v1(p_jid bigint) RETURNS integer
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
            SELECT min(c.cid) INTO first_cid FROM commands c
            WHERE c.jid = p_jid AND c.tid = r.tid AND c.runtype = 'regular';
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

-- What one task waits for (the same count as tractor_pending_all, for one
-- task): its attached subtasks and Instance targets not done, and the
-- serial gates over it, walking up its ancestors.
CREATE FUNCTION tractor_pending_of(p_jid bigint, p_tid integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n integer;
    a record;
    serial boolean;
BEGIN
    SELECT count(*) INTO n FROM tasks c
    WHERE c.jid = p_jid AND c.parent_tid = p_tid AND c.attached AND c.state <> 'done';
    n := n + (SELECT count(*) FROM task_edges e JOIN tasks x ON x.jid = e.jid AND x.tid = e.child_tid
              WHERE e.jid = p_jid AND e.parent_tid = p_tid AND x.state <> 'done');
    SELECT tid, parent_tid, position INTO a FROM tasks WHERE jid = p_jid AND tid = p_tid;
    LOOP
        IF a.position > 0 THEN
            IF a.parent_tid IS NULL THEN
                SELECT j.serialsubtasks INTO serial FROM jobs j WHERE j.jid = p_jid;
            ELSE
                SELECT p.serialsubtasks INTO serial FROM tasks p WHERE p.jid = p_jid AND p.tid = a.parent_tid;
            END IF;
            IF serial THEN
                -- the previous sibling (two queries, so each can use tasks_parent_idx)
                IF a.parent_tid IS NULL THEN
                    PERFORM 1 FROM tasks prev WHERE prev.jid = p_jid AND prev.parent_tid IS NULL
                                                AND prev.position = a.position - 1 AND prev.state <> 'done';
                ELSE
                    PERFORM 1 FROM tasks prev WHERE prev.jid = p_jid AND prev.parent_tid = a.parent_tid
                                                AND prev.position = a.position - 1 AND prev.state <> 'done';
                END IF;
                IF FOUND THEN
                    n := n + 1;
                END IF;
            END IF;
        END IF;
        EXIT WHEN a.parent_tid IS NULL;
        SELECT tid, parent_tid, position INTO a FROM tasks WHERE jid = p_jid AND tid = a.parent_tid;
    END LOOP;
    RETURN n;
END $$;

-- Reschedule only the tasks an operation can have changed: p_tids (reset
-- tasks) and whatever a reset task gates under -serialsubtasks (the next
-- sibling's subtree).  Their pending counts are recomputed one by one;
-- those at zero become ready (or, without commands, done, which frees
-- their waiters the way a finishing task does), the others blocked.  The
-- job's counters are counted again.  Far cheaper than a job-wide pass when
-- a few tasks of a big job change (tq retry of error tasks).
CREATE FUNCTION tractor_reschedule_tasks(p_jid bigint, p_tids integer[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    affected integer[];
    r record;
    first_cid integer;
    released integer[] := '{}';
BEGIN
    SELECT array_agg(DISTINCT x ORDER BY x) INTO affected FROM (
        SELECT unnest(p_tids) AS x
        UNION ALL
        SELECT g.tid FROM tasks me
        -- the next sibling is the first task after me's subtree, if it has me's parent
        JOIN tasks nxt ON nxt.jid = me.jid AND nxt.tid = coalesce(me.lasttid, me.tid) + 1
                      AND nxt.parent_tid IS NOT DISTINCT FROM me.parent_tid AND nxt.attached
        LEFT JOIN tasks par ON par.jid = me.jid AND par.tid = me.parent_tid
        JOIN tasks g ON g.jid = me.jid AND g.tid BETWEEN nxt.tid AND coalesce(nxt.lasttid, nxt.tid)
        WHERE me.jid = p_jid AND me.tid = ANY(p_tids)
          AND coalesce(par.serialsubtasks, (SELECT j.serialsubtasks FROM jobs j WHERE j.jid = p_jid))
    ) s;
    FOR r IN SELECT t.tid, t.state, tractor_pending_of(p_jid, t.tid) AS pending FROM tasks t
             WHERE t.jid = p_jid AND t.tid = ANY(affected) AND t.state IN ('blocked', 'ready') AND t.attached
             ORDER BY t.tid LOOP
        UPDATE tasks SET pending = r.pending WHERE jid = p_jid AND tid = r.tid;
        IF r.pending > 0 THEN
            IF r.state = 'ready' THEN
                DELETE FROM ready WHERE jid = p_jid
                  AND cid IN (SELECT c.cid FROM commands c WHERE c.jid = p_jid AND c.tid = r.tid);
                UPDATE commands SET state = 'blocked', statetime = now()
                WHERE jid = p_jid AND tid = r.tid AND state = 'ready';
                UPDATE tasks SET state = 'blocked', statetime = now() WHERE jid = p_jid AND tid = r.tid;
            END IF;
        ELSIF r.state = 'blocked' THEN
            SELECT min(c.cid) INTO first_cid FROM commands c
            WHERE c.jid = p_jid AND c.tid = r.tid AND c.runtype = 'regular';
            IF first_cid IS NULL THEN
                UPDATE tasks SET state = 'done', statetime = now(), progress = 100 WHERE jid = p_jid AND tid = r.tid;
                released := released || tractor_task_finished(p_jid, r.tid);
            ELSE
                UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL
                WHERE jid = p_jid AND tid = r.tid;
                PERFORM tractor_queue_command(p_jid, first_cid);
            END IF;
        END IF;
    END LOOP;
    IF cardinality(released) > 0 THEN
        PERFORM tractor_release(p_jid, released);
    END IF;
    PERFORM tractor_recount(p_jid);
END $$;

-- Count a job's tasks by state into its counters; a finished job with
-- tasks not done lives again.
CREATE FUNCTION tractor_recount(p_jid bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE jobs j SET
        numblocked = c.blocked, numready = c.ready, numactive = c.active, numerror = c.error, numdone = c.done,
        phase = CASE WHEN j.phase <> 'live' AND c.done < j.numtasks THEN 'live' ELSE j.phase END,
        stoptime = CASE WHEN j.phase <> 'live' AND c.done < j.numtasks THEN NULL ELSE j.stoptime END
    FROM (SELECT count(*) FILTER (WHERE state = 'blocked') AS blocked, count(*) FILTER (WHERE state = 'ready') AS ready,
                 count(*) FILTER (WHERE state = 'active') AS active, count(*) FILTER (WHERE state = 'error') AS error,
                 count(*) FILTER (WHERE state = 'done') AS done
          FROM tasks WHERE jid = p_jid AND attached) c
    WHERE j.jid = p_jid
$$;

-- Stop a task's running command: its invocation is no longer current (the
-- blade's next heartbeat kills the process group) and its slots are free.
CREATE FUNCTION tractor_task_stop(p_jid bigint, p_tid integer) RETURNS boolean
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
        UPDATE blades SET slotsinuse = greatest(slotsinuse - inv.numslots, 0) WHERE bladeid = inv.bladeid;
        stopped := true;
    END LOOP;
    RETURN stopped;
END $$;

-- tq retry (p_recover false) and tq resume (true): the tasks start over,
-- and every task that depends on them - their ancestors and, transitively,
-- the tasks referring to them by Instance - is reset to wait for them
-- (Tractor: "every task depending on it, up the tree to the root").  An
-- active one is stopped first (its process group is killed within a
-- heartbeat) and its retrycount counts the retry.  Returns the tids reset.
CREATE FUNCTION tractor_task_retry_v1(p_jid bigint, p_tids integer[], p_recover boolean) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    reset integer[];
    t integer;
BEGIN
    PERFORM 1 FROM jobs WHERE jid = p_jid FOR UPDATE;
    WITH RECURSIVE dep(tid) AS (
        SELECT unnest(p_tids)
        UNION
        SELECT x.up FROM dep JOIN LATERAL (
            SELECT tk.parent_tid AS up FROM tasks tk WHERE tk.jid = p_jid AND tk.tid = dep.tid AND tk.parent_tid IS NOT NULL
            UNION ALL
            SELECT e.parent_tid FROM task_edges e WHERE e.jid = p_jid AND e.child_tid = dep.tid AND e.parent_tid > 0
        ) x ON true
    )
    SELECT array_agg(DISTINCT tid ORDER BY tid) INTO reset FROM dep
    WHERE EXISTS (SELECT 1 FROM tasks tk WHERE tk.jid = p_jid AND tk.tid = dep.tid);
    IF reset IS NULL THEN
        RETURN '{}';
    END IF;
    FOR t IN SELECT tid FROM tasks WHERE jid = p_jid AND tid = ANY(reset) AND state = 'active' LOOP
        IF tractor_task_stop(p_jid, t) THEN
            UPDATE tasks SET retrycount = retrycount + 1 WHERE jid = p_jid AND tid = t AND NOT p_recover;
        END IF;
    END LOOP;
    DELETE FROM ready WHERE jid = p_jid
      AND cid IN (SELECT c.cid FROM commands c WHERE c.jid = p_jid AND c.tid = ANY(reset));
    UPDATE commands SET state = 'blocked', statetime = now(), autoretries = 0
    WHERE jid = p_jid AND tid = ANY(reset) AND state <> 'blocked';
    UPDATE tasks SET state = 'blocked', statetime = now(), currcid = NULL, progress = 0,
                     resumecount = CASE WHEN p_recover THEN resumecount ELSE 0 END
    WHERE jid = p_jid AND tid = ANY(reset);
    -- the next launches of the tasks asked for are a resume (%r = 1) or a fresh start
    UPDATE tasks SET recover = p_recover WHERE jid = p_jid AND tid = ANY(p_tids);
    UPDATE invocations SET current = false
    WHERE jid = p_jid AND cid IN (SELECT c.cid FROM commands c WHERE c.jid = p_jid AND c.tid = ANY(reset)) AND current;
    PERFORM tractor_reschedule_tasks(p_jid, reset);
    RETURN reset;
END $$;

-- tq skip: the tasks count as done without running (an active one is
-- stopped), so what waits for them goes on.  Returns the tids skipped.
CREATE FUNCTION tractor_task_skip_v1(p_jid bigint, p_tids integer[]) RETURNS integer[]
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

-- tq kill (jinterrupt with a tid): stop the running command; the task is
-- left in error.  Returns the tids that were active.
CREATE FUNCTION tractor_task_kill_v1(p_jid bigint, p_tids integer[]) RETURNS integer[]
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
