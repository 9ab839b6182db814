-- Dispatch: the state machine that blades and the engine drive, in SQL.
--
-- Every transition is one short transaction inside one of the functions
-- below; blades and the engine call them and nothing else writes task or
-- command states while a job runs.  The functions keep their signatures
-- across schema versions (a changed one gets a _v2 name beside it), so an
-- older blade keeps working with a newer database.
--
-- Counters.  jobs.numblocked/numready/numactive/numerror/numdone count the
-- job's tasks by state; every function that moves a task moves its counter
-- in the same transaction.  Job-level commands (tid 0: -cleanup and
-- -postscript) are not tasks and are not counted.
--
-- Readiness is event-driven (see db/spool.py): tasks.pending counts what a
-- task waits for; finishing a task decrements its tree parent, its Instance
-- referrers (task_edges) and, under -serialsubtasks, every task of the next
-- sibling's subtree (tids lasttid..); a task reaching zero becomes ready
-- (its first command gets a `ready` row) or, with no -cmds, done at once,
-- which cascades.
--
-- A task's commands (-cmds, then -cleanup) run one after another in cid
-- order: cids of one task are contiguous, so the next command is cid + 1
-- when it has the same tid.

-- --- schema -------------------------------------------------------------------------

-- Claiming walks the eligible jobs in priority order, then each job's ready
-- rows for the service expressions the blade matches.
ALTER TABLE jobs ADD COLUMN tierpri integer NOT NULL DEFAULT 50;
ALTER TABLE jobs ADD COLUMN svcids integer[] NOT NULL DEFAULT '{}';
UPDATE jobs SET tierpri = CASE lower(tier) WHEN 'admin' THEN 111 WHEN 'rush' THEN 99 WHEN 'batch' THEN 10 ELSE 50 END;
UPDATE jobs j SET svcids = coalesce(
    (SELECT array_agg(DISTINCT c.svcid ORDER BY c.svcid) FROM commands c WHERE c.jid = j.jid AND c.svcid IS NOT NULL),
    '{}');
CREATE INDEX jobs_dispatch_idx ON jobs (tierpri DESC, priority DESC, jid)
    WHERE deletetime IS NULL AND phase <> 'finished';

DROP INDEX ready_order_idx;

-- Task and command rows change state a few times each while a job runs.
-- Without an index on the state and with room left in each page, those
-- updates are HOT (no index entries written).  Jobs with active or error
-- tasks are found by their counters (numactive, numerror), their tasks by
-- the primary key.
DROP INDEX tasks_state_idx;
ALTER TABLE tasks SET (fillfactor = 85);
ALTER TABLE commands SET (fillfactor = 90);
ALTER TABLE invocations SET (fillfactor = 90);
CREATE INDEX ready_job_svc_idx ON ready (jid, svcid, cid);

-- The last tid of a task's subtree (tids count depth-first, so a subtree is
-- the range tid..lasttid): the serial gate of the next sibling is lifted on
-- that whole range.
ALTER TABLE tasks ADD COLUMN lasttid integer;
WITH RECURSIVE up(jid, tid, anc) AS (
    SELECT jid, tid, tid FROM tasks
    UNION ALL
    SELECT up.jid, up.tid, p.parent_tid FROM up JOIN tasks p ON p.jid = up.jid AND p.tid = up.anc
    WHERE p.parent_tid IS NOT NULL
)
UPDATE tasks t SET lasttid = t.tid + s.size - 1
FROM (SELECT jid, anc AS tid, count(*) AS size FROM up GROUP BY jid, anc) s
WHERE t.jid = s.jid AND t.tid = s.tid;

INSERT INTO params (name, value) VALUES
    ('CmdAutoRetryAttempts', '0'),
    ('CmdRetryrcRetryAttempts', '1'),
    ('BladeLeaseSecs', '30')
ON CONFLICT (name) DO NOTHING;

-- --- helpers ------------------------------------------------------------------------

