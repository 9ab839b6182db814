-- Readiness and the ready queue: a command queued, a task released or finished, what waits
-- on what (pending counts, serial gates), and a job's counters checked and settled.
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else; a signature blades call is never changed (add _v2 instead).

-- (plpgsql: its plan is kept; a SQL function's body would be planned at every call.)
CREATE OR REPLACE FUNCTION tractor_param_int(p_name text, p_default integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((SELECT value::integer FROM params WHERE name = p_name), p_default);
END $$;

-- Make a command ready: its state and its row in the ready queue.
CREATE OR REPLACE FUNCTION tractor_queue_command(p_jid bigint, p_cid integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE commands SET state = 'ready', statetime = now() WHERE jid = p_jid AND cid = p_cid;
    INSERT INTO ready (jid, cid, tid, svcid, tierpri, priority, local, spoolhost, pinblade)
    SELECT c.jid, c.cid, c.tid, c.svcid, j.tierpri, j.priority, c.local, j.spoolhost,
           CASE WHEN c.resumepin THEN (SELECT i.bladeid FROM invocations i
                                       WHERE i.jid = c.jid AND i.cid = c.cid ORDER BY i.iid DESC LIMIT 1) END
    FROM commands c JOIN jobs j ON j.jid = c.jid
    WHERE c.jid = p_jid AND c.cid = p_cid
    ON CONFLICT (jid, cid) DO NOTHING;
    PERFORM pg_notify('tractor_ready', p_jid::text);
END $$;

-- The next command a task released from waiting runs: its first regular
-- command not done (a task that expanded goes on after its expand command;
-- finished commands never run again).  NULL: none left.  (plpgsql, as tractor_ready_for: its
-- plan is kept, where a SQL function called from plpgsql is planned again at every call.)
CREATE OR REPLACE FUNCTION tractor_first_cmd(p_jid bigint, p_tid integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT min(c.cid) FROM commands c
            WHERE c.jid = p_jid AND c.tid = p_tid AND c.runtype = 'regular' AND c.state <> 'done');
END $$;

-- A task is done: decrement what waits on it; returns the tids that reached
-- zero (they are still 'blocked'; tractor_release decides what they become).
CREATE OR REPLACE FUNCTION tractor_task_finished(p_jid bigint, p_tid integer) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    me tasks%ROWTYPE;
BEGIN
    SELECT * INTO me FROM tasks WHERE jid = p_jid AND tid = p_tid;
    RETURN tractor_task_done_waiters(p_jid, p_tid, me.parent_tid, me.lasttid, NULL);
END $$;

-- tractor_task_finished, given the task's parent_tid and lasttid, and (p_job_serial, when not
-- NULL) its job's -serialsubtasks: a finish has them from the rows it writes and locks anyway (each
-- statement a report saves is some 30 us of the server's time).
CREATE OR REPLACE FUNCTION tractor_task_done_waiters(p_jid bigint, p_tid integer, p_parent_tid integer,
                                                     p_lasttid integer, p_job_serial boolean) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    serial boolean;
    nxt tasks%ROWTYPE;
    released integer[] := '{}';
BEGIN
    -- the tree parent
    IF p_parent_tid IS NOT NULL THEN
        WITH u AS (
            UPDATE tasks SET pending = pending - 1
            WHERE jid = p_jid AND tid = p_parent_tid AND state = 'blocked'
            RETURNING tid, pending)
        SELECT released || coalesce(array_agg(u.tid) FILTER (WHERE u.pending = 0), '{}') INTO released FROM u;
    END IF;
    -- Instance referrers (one edge per referrer and target: see db/spool.py);
    -- looked up by task_edges_child_idx first, as most tasks have none
    IF EXISTS (SELECT 1 FROM task_edges e WHERE e.jid = p_jid AND e.child_tid = p_tid AND e.parent_tid > 0) THEN
        WITH u AS (
            UPDATE tasks t SET pending = t.pending - 1
            WHERE t.jid = p_jid AND t.state = 'blocked'
              AND t.tid IN (SELECT e.parent_tid FROM task_edges e
                            WHERE e.jid = p_jid AND e.child_tid = p_tid AND e.parent_tid > 0)
            RETURNING t.tid, t.pending)
        SELECT released || coalesce(array_agg(u.tid) FILTER (WHERE u.pending = 0), '{}') INTO released FROM u;
    END IF;
    -- the serial gate on the next sibling's subtree
    IF p_parent_tid IS NULL THEN
        serial := p_job_serial;
        IF serial IS NULL THEN
            SELECT j.serialsubtasks INTO serial FROM jobs j WHERE j.jid = p_jid;
        END IF;
    ELSE
        SELECT p.serialsubtasks INTO serial FROM tasks p WHERE p.jid = p_jid AND p.tid = p_parent_tid;
    END IF;
    IF serial THEN
        -- the next sibling is the first task after my subtree, if it has my parent
        SELECT * INTO nxt FROM tasks
        WHERE jid = p_jid AND tid = coalesce(p_lasttid, p_tid) + 1
          AND parent_tid IS NOT DISTINCT FROM p_parent_tid AND attached;
        IF FOUND THEN
            WITH u AS (
                UPDATE tasks SET pending = pending - 1
                WHERE jid = p_jid AND tid BETWEEN nxt.tid AND coalesce(nxt.lasttid, nxt.tid) AND state = 'blocked'
                RETURNING tid, pending)
            SELECT released || coalesce(array_agg(u.tid ORDER BY u.tid) FILTER (WHERE u.pending = 0), '{}')
            INTO released FROM u;
        END IF;
    END IF;
    RETURN array_remove(released, NULL);
END $$;

-- Tasks whose `pending` just reached zero (blocked until now): each becomes
-- ready with its first command not done queued, or, with none, done at
-- once, releasing its own waiters in turn (a -resumeblock root so done may
-- start its block's next pass instead: tractor_next_pass).  Returns the
-- counter changes as (ready, done) so callers update the job row once.
CREATE OR REPLACE FUNCTION tractor_release(p_jid bigint, p_tids integer[], OUT o_ready integer, OUT o_done integer)
LANGUAGE plpgsql AS $$
DECLARE
    queue integer[] := p_tids;
    t integer;
    first_cid integer;
    waiters integer[];
    root boolean;
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
            UPDATE tasks SET state = 'done', statetime = now(), progress = 100 WHERE jid = p_jid AND tid = t
            RETURNING resumeblock INTO root;
            o_done := o_done + 1;  -- (a next pass counts its reset tasks back by difference)
            -- a -resumeblock root with no commands of its own ends a pass here: another, or done
            CONTINUE WHEN root AND tractor_next_pass(p_jid, t);
            waiters := tractor_task_finished(p_jid, t);
            queue := queue || waiters;
        END IF;
    END LOOP;
END $$;

-- What a task waits for, for every task of a job at once:
--   its attached subtasks that are not done,
--   its Instance targets that are not done,
--   and one for every serial gate over it: itself or an ancestor that has
--   a previous sibling (under a -serialsubtasks parent, or the job) not done.
-- A gate over the Task g covers g's subtree, the tid range g..g.lasttid: its
-- count at each task is a running sum of +1 at g and -1 after g.lasttid.
CREATE OR REPLACE FUNCTION tractor_pending_all(p_jid bigint)
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

-- The serial gates over a task (the third part of what a task waits for,
-- after its subtasks and Instance targets): one for itself and for each
-- ancestor that has a previous sibling not done under a -serialsubtasks
-- parent (or job).
CREATE OR REPLACE FUNCTION tractor_serial_gates(p_jid bigint, p_tid integer) RETURNS integer
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

-- Count a job's tasks by state into its counters; a finished job with
-- tasks not done lives again.  (plpgsql: its plan is kept; see tractor_first_cmd.)
CREATE OR REPLACE FUNCTION tractor_recount(p_jid bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs j SET
        numblocked = c.blocked, numready = c.ready, numactive = c.active, numerror = c.error, numdone = c.done,
        phase = CASE WHEN j.phase <> 'live' AND c.done < j.numtasks THEN 'live' ELSE j.phase END,
        stoptime = CASE WHEN j.phase <> 'live' AND c.done < j.numtasks THEN NULL ELSE j.stoptime END
    FROM (SELECT count(*) FILTER (WHERE state = 'blocked') AS blocked, count(*) FILTER (WHERE state = 'ready') AS ready,
                 count(*) FILTER (WHERE state = 'active') AS active, count(*) FILTER (WHERE state = 'error') AS error,
                 count(*) FILTER (WHERE state = 'done') AS done
          FROM tasks WHERE jid = p_jid AND attached) c
    WHERE j.jid = p_jid;
END $$;

-- Whether a job's row says it runs on as it is: live, tasks left to do, and not stalled on
-- errors with nothing ready or running.  tractor_job_check has nothing to do for such a job;
-- a finish that leaves its job so does not call it.
CREATE OR REPLACE FUNCTION tractor_job_running(j jobs) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT j.phase = 'live' AND j.numdone <> j.numtasks
           AND NOT (j.numerror > 0 AND j.numactive = 0 AND j.numready = 0)
$$;

-- The job's counters moved; when nothing more can happen, start its
-- postscript phase: all tasks done -> -cleanup, -postscript -when done and
-- always; stalled on errors -> -postscript -when error and always.  With no
-- such commands the job is finished at once.  Returns the new phase.
CREATE OR REPLACE FUNCTION tractor_job_check(p_jid bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    j jobs%ROWTYPE;
    kinds text[];
    n integer := 0;
    c integer;
BEGIN
    SELECT * INTO j FROM jobs WHERE jid = p_jid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF j.phase = 'live' THEN
        IF j.numdone = j.numtasks THEN
            kinds := ARRAY['cleanup', 'post_done', 'post_always'];
        ELSIF j.numerror > 0 AND j.numactive = 0 AND j.numready = 0 THEN
            kinds := ARRAY['post_error', 'post_always'];
        ELSE
            RETURN j.phase;
        END IF;
        FOR c IN SELECT cid FROM commands WHERE jid = p_jid AND tid = 0 AND runtype = ANY(kinds)
                 AND state IN ('blocked', 'error', 'done') ORDER BY cid LOOP
            PERFORM tractor_queue_command(p_jid, c);
            n := n + 1;
        END LOOP;
        IF n > 0 THEN
            UPDATE jobs SET phase = 'postscript' WHERE jid = p_jid;
            RETURN 'postscript';
        END IF;
    ELSIF j.phase <> 'postscript'
          OR EXISTS (SELECT 1 FROM commands WHERE jid = p_jid AND tid = 0 AND state IN ('ready', 'active')) THEN
        RETURN j.phase;
    END IF;
    -- nothing (more) to run for the job: it is finished
    UPDATE jobs SET phase = 'finished', stoptime = now(),
                    elapsedsecs = extract(epoch FROM now() - coalesce(starttime, spooltime))
    WHERE jid = p_jid;
    RETURN 'finished';
END $$;

-- After an operation on their tasks: a job that had ended (stalled on
-- errors) and has work again lives again, as tractor_recount has it; then
-- each may end or run its postscripts (tractor_job_check).
CREATE OR REPLACE FUNCTION tractor_jobs_settle(p_jids bigint[]) RETURNS void
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

CREATE OR REPLACE FUNCTION tractor_ready_jobs_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ready q USING gone g WHERE q.jid = g.jid;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tractor_ready_jobs_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE ready;
    RETURN NULL;
END $$;
