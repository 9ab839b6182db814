-- Task operations over many jobs in one call (tq retry of every error task
-- of the farm).  The per-job functions of 0004 cost a few milliseconds a
-- job, mostly statement overhead in PL/pgSQL repeated for each job and a
-- count over all of each job's tasks; a thousand jobs took seconds.  These
-- take (jid, tid) pairs of any number of jobs and do each step once, as one
-- statement over every pair, and they keep the job counters by difference
-- (the states the touched tasks had against the states they have now)
-- instead of counting each job again.  The per-job tractor_task_retry_v1
-- of 0004 keeps its signature for older clients and now calls the batch
-- function (end of this file).

-- The ready queue is written at every finish and by every retry, a row at
-- a time or ten thousand at once.  Its foreign key to commands cost a check
-- per inserted row (a tenth of the time of a 10,000-task retry); the
-- functions that write the queue keep it in line with commands, and its
-- rows go with their job through these triggers instead (deleting a job is
-- the only way commands go).
ALTER TABLE ready DROP CONSTRAINT IF EXISTS ready_jid_cid_fkey;

CREATE FUNCTION tractor_ready_jobs_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ready q USING gone g WHERE q.jid = g.jid;
    RETURN NULL;
END $$;

CREATE FUNCTION tractor_ready_jobs_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE ready;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_ready_deleted AFTER DELETE ON jobs REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION tractor_ready_jobs_deleted();
CREATE TRIGGER jobs_ready_truncated AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tractor_ready_jobs_truncated();

-- 0004's incremental reschedule goes: retry was its only caller, and the
-- batch function below does that work (serial gates: tractor_serial_gates).
DROP FUNCTION tractor_reschedule_tasks(bigint, integer[]);
DROP FUNCTION tractor_pending_of(bigint, integer);

-- The serial gates over a task (the third part of what a task waits for,
-- after its subtasks and Instance targets): one for itself and for each
-- ancestor that has a previous sibling not done under a -serialsubtasks
-- parent (or job).
CREATE FUNCTION tractor_serial_gates(p_jid bigint, p_tid integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n integer := 0;
    a record;
    serial boolean;
BEGIN
    SELECT tid, parent_tid, position INTO a FROM tasks WHERE jid = p_jid AND tid = p_tid;
    LOOP
        IF a.position > 0 THEN
            IF a.parent_tid IS NULL THEN
                SELECT j.serialsubtasks INTO serial FROM jobs j WHERE j.jid = p_jid;
            ELSE
                SELECT p.serialsubtasks INTO serial FROM tasks p WHERE p.jid = p_jid AND p.tid = a.parent_tid;
            END IF;
            IF serial THEN
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

-- tq retry (p_recover false) and tq resume (true) of any tasks of any jobs:
-- what tractor_task_retry_v1 does for one job, for (p_jids[i], p_tids[i])
-- pairs.  The tasks and every task depending on them (ancestors and,
-- transitively, Instance referrers) are reset; active ones are stopped
-- (their process groups are killed within a heartbeat) and their
-- retrycount counts the retry.  Then every task whose wait may have
-- changed (the reset ones, and the subtrees their serial gates close) is
-- rescheduled: its pending count; at zero ready with its first command
-- queued (or, without -cmds, done, releasing its waiters), above zero
-- blocked.  Each task and command row is written once or twice, in one
-- statement per step for all pairs.  Jobs are locked in jid order, so two
-- such calls cannot deadlock.  Returns the (jid, tid) pairs reset.
CREATE FUNCTION tractor_tasks_retry_v1(p_jids bigint[], p_tids integer[], p_recover boolean)
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
        -- the next sibling is the first task after me's subtree, if it has me's parent
        SELECT g.jid, g.tid
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
            SELECT g.jid, g.tid, false, false FROM gated g
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
    UPDATE blades b SET slotsinuse = greatest(b.slotsinuse - x.n, 0)
    FROM (SELECT i.bladeid, sum(i.numslots) AS n
          FROM tractor_resched s
          JOIN commands c ON c.jid = s.jid AND c.tid = s.tid
          JOIN invocations i ON i.jid = c.jid AND i.cid = c.cid AND i.current AND i.stoptime IS NULL
          WHERE s.reset AND s.running
          GROUP BY i.bladeid) x
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

-- The per-job function of 0004 (kept for clients of that version) now does
-- what the batch one does.  Its own reschedule read every pending count
-- before its loop, so a task without commands that became done there could
-- decrement a count it was about to overwrite (and drive one below zero).
CREATE OR REPLACE FUNCTION tractor_task_retry_v1(p_jid bigint, p_tids integer[], p_recover boolean)
RETURNS integer[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(r.tid ORDER BY r.tid), ARRAY[]::integer[])
    FROM tractor_tasks_retry_v1(array_fill(p_jid, ARRAY[cardinality(p_tids)]), p_tids, p_recover) r
$$;