CREATE FUNCTION tractor_param_int(p_name text, p_default integer) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT value::integer FROM params WHERE name = p_name), p_default)
$$;

-- Make a command ready: its state and its row in the ready queue.
CREATE FUNCTION tractor_queue_command(p_jid bigint, p_cid integer) RETURNS void
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

-- Tasks whose `pending` just reached zero (blocked until now): each becomes
-- ready with its first command queued, or, without -cmds, done at once,
-- releasing its own waiters in turn.  Returns the counter changes as
-- (ready, done) so callers update the job row once.
CREATE FUNCTION tractor_release(p_jid bigint, p_tids integer[], OUT o_ready integer, OUT o_done integer)
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
        SELECT min(c.cid) INTO first_cid FROM commands c
        WHERE c.jid = p_jid AND c.tid = t AND c.runtype = 'regular';
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

-- A task is done: decrement what waits on it; returns the tids that reached
-- zero (they are still 'blocked'; tractor_release decides what they become).
CREATE FUNCTION tractor_task_finished(p_jid bigint, p_tid integer) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    me tasks%ROWTYPE;
    serial boolean;
    nxt tasks%ROWTYPE;
    released integer[] := '{}';
BEGIN
    SELECT * INTO me FROM tasks WHERE jid = p_jid AND tid = p_tid;
    -- the tree parent
    IF me.parent_tid IS NOT NULL THEN
        WITH u AS (
            UPDATE tasks SET pending = pending - 1
            WHERE jid = p_jid AND tid = me.parent_tid AND state = 'blocked'
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
    IF me.parent_tid IS NULL THEN
        SELECT j.serialsubtasks INTO serial FROM jobs j WHERE j.jid = p_jid;
    ELSE
        SELECT p.serialsubtasks INTO serial FROM tasks p WHERE p.jid = p_jid AND p.tid = me.parent_tid;
    END IF;
    IF serial THEN
        -- the next sibling is the first task after my subtree, if it has my parent
        SELECT * INTO nxt FROM tasks
        WHERE jid = p_jid AND tid = coalesce(me.lasttid, me.tid) + 1
          AND parent_tid IS NOT DISTINCT FROM me.parent_tid AND attached;
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

-- The job's counters moved; when nothing more can happen, start its
-- postscript phase: all tasks done -> -cleanup, -postscript -when done and
-- always; stalled on errors -> -postscript -when error and always.  With no
-- such commands the job is finished at once.  Returns the new phase.
CREATE FUNCTION tractor_job_check(p_jid bigint) RETURNS text
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

-- An invocation ends without a result (lost blade, blade handing work back):
-- its command goes back to the queue; the next launch is a new invocation.
CREATE FUNCTION tractor_requeue(p_jid bigint, p_cid integer, p_iid integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    inv invocations%ROWTYPE;
BEGIN
    UPDATE invocations SET current = false, stoptime = now(), leasetime = NULL
    WHERE jid = p_jid AND cid = p_cid AND iid = p_iid AND current AND stoptime IS NULL
    RETURNING * INTO inv;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE blades SET slotsinuse = greatest(slotsinuse - inv.numslots, 0) WHERE bladeid = inv.bladeid;
    PERFORM tractor_queue_command(p_jid, p_cid);
    IF inv.tid > 0 THEN
        UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL
        WHERE jid = p_jid AND tid = inv.tid;
        UPDATE jobs SET numactive = numactive - 1, numready = numready + 1 WHERE jid = p_jid;
    END IF;
    RETURN true;
END $$;

-- --- what blades call ---------------------------------------------------------------

-- Register (or re-register after a restart) a blade; returns its id.  The
-- invocations a previous run of the same blade left unfinished cannot be
-- running any more (its processes died with it): they are queued again now
-- rather than after the lease.
CREATE FUNCTION tractor_blade_register_v1(
    p_name text, p_ipaddr text, p_port integer, p_profile text, p_provides text[], p_numslots integer,
    p_osname text, p_osversion text, p_version text, p_numcpu integer, p_zone text, p_nimby text,
    p_metrics jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    b uuid;
    r record;
BEGIN
    INSERT INTO blades (name, ipaddr, port, profile, provides, numslots, osname, osversion, version, numcpu,
                        zone, nimby, metrics, starttime, heartbeattime, status, cleartime, slotsinuse)
    VALUES (p_name, p_ipaddr, p_port, p_profile, p_provides, p_numslots, p_osname, p_osversion, p_version,
            p_numcpu, p_zone, p_nimby, p_metrics, now(), now(), 'up', NULL, 0)
    ON CONFLICT (name, ipaddr, port) DO UPDATE SET
        profile = EXCLUDED.profile, provides = EXCLUDED.provides, numslots = EXCLUDED.numslots,
        osname = EXCLUDED.osname, osversion = EXCLUDED.osversion, version = EXCLUDED.version,
        numcpu = EXCLUDED.numcpu, zone = EXCLUDED.zone, nimby = EXCLUDED.nimby, metrics = EXCLUDED.metrics,
        starttime = now(), heartbeattime = now(), status = 'up', cleartime = NULL
    RETURNING bladeid INTO b;
    FOR r IN SELECT jid, cid, iid FROM invocations WHERE bladeid = b AND current AND stoptime IS NULL LOOP
        PERFORM tractor_requeue(r.jid, r.cid, r.iid);
    END LOOP;
    UPDATE blades SET slotsinuse = 0 WHERE bladeid = b;
    RETURN b;
END $$;

-- Claim up to p_slots slots of ready commands for a blade.  p_svcids are
-- the service expressions the blade matches (it evaluates them itself);
-- p_host is its host name, for local Cmds of jobs spooled from there.
-- Order: tier priority, job priority, job id (spool order), then cid.
-- Paused, delayed (-after), waiting (-afterjids), deleted and finished jobs
-- are skipped, as are jobs at their -maxactive and, on a NIMBY blade, jobs
-- from other hosts ('1') or other users (a user name).  FOR UPDATE SKIP LOCKED: two
-- blades never get one command.  ROWS 4 (a few slots' worth) lets the
-- planner join the result to tractor_launch_v1 by index, not by a scan of
-- every command of the job.
CREATE FUNCTION tractor_claim_v1(p_blade uuid, p_svcids integer[], p_host text, p_slots integer)
RETURNS TABLE (jid bigint, tid integer, cid integer, iid integer, numslots integer)
LANGUAGE plpgsql ROWS 4 AS $$
#variable_conflict use_column
DECLARE
    j record;
    s integer;
    r record;
    last_cid integer;
    need integer;
    lease integer := tractor_param_int('BladeLeaseSecs', 30);
    free integer := p_slots;
    used integer := 0;
    bname text;
    bnimby text;
    job_full boolean;
BEGIN
    IF free <= 0 OR cardinality(p_svcids) = 0 THEN
        RETURN;
    END IF;
    SELECT b.name, b.nimby INTO bname, bnimby FROM blades b WHERE b.bladeid = p_blade;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no blade %', p_blade USING ERRCODE = 'no_data_found';
    END IF;
    FOR j IN
        SELECT jb.jid, jb.svcids FROM jobs jb
        WHERE jb.deletetime IS NULL AND jb.phase <> 'finished'
          AND (jb.numready > 0 OR jb.phase = 'postscript')
          AND jb.pausetime IS NULL
          AND (jb.aftertime IS NULL OR jb.aftertime <= now())
          AND (jb.maxactive = 0 OR jb.numactive < jb.maxactive)
          AND jb.svcids && p_svcids
          -- NIMBY: '' any job; '1' only jobs spooled from this host; else only that user's
          AND (bnimby = '' OR (bnimby = '1' AND jb.spoolhost = p_host) OR jb.owner = bnimby)
          AND (cardinality(jb.afterjids) = 0 OR NOT EXISTS (
                SELECT 1 FROM jobs a WHERE a.jid = ANY(jb.afterjids) AND a.phase <> 'finished'
                  AND a.deletetime IS NULL))
        ORDER BY jb.tierpri DESC, jb.priority DESC, jb.jid
    LOOP
        job_full := false;
        FOREACH s IN ARRAY ARRAY(SELECT unnest(j.svcids) INTERSECT SELECT unnest(p_svcids) ORDER BY 1) LOOP
            last_cid := 0;
            LOOP
                SELECT q.cid, q.tid INTO r FROM ready q
                WHERE q.jid = j.jid AND q.svcid = s AND q.cid > last_cid
                  AND (NOT q.local OR q.spoolhost = p_host)
                  AND (q.pinblade IS NULL OR q.pinblade = p_blade)
                ORDER BY q.cid LIMIT 1
                FOR UPDATE SKIP LOCKED;
                EXIT WHEN NOT FOUND;
                last_cid := r.cid;
                SELECT greatest(coalesce(c.minslots, 1), 1) INTO need FROM commands c
                WHERE c.jid = j.jid AND c.cid = r.cid;
                CONTINUE WHEN need > free;
                IF r.tid > 0 THEN
                    UPDATE jobs SET numactive = numactive + 1, numready = numready - 1,
                                    starttime = coalesce(starttime, now())
                    WHERE jobs.jid = j.jid AND (maxactive = 0 OR numactive < maxactive);
                    IF NOT FOUND THEN
                        job_full := true;
                        EXIT;
                    END IF;
                    UPDATE tasks SET state = 'active', statetime = now(), activetime = now(), currcid = r.cid
                    WHERE tasks.jid = j.jid AND tasks.tid = r.tid;
                END IF;
                DELETE FROM ready WHERE ready.jid = j.jid AND ready.cid = r.cid;
                UPDATE commands SET state = 'active', statetime = now() WHERE commands.jid = j.jid AND commands.cid = r.cid;
                jid := j.jid;
                tid := r.tid;
                cid := r.cid;
                numslots := need;
                INSERT INTO invocations AS i (jid, tid, cid, iid, bladeid, bladename, numslots, leasetime,
                                              retrycount, resumecount)
                SELECT j.jid, r.tid, r.cid,
                       coalesce((SELECT max(x.iid) FROM invocations x WHERE x.jid = j.jid AND x.cid = r.cid), 0) + 1,
                       p_blade, bname, need, now() + make_interval(secs => lease),
                       coalesce(t.retrycount, 0), coalesce(t.resumecount, 0)
                FROM (SELECT 1) AS one LEFT JOIN tasks t ON t.jid = j.jid AND t.tid = r.tid
                RETURNING i.iid INTO iid;
                free := free - need;
                used := used + need;
                RETURN NEXT;
                EXIT WHEN free <= 0;
            END LOOP;
            EXIT WHEN free <= 0 OR job_full;
        END LOOP;
        EXIT WHEN free <= 0;
    END LOOP;
    IF used > 0 THEN
        UPDATE blades SET slotsinuse = slotsinuse + used WHERE bladeid = p_blade;
    END IF;
END $$;

-- What a blade needs to launch a claimed command.
CREATE VIEW tractor_launch_v1 AS
SELECT c.jid, c.cid, c.tid, c.argv, c.local, c.expand, c.msg, c.envkey AS cmd_envkey, c.minrunsecs,
       c.maxrunsecs, c.retryrcodes, c.resumewhile, c.resumepin, c.minslots, c.maxslots, c.runtype,
       j.owner, j.title AS jobtitle, j.projects, j.spoolcwd, j.spoolhost, j.dirmap, j.assignments,
       j.envkey AS job_envkey, j.priority,
       t.title AS tasktitle, coalesce(t.retrycount, 0) AS retrycount, coalesce(t.resumecount, 0) AS resumecount
FROM commands c
JOIN jobs j ON j.jid = c.jid
LEFT JOIN tasks t ON t.jid = c.jid AND t.tid = c.tid;

-- A command's process ended with p_rcode (negative: killed by that signal;
-- 20000+errno: could not launch).  Fenced: only the current invocation of
-- the blade that claimed it counts; anything else returns 'stale' and
-- changes nothing.  Returns 'done', 'retry' (queued again automatically),
-- 'resume' (a -resumewhile checkpoint: the next pass is queued), 'error' or
-- 'stale'.
CREATE FUNCTION tractor_finish_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid, p_rcode integer,
                                  p_elapsedreal double precision, p_elapsedapp double precision,
                                  p_elapsedsys double precision) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    inv invocations%ROWTYPE;
    cmd commands%ROWTYPE;
    nxt integer;
    rel record;
    released integer[];
    outcome text;
BEGIN
    UPDATE invocations SET stoptime = now(), rcode = p_rcode, leasetime = NULL,
                           elapsedreal = p_elapsedreal, elapsedapp = p_elapsedapp, elapsedsys = p_elapsedsys
    WHERE jid = p_jid AND cid = p_cid AND iid = p_iid AND current AND stoptime IS NULL
      AND bladeid IS NOT DISTINCT FROM p_blade
    RETURNING * INTO inv;
    IF NOT FOUND THEN
        RETURN 'stale';
    END IF;
    UPDATE blades SET slotsinuse = greatest(slotsinuse - inv.numslots, 0) WHERE bladeid = p_blade;
    SELECT * INTO cmd FROM commands WHERE jid = p_jid AND cid = p_cid FOR UPDATE;

    IF p_rcode = 0 THEN
        UPDATE commands SET state = 'done', statetime = now() WHERE jid = p_jid AND cid = p_cid;
        outcome := 'done';
        IF cmd.tid = 0 THEN
            PERFORM tractor_job_check(p_jid);
            RETURN outcome;
        END IF;
        SELECT c.cid INTO nxt FROM commands c WHERE c.jid = p_jid AND c.cid = p_cid + 1 AND c.tid = cmd.tid;
        IF FOUND THEN
            UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL
            WHERE jid = p_jid AND tid = cmd.tid;
            PERFORM tractor_queue_command(p_jid, nxt);
            UPDATE jobs SET numactive = numactive - 1, numready = numready + 1 WHERE jid = p_jid;
        ELSE
            UPDATE tasks SET state = 'done', statetime = now(), progress = 100, currcid = NULL
            WHERE jid = p_jid AND tid = cmd.tid;
            released := tractor_task_finished(p_jid, cmd.tid);
            SELECT * INTO rel FROM tractor_release(p_jid, released);
            UPDATE jobs SET numactive = numactive - 1, numdone = numdone + 1 + rel.o_done,
                            numready = numready + rel.o_ready,
                            numblocked = numblocked - rel.o_ready - rel.o_done
            WHERE jid = p_jid;
        END IF;
    ELSIF cardinality(cmd.resumewhile) > 1 AND lower(cmd.resumewhile[1]) = 'exitcode'
          AND p_rcode::text = ANY(cmd.resumewhile[2:]) THEN
        -- a checkpoint-resume loop (-resumewhile {exitcode N}): a checkpoint
        -- was reached; the command runs again as the next pass (%R + 1),
        -- on the same blade under -resumepin
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
        UPDATE jobs SET numactive = numactive - 1, numerror = numerror + 1 WHERE jid = p_jid;
    END IF;
    PERFORM tractor_job_check(p_jid);
    RETURN outcome;
END $$;

-- Progress of a running command's task (TR_PROGRESS); fenced like finish.
CREATE FUNCTION tractor_progress_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid, p_progress real)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks t SET progress = least(greatest(p_progress, 0), 100)
    FROM invocations i
    WHERE i.jid = p_jid AND i.cid = p_cid AND i.iid = p_iid AND i.current AND i.stoptime IS NULL
      AND i.bladeid = p_blade AND t.jid = p_jid AND t.tid = i.tid;
    RETURN FOUND;
END $$;

-- A blade is alive: renew the leases of the invocations it runs (p_jids,
-- p_cids, p_iids: the commands it holds, running or not yet reported) and
-- record its metrics.  Its other current invocations older than a few
-- seconds are not running anywhere (a claim whose answer was lost with the
-- connection, say): they are queued again.  Returns the invocations it
-- should be running; any other process it has (retried, killed or
-- requeued meanwhile) it must stop.
CREATE FUNCTION tractor_heartbeat_v1(p_blade uuid, p_metrics jsonb, p_loadavg real, p_availmemory real,
                                     p_availdisk real, p_jids bigint[], p_cids integer[], p_iids integer[])
RETURNS TABLE (jid bigint, cid integer, iid integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    lease integer := tractor_param_int('BladeLeaseSecs', 30);
    r record;
BEGIN
    UPDATE blades SET heartbeattime = now(), metrics = p_metrics, loadavg = p_loadavg,
                      availmemory = p_availmemory, availdisk = p_availdisk, status = 'up'
    WHERE bladeid = p_blade;
    FOR r IN SELECT i.jid, i.cid, i.iid FROM invocations i
             WHERE i.bladeid = p_blade AND i.current AND i.stoptime IS NULL
               AND i.starttime < now() - interval '5 seconds'
               AND (i.jid, i.cid, i.iid) NOT IN (SELECT * FROM unnest(p_jids, p_cids, p_iids)) LOOP
        PERFORM tractor_requeue(r.jid, r.cid, r.iid);
    END LOOP;
    RETURN QUERY
    UPDATE invocations i SET leasetime = now() + make_interval(secs => lease)
    WHERE i.bladeid = p_blade AND i.current AND i.stoptime IS NULL
    RETURNING i.jid, i.cid, i.iid;
END $$;

-- A blade stops: with p_handback its unfinished invocations are queued
-- again at once (otherwise they wait for their lease, or for its return).
CREATE FUNCTION tractor_blade_exit_v1(p_blade uuid, p_handback boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    IF p_handback THEN
        FOR r IN SELECT jid, cid, iid FROM invocations WHERE bladeid = p_blade AND current AND stoptime IS NULL LOOP
            IF tractor_requeue(r.jid, r.cid, r.iid) THEN
                n := n + 1;
            END IF;
        END LOOP;
    END IF;
    UPDATE blades SET status = 'down', heartbeattime = now() WHERE bladeid = p_blade;
    RETURN n;
END $$;

-- --- what the engine calls ----------------------------------------------------------

-- Housekeeping: invocations whose lease ran out (their blade stopped
-- heartbeating) are queued again; jobs with nothing left to run enter or
-- leave their postscript phase.  Returns (requeued, jobs checked).
CREATE FUNCTION tractor_housekeep_v1(OUT requeued integer, OUT finished integer)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    requeued := 0;
    finished := 0;
    FOR r IN SELECT i.jid, i.cid, i.iid FROM invocations i
             WHERE i.current AND i.stoptime IS NULL AND i.leasetime < now()
             FOR UPDATE SKIP LOCKED LOOP
        IF tractor_requeue(r.jid, r.cid, r.iid) THEN
            requeued := requeued + 1;
        END IF;
    END LOOP;
    UPDATE blades b SET status = 'lost'
    WHERE b.status = 'up' AND b.heartbeattime < now() - make_interval(secs => tractor_param_int('BladeLeaseSecs', 30));
    FOR r IN SELECT jb.jid FROM jobs jb
             WHERE jb.deletetime IS NULL AND jb.phase <> 'finished'
               AND ((jb.phase = 'live' AND (jb.numdone = jb.numtasks
                                             OR (jb.numerror > 0 AND jb.numactive = 0 AND jb.numready = 0)))
                    OR jb.phase = 'postscript')
             FOR UPDATE SKIP LOCKED LOOP
        IF tractor_job_check(r.jid) = 'finished' THEN
            finished := finished + 1;
        END IF;
    END LOOP;
END $$;
