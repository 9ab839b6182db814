-- What blades call: register, heartbeat, claim, progress, exit; and the engine's housekeeping
-- (blades whose lease ran out give their commands back).  What blades call runs as the site's
-- role (SECURITY DEFINER, fixed search_path) after tractor_guard_blade: a blade login acts only
-- for the blades it registered (permissions.sql); people may not call them.
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else; a signature blades call is never changed (add _v2 instead).

-- Register (or re-register after a restart) a blade; returns its id.  The
-- invocations a previous run of the same blade left unfinished cannot be
-- running any more (its processes died with it): they are queued again now
-- rather than after the lease.
CREATE OR REPLACE FUNCTION tractor_blade_register_v1(
    p_name text, p_ipaddr text, p_port integer, p_profile text, p_provides text[], p_numslots integer,
    p_osname text, p_osversion text, p_version text, p_numcpu integer, p_zone text, p_nimby text,
    p_metrics jsonb) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    b uuid;
    r record;
BEGIN
    IF session_user <> current_user THEN
        PERFORM tractor_guard_blade_name(p_name, p_ipaddr, p_port);
    END IF;
    INSERT INTO blades (name, ipaddr, port, profile, provides, numslots, osname, osversion, version, numcpu,
                        zone, nimby, metrics, starttime, heartbeattime, status, cleartime, slotsinuse, login)
    VALUES (p_name, p_ipaddr, p_port, p_profile, p_provides, p_numslots, p_osname, p_osversion, p_version,
            p_numcpu, p_zone, p_nimby, p_metrics, now(), now(), 'up', NULL, 0, session_user)
    ON CONFLICT (name, ipaddr, port) DO UPDATE SET
        profile = EXCLUDED.profile, provides = EXCLUDED.provides, numslots = EXCLUDED.numslots,
        osname = EXCLUDED.osname, osversion = EXCLUDED.osversion, version = EXCLUDED.version,
        numcpu = EXCLUDED.numcpu, zone = EXCLUDED.zone, nimby = EXCLUDED.nimby, metrics = EXCLUDED.metrics,
        starttime = now(), heartbeattime = now(), status = 'up', cleartime = NULL,
        login = EXCLUDED.login
    RETURNING bladeid INTO b;
    FOR r IN SELECT jid, cid, iid FROM invocations WHERE bladeid = b AND current AND stoptime IS NULL LOOP
        PERFORM tractor_requeue(r.jid, r.cid, r.iid);
    END LOOP;
    UPDATE blades SET slotsinuse = 0 WHERE bladeid = b;
    RETURN b;
END $$;

-- Where the engine wakes this blade when work is queued (wakeups.py): its UDP port on its
-- address; NULL, it LISTENs for itself.  Called right after tractor_blade_register_v1.
CREATE OR REPLACE FUNCTION tractor_blade_wakeport_v1(p_blade uuid, p_port integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF session_user <> current_user THEN
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    UPDATE blades SET wakeport = p_port WHERE bladeid = p_blade AND wakeport IS DISTINCT FROM p_port;
END $$;

-- A command running on a blade is taken from it (tq retry, kill, skip, delete of a running task;
-- requeued from a silent blade): its blade hears at once (tractor_check with the blade's id)
-- rather than at its next heartbeat, which tells it what to stop (blade/worker.py; the engine
-- relays to blades that wait on a port, wakeups.py).  tq reloadconfig --blade sends '*'.
CREATE OR REPLACE FUNCTION tractor_revoke_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tractor_check', OLD.bladeid::text);
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER invocations_revoke_notify
AFTER UPDATE OF current ON invocations
FOR EACH ROW
WHEN (OLD.current AND NOT NEW.current AND OLD.stoptime IS NULL AND OLD.bladeid IS NOT NULL)
EXECUTE FUNCTION tractor_revoke_notify();

-- Lock order.  Work that meets takes rows in one order where it can: job rows (by jid) before
-- the rows of their invocations, and a blade's row last.  A blade's cycle (its reports and
-- its claim, one transaction: db/dispatch.py finish_and_claim) opens with
-- tractor_cycle_begin_v1, which defers every change to its blade's slotsinuse until
-- tractor_cycle_end_v1 writes them at once, last: so a blade never holds its own row while
-- it waits for a job that an operator's batch (tq retry of tasks running there) holds while
-- it waits for that blade's row.  What still meets in both orders (a claim takes jobs in
-- priority order, not by jid) is broken by PostgreSQL and run again by the client
-- (db/rerun.py).  Outside a cycle (the engine's housekeeping, older blades) each change is
-- written at once.
CREATE OR REPLACE FUNCTION tractor_slots_change(p_blade uuid, p_delta integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_delta = 0 THEN
        RETURN;
    END IF;
    IF current_setting('tractor.cycle_blade', true) = p_blade::text THEN
        PERFORM set_config('tractor.cycle_slots',
                           (current_setting('tractor.cycle_slots')::integer + p_delta)::text, true);
    ELSE
        UPDATE blades SET slotsinuse = greatest(slotsinuse + p_delta, 0) WHERE bladeid = p_blade;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION tractor_cycle_begin_v1(p_blade uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    IF current_setting('tractor.cycle_blade', true) = p_blade::text THEN
        RETURN;  -- begun already (a heartbeat or exit inside a cycle): one cycle
    END IF;
    -- (transaction-local: gone at commit or rollback)
    PERFORM set_config('tractor.cycle_blade', p_blade::text, true);
    PERFORM set_config('tractor.cycle_slots', '0', true);
END $$;

-- Ends the cycle: the blade's slots change by what its reports freed and its claim took.
CREATE OR REPLACE FUNCTION tractor_cycle_end_v1(p_blade uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    delta integer := coalesce(nullif(current_setting('tractor.cycle_slots', true), '')::integer, 0);
BEGIN
    IF session_user <> current_user THEN
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    IF current_setting('tractor.cycle_blade', true) IS DISTINCT FROM p_blade::text THEN
        RETURN;  -- no cycle of this blade began: its changes were written as they came
    END IF;
    PERFORM set_config('tractor.cycle_blade', '', true);
    PERFORM tractor_slots_change(p_blade, delta);
END $$;

-- A blade is alive: its heartbeat time renews the leases of all the
-- invocations it runs (tractor_housekeep_v1), and its metrics are recorded.
-- p_jids, p_cids, p_iids are the commands it holds, running or not yet
-- reported.  Its other current invocations older than a few seconds are not
-- running anywhere (a claim whose answer was lost with the connection, say):
-- they are queued again.  Returns the invocations it should be running; any
-- other process it has (retried, killed or requeued meanwhile) it must stop.
-- In the usual case it writes the blade's row alone, in place (no indexed
-- column changes): a heartbeat needs no new space, on a full disk too.
CREATE OR REPLACE FUNCTION tractor_heartbeat_v1(p_blade uuid, p_metrics jsonb, p_loadavg real, p_availmemory real,
                                     p_availdisk real, p_jids bigint[], p_cids integer[], p_iids integer[])
RETURNS TABLE (jid bigint, cid integer, iid integer)
-- (enable_seqscan off: see tractor_claim_v3)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    r record;
    begun boolean := false;  -- a cycle begun (tractor_cycle_begin_v1): only when a command moves
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    -- commands it still runs whose lease ran out while it could not reach the database: its
    -- own again when nobody has taken them since
    IF cardinality(p_jids) > 0 THEN
        FOR r IN SELECT i.jid, i.cid, i.iid FROM invocations i
                 JOIN unnest(p_jids, p_cids, p_iids) AS h(jid, cid, iid) ON (h.jid, h.cid, h.iid) = (i.jid, i.cid, i.iid)
                 WHERE i.lapsed AND NOT i.current AND i.bladeid = p_blade LOOP
            IF NOT begun THEN
                PERFORM tractor_cycle_begin_v1(p_blade);
                begun := true;
            END IF;
            PERFORM tractor_unrequeue(r.jid, r.cid, r.iid, p_blade);
        END LOOP;
    END IF;
    -- what it runs (returned), but what it does not hold and was claimed over a few seconds ago
    -- is queued again; one statement for both (an idle blade's heartbeat is two)
    FOR r IN SELECT i.jid, i.cid, i.iid,
                    i.starttime < now() - interval '5 seconds'
                    AND (i.jid, i.cid, i.iid) NOT IN (SELECT * FROM unnest(p_jids, p_cids, p_iids)) AS gone
             FROM invocations i
             WHERE i.bladeid = p_blade AND i.current AND i.stoptime IS NULL LOOP
        IF r.gone THEN
            IF NOT begun THEN
                PERFORM tractor_cycle_begin_v1(p_blade);
                begun := true;
            END IF;
            PERFORM tractor_requeue(r.jid, r.cid, r.iid);
        ELSE
            jid := r.jid;
            cid := r.cid;
            iid := r.iid;
            RETURN NEXT;
        END IF;
    END LOOP;
    -- the blade's own row last (see tractor_slots_change)
    IF begun THEN
        PERFORM tractor_cycle_end_v1(p_blade);
    ELSE
        -- nothing moved: the heartbeat time and metrics need not wait for the disk.  A crash
        -- loses at most the last fraction of a second of them, which costs nothing: no lease
        -- is judged until the restarted server has run a lease long (tractor_housekeep_v1).
        -- (A quarter less of the server's CPU a heartbeat, half its wall time; it is its
        -- own transaction, as blades send it.)
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    UPDATE blades SET heartbeattime = now(), metrics = p_metrics, loadavg = p_loadavg,
                      availmemory = p_availmemory, availdisk = p_availdisk, status = 'up'
    WHERE bladeid = p_blade;
END $$;

-- The blade reload generation (db/reload.py: tq reloadconfig --blade), which heartbeats answer
-- and a blade's beat must have acted on.  (plpgsql, as tractor_ready_for: a SQL function
-- whose body has a subquery is planned again at every call, here every heartbeat.)
CREATE OR REPLACE FUNCTION tractor_blade_generation() RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((SELECT p.value FROM params p WHERE p.name = 'reload-blade'), '0');
END $$;

-- tractor_heartbeat_v1, and the blade reload generation in a last row of its own (jid NULL):
-- a heartbeat is one statement.
CREATE OR REPLACE FUNCTION tractor_heartbeat_v2(p_blade uuid, p_metrics jsonb, p_loadavg real, p_availmemory real,
                                     p_availdisk real, p_jids bigint[], p_cids integer[], p_iids integer[])
RETURNS TABLE (jid bigint, cid integer, iid integer, reload text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT h.jid, h.cid, h.iid, NULL::text
                 FROM tractor_heartbeat_v1(p_blade, p_metrics, p_loadavg, p_availmemory, p_availdisk,
                                           p_jids, p_cids, p_iids) AS h;
    RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::integer, tractor_blade_generation();
END $$;

-- Whether anything is queued that a blade matching the service expressions p_svcids on host
-- p_host could take: a ready command of one of them, or a local Cmd spooled from p_host.  Asked
-- by tractor_claim_v3 before it walks any job and by an idle blade's heartbeat
-- (tractor_work_queued): one answer for both, from the ready queue's indexes.  (min(), not
-- EXISTS: the plan kept for every blade would be a scan that stops at its first row, cheap where
-- most rows match and a scan of the whole queue where none does.)
-- plpgsql, so its plan is kept for the session: as a SQL function (whose body has subqueries,
-- so no caller can take it into its own statement) it was planned again at every claim and
-- every idle heartbeat that asks for work: 0.1 ms of the server's time each.
CREATE OR REPLACE FUNCTION tractor_ready_for(p_svcids integer[], p_host text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT min(q.svcid) FROM ready q WHERE q.svcid = ANY(p_svcids)) IS NOT NULL
        OR EXISTS (SELECT 1 FROM ready q WHERE q.local AND q.spoolhost = p_host);
END $$;

-- Whether a claim could find anything for a blade that matches the service expressions
-- p_svcids on host p_host: something queued for it (tractor_ready_for), or a service
-- expression the blade has not read yet (ids above p_svc_after, or in p_svc_holes:
-- db/dispatch.py ServiceCache).  False: a claim now would come back empty.
CREATE OR REPLACE FUNCTION tractor_work_queued(p_svcids integer[], p_host text, p_svc_after integer,
                                               p_svc_holes integer[]) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN tractor_ready_for(p_svcids, p_host)
        OR EXISTS (SELECT 1 FROM service_exprs s WHERE s.svcid > p_svc_after)
        OR (cardinality(p_svc_holes) > 0 AND EXISTS (SELECT 1 FROM service_exprs s WHERE s.svcid = ANY(p_svc_holes)));
END $$;

-- tractor_heartbeat_v2, and for a blade that would claim now (p_svcids not NULL: the service
-- expressions it matches, as it passes them to tractor_claim_v3; p_host, p_svc_after and
-- p_svc_holes as for tractor_work_queued) whether a claim could find anything: `work`, in the
-- last row (jid NULL) with the reload generation; NULL when not asked.  With engine wake-ups an
-- idle blade's heartbeat is also its poll: it claims when told there is work (blade/worker.py).
-- A blade that holds nothing and runs nothing (an idle blade: most heartbeats of a large farm)
-- costs one statement, its row written in place without waiting for the disk (as in
-- tractor_heartbeat_v1, where anything it holds or runs still goes).
CREATE OR REPLACE FUNCTION tractor_heartbeat_v3(p_blade uuid, p_metrics jsonb, p_loadavg real, p_availmemory real,
                                     p_availdisk real, p_jids bigint[], p_cids integer[], p_iids integer[],
                                     p_svcids integer[], p_host text, p_svc_after integer, p_svc_holes integer[])
RETURNS TABLE (jid bigint, cid integer, iid integer, reload text, work boolean)
-- (enable_seqscan off: see tractor_claim_v3)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off AS $$
#variable_conflict use_column
BEGIN
    IF cardinality(p_jids) = 0 THEN
        IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
            PERFORM tractor_guard_blade(p_blade);
        END IF;
        -- nothing held and nothing current: nothing to renew, requeue or take back; its own row
        -- alone (first and last: no other row is locked), and nothing moved (tractor_heartbeat_v1)
        UPDATE blades b SET heartbeattime = now(), metrics = p_metrics, loadavg = p_loadavg,
                            availmemory = p_availmemory, availdisk = p_availdisk, status = 'up'
        WHERE b.bladeid = p_blade
          AND NOT EXISTS (SELECT 1 FROM invocations i
                          WHERE i.bladeid = p_blade AND i.current AND i.stoptime IS NULL)
        RETURNING tractor_blade_generation() INTO reload;
        IF FOUND THEN
            PERFORM set_config('synchronous_commit', 'off', true);
        END IF;
    END IF;
    IF reload IS NULL THEN  -- it holds or runs something: the whole heartbeat
        RETURN QUERY SELECT h.jid, h.cid, h.iid, NULL::text, NULL::boolean
                     FROM tractor_heartbeat_v1(p_blade, p_metrics, p_loadavg, p_availmemory, p_availdisk,
                                               p_jids, p_cids, p_iids) AS h;
        reload := tractor_blade_generation();
    END IF;
    -- the last row (jid NULL): the reload generation, and whether there is work when asked
    IF p_svcids IS NOT NULL THEN
        work := tractor_work_queued(p_svcids, p_host, p_svc_after, p_svc_holes);
    END IF;
    RETURN NEXT;
END $$;

-- The idle heartbeats tractor-engine gathered from blades' datagrams (BladeWakeups = "engine":
-- wakeups.py Beats), written in one statement: a farm's idle blades cost the server one call
-- every half second, not one each.  p_beats: a JSON array of {bladeid, addr (the datagram's
-- source address), metrics, loadavg, availmemory, availdisk, reload (the blade reload
-- generation the blade acted on), svcids (NULL: it would not claim now), host, after (the
-- highest service expression id it has read)}; p_local: the engine host's own addresses (a
-- datagram from a loopback address comes from a blade on the engine's host).
-- A beat renews only a blade that is up, holds and runs nothing (no lease to extend: a forged
-- datagram cannot keep a blade's work), sent from the address the blade registered, whose row
-- no other transaction holds just then, and that has acted on the current reload generation;
-- the answer is then 'ok', or 'work' when it asked and a claim could find something
-- (tractor_work_queued without holes: a blade with holes beats through the database).  Any
-- other beat is answered 'check': the blade heartbeats through the database at once, where
-- whatever is the matter (a claim it never heard of, a reload, a row marked lost) is settled.
-- The site's role alone calls it (the engine).
CREATE OR REPLACE FUNCTION tractor_blade_beats_v1(p_beats jsonb, p_local text[])
RETURNS TABLE (bladeid uuid, addr text, answer text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    gen text := tractor_blade_generation();
BEGIN
    IF NOT tractor_is_site() THEN
        RAISE EXCEPTION 'only tractor-engine (the site''s role) writes blades'' beats'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- nothing waits for the disk: a beat lost in a crash is a blade's row older by a beat
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH beat AS (  -- (one per blade and address: a beat from elsewhere does not hide the blade's own)
        SELECT DISTINCT ON (x.bladeid, x.addr) x.*
        FROM jsonb_to_recordset(p_beats)
            AS x(bladeid uuid, addr text, metrics jsonb, loadavg real, availmemory real, availdisk real,
                 reload text, svcids integer[], host text, after integer)
    ), mine AS (  -- the rows a beat may renew, in one order, passing over rows held just then
        SELECT b.bladeid, x.addr FROM blades b JOIN beat x ON x.bladeid = b.bladeid
        WHERE b.status = 'up' AND x.reload = gen
          AND (b.ipaddr = x.addr
               OR (x.addr LIKE '127.%' AND (b.ipaddr LIKE '127.%' OR b.ipaddr = ANY(p_local))))
          AND NOT EXISTS (SELECT 1 FROM invocations i
                          WHERE i.bladeid = b.bladeid AND i.current AND i.stoptime IS NULL)
        ORDER BY b.bladeid
        FOR NO KEY UPDATE OF b SKIP LOCKED
    ), renewed AS (
        UPDATE blades b SET heartbeattime = now(), metrics = x.metrics, loadavg = x.loadavg,
                            availmemory = x.availmemory, availdisk = x.availdisk
        FROM beat x JOIN mine m ON m.bladeid = x.bladeid AND m.addr = x.addr
        WHERE b.bladeid = x.bladeid
        RETURNING b.bladeid, x.addr
    )
    SELECT x.bladeid, x.addr,
           CASE WHEN r.bladeid IS NULL THEN 'check'
                WHEN x.svcids IS NOT NULL AND tractor_work_queued(x.svcids, x.host, x.after, '{}') THEN 'work'
                ELSE 'ok' END
    FROM beat x LEFT JOIN renewed r ON r.bladeid = x.bladeid AND r.addr = x.addr;
END $$;

-- The jobs a claim may take work from, whichever blade claims (each claim adds its own service
-- expressions, host and NIMBY): live, with something ready (or postscripts to run), not paused,
-- delayed (-after) or waiting for -afterjids, under their -maxactive.  A plain view: the planner
-- inlines it into each claim's cursor, where the partial indexes on jobs still serve its order.
CREATE OR REPLACE VIEW tractor_dispatchable_jobs AS
SELECT jb.jid, jb.svcids, jb.owner, jb.spoolhost, jb.tierpri, jb.priority, jb.numactive, jb.dispatchtime
FROM jobs jb
WHERE jb.deletetime IS NULL AND jb.phase <> 'finished'
  AND (jb.numready > 0 OR jb.phase = 'postscript')
  AND jb.pausetime IS NULL
  AND (jb.aftertime IS NULL OR jb.aftertime <= now())
  AND (jb.maxactive = 0 OR jb.numactive < jb.maxactive)
  AND (cardinality(jb.afterjids) = 0 OR NOT EXISTS (
        SELECT 1 FROM jobs a WHERE a.jid = ANY(jb.afterjids) AND a.phase <> 'finished' AND a.deletetime IS NULL));

-- A claim takes the row of the job it claims from (its counters change): `p_wait` false, only
-- if no other transaction holds it (a claim or a report, until its commit): a job whose row is
-- held is passed over for the next rather than queued behind, so a thousand blades do not wait
-- in line for the first job's row; true (the claim's second walk), waiting for it.
CREATE OR REPLACE FUNCTION tractor_take_job_row(p_jid bigint, p_wait boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF p_wait THEN
        PERFORM 1 FROM jobs WHERE jobs.jid = p_jid FOR NO KEY UPDATE;
    ELSE
        PERFORM 1 FROM jobs WHERE jobs.jid = p_jid FOR NO KEY UPDATE SKIP LOCKED;
    END IF;
    RETURN FOUND;
END $$;

-- Whether a claim may take command `x` in a batch (tractor_claim_v3, "Plain commands"): it
-- takes one slot (-atleast/-atmost 1 or unset), binds no servers (a local Cmd with a -service)
-- and refers to none (-refersto), counts against no limit of the site's (`p_limits`: their
-- names; its -tags and its program's name), and has no % sequence that may name a job's ids
-- (the walk looks those up, command by command).
CREATE OR REPLACE FUNCTION tractor_plain_command(x commands, p_limits text[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(x.minslots, 1) <= 1 AND coalesce(x.maxslots, x.minslots, 1) <= 1
           AND x.refersto IS NULL AND NOT (x.local AND x.service <> '')
           AND NOT (tractor_limit_tags(x.tags, x.argv[1]) && p_limits)
           AND strpos(concat(array_to_string(x.argv, ' '), x.msg, x.expand,
                             array_to_string(x.resumewhile, ' ')), '%') = 0
$$;

-- Claim up to p_slots slots of ready commands for a blade.  p_svcids are
-- the service expressions the blade matches (it evaluates them itself);
-- p_host is its host name, for local Cmds of jobs spooled from there.
-- Order: tier priority, job priority, then the site's SchedulingMode
-- (params): P+FIFO job id (spool order); P+ATCL fewest active commands
-- first; P+RR the job the claim turned to longest ago first, one command per
-- job on a first pass over the jobs and as many as fit on a second;
-- P+ATCL+RR both.  Within a job by cid when the blade matches every service
-- expression of the job; else by expression, then cid.
-- A job whose row another transaction holds just then (another blade's claim or report, until
-- it commits: a millisecond or two) is passed over for the next one: a thousand blades do not
-- queue behind the first job's row, and the order holds among the jobs whose rows are free.
-- Only when that leaves the claim empty does it wait for those rows (so a claim never comes
-- back empty for a moment's lock while work is queued for the blade).
-- Paused, delayed (-after), waiting (-afterjids), deleted and finished jobs
-- are skipped, as are jobs at their -maxactive and, on a NIMBY blade, jobs
-- from other hosts ('1') or other users (a user name).  A command whose
-- tags name a full limit stays ready (tractor_limit_refusal, limits.sql);
-- after LIMIT_SKIPS such commands the claim leaves the job's service
-- expression (the job, when it walks all of them at once) for this pass.
--
-- Slots (bindings.sql): -atleast N -atmost M is N..M slots, on this blade
-- alone with -samehost (or when M is 1), else this blade's free slots and,
-- short of M, slots lent by other blades that match the command's service
-- (%h lists them); the blade that claims runs the process.  A local Cmd
-- with a -service of its own (netrender style) runs its client on its
-- spooling host's blade in one slot, whatever that blade's keys, and binds
-- N..M server slots (default 1) of blades matching that service, this one
-- included when it matches; with -samehost all on one blade.  A blade that
-- lends slots to a claim just then claims nothing on that pass.
--
-- Shared servers (-refersto a Task with -service and -id): the first
-- referring command that is next checks the server out (checkouts), one
-- slot of a blade matching the Task's service: a RemoteCmd on the claiming
-- blade, where it runs in that slot; a local Cmd (its client in a slot of
-- its spooling host's blade) on this blade when it matches and has a second
-- free slot, else on another blade's.  Later referring RemoteCmds run only
-- on that blade, in the check-out's slot; %h names it.  A check-out whose
-- blade is no longer up is dropped and made again.
--
-- FOR UPDATE SKIP LOCKED: two blades never get one command.
--
-- Returns, for each command, the slots it holds on this blade (numslots) and, for a command
-- with bindings, the blades bound once per slot (hosts: %h) and their slots (boundslots: %n);
-- NULL for the others (this blade's host and numslots).  Then what launching it takes: the
-- fields of tractor_launch_v1, its task's %q (quality), what it -refersto, and the job's ids
-- a % sequence may name (idrefs: shared servers checked out; cmdrefs: the hosts of each
-- command with an -id).  They come from the rows the claim reads and writes anyway: a query
-- joining the launch view to the claim's answer cost a fifth of a claim.
CREATE OR REPLACE FUNCTION tractor_claim_v3(p_blade uuid, p_svcids integer[], p_host text, p_slots integer)
RETURNS TABLE (jid bigint, tid integer, cid integer, iid integer, numslots integer, hosts text[],
               boundslots integer,
               argv text[], local boolean, expand text, msg text, cmd_envkey text[],
               minrunsecs double precision, maxrunsecs double precision, retryrcodes integer[],
               resumewhile text[], resumepin boolean, minslots integer, maxslots integer, runtype text,
               owner text, jobtitle text, projects text[], spoolcwd text, spoolhost text, dirmap jsonb,
               assignments jsonb, job_envkey text[], priority double precision,
               tasktitle text, retrycount integer, resumecount integer, recover boolean,
               quality real, refersto text, idrefs jsonb, cmdrefs jsonb)
-- enable_seqscan off: every lookup here has its index, and a blade's connection keeps the plans
-- it made first for days.  Made while a table was small (a new site, or the invocations of a
-- farm's first hour), a plan scans the whole table, and keeps scanning it as it grows: the
-- claims and finishes of 5,000 commands on a new site read 10,000 invocation rows a cycle.
-- enable_bitmapscan off too: the walk for a job's next ready command (ORDER BY cid LIMIT 1) was
-- planned on such statistics as a bitmap scan of all the job's ready rows and a sort, where the
-- index's order gives the first at once (10,000 rows read for each command claimed from a job of
-- 10,000).
LANGUAGE plpgsql ROWS 4 SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off SET enable_bitmapscan = off SET plan_cache_mode = auto SET enable_sort = on AS $$
#variable_conflict use_column
DECLARE
    LIMIT_SKIPS CONSTANT integer := 16;
    jobs_c refcursor;
    j record;
    s integer;  -- the expression of the command at hand
    walk integer;  -- the expression walked (NULL: all of the job's)
    svcs integer[];
    local_only boolean;
    r record;
    c record;
    last_cid integer;
    own integer;
    serve integer;
    co record;
    co_blade uuid;
    co_name text;
    co_take integer;
    b_ids uuid[];
    b_names text[];
    b_slots integer[];
    lent_total integer;
    refused integer;
    lease integer;
    mode text;
    limit_names text[];
    moved boolean;  -- the blade matches other expressions than at its last claim
    v_retry integer;
    v_resume integer;
    v_title text;  -- the claimed command's task: its title, whether it recovers, its last subtask
    v_recover boolean;
    v_last integer;
    jl record;  -- the claimed command's job: what its launch takes
    rr boolean;
    atcl boolean;
    pass integer;
    took integer;
    free integer;
    used integer := 0;
    bname text;
    bnimby text;
    job_full boolean;
    job_done boolean;
    held_jid bigint;  -- the job whose row this claim has locked last (its own, or its cycle's)
    skipped boolean;  -- a job with work for this blade was passed over: its row was held
    waiting boolean := false;  -- the walk again, waiting for the rows of such jobs
    total integer := 0;
    -- a batch of plain commands claimed at once (see "Plain commands" below), in cid order
    q_cids integer[];
    q_tids integer[];
    q_ctids tid[];  -- their ready rows (locked by this claim: they stay where they are)
    q_iids integer[];
    q_retry integer[];
    q_resume integer[];
    q_title text[];
    q_recover boolean[];
    q_last integer[];
    q_n integer;
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    -- the blade, the site's settings and the limits' names in one statement (a statement's
    -- start-up is most of a claim's cost)
    SELECT b.name, b.nimby, b.svcids IS DISTINCT FROM p_svcids,
           coalesce((SELECT p.value FROM params p WHERE p.name = 'SchedulingMode'), 'P+FIFO'),
           coalesce((SELECT p.value::integer FROM params p WHERE p.name = 'BladeLeaseSecs'), 30),
           ARRAY(SELECT l.name FROM limits l)
    INTO bname, bnimby, moved, mode, lease, limit_names FROM blades b WHERE b.bladeid = p_blade;
    IF NOT FOUND THEN
        IF p_slots <= 0 THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'no blade %', p_blade USING ERRCODE = 'no_data_found';
    END IF;
    -- whom a multi-host command may borrow from: the expressions each blade matched last
    IF moved THEN
        UPDATE blades SET svcids = p_svcids WHERE bladeid = p_blade;
    END IF;
    IF p_slots <= 0 THEN
        RETURN;
    END IF;
    -- another claim is borrowing this blade's slots just now: nothing on this pass
    IF NOT tractor_blade_try_lock(p_blade) THEN
        RETURN;
    END IF;
    free := p_slots - tractor_blade_lent(p_blade);  -- the blade counts what it runs; not what it lends
    -- (commands referring to a server checked out here run in its slot, even with none free)
    -- (two tests: as one expression with the subquery, PostgreSQL planned it again at every claim)
    IF free <= 0 THEN
        IF NOT EXISTS (SELECT 1 FROM checkouts co WHERE co.bladeid = p_blade AND co.active) THEN
            RETURN;
        END IF;
    END IF;
    -- nothing queued that this blade could take (an idle blade's poll on a farm whose work needs
    -- other keys): answered by the ready queue's indexes, before any walk over the jobs
    IF NOT tractor_ready_for(p_svcids, p_host) THEN
        RETURN;
    END IF;
    rr := mode LIKE '%RR%';
    atcl := mode LIKE '%ATCL%';
    LOOP  -- (a second time only when every job with work was passed over for its held row)
    skipped := false;
    FOR pass IN 1 .. CASE WHEN rr THEN 2 ELSE 1 END LOOP
        took := 0;
        -- the same jobs either way; P+FIFO walks jobs_dispatch_idx and stops early
        IF NOT rr AND NOT atcl THEN
            OPEN jobs_c FOR
                SELECT jb.jid, jb.svcids, jb.owner, jb.spoolhost FROM tractor_dispatchable_jobs jb
                -- a job spooled from here may have local Cmds for this blade whatever its keys
                WHERE (jb.svcids && p_svcids OR jb.spoolhost = p_host)
                  -- NIMBY: '' any job; '1' only jobs spooled from this host; else only that user's
                  AND (bnimby = '' OR (bnimby = '1' AND jb.spoolhost = p_host) OR jb.owner = bnimby)
                ORDER BY jb.tierpri DESC, jb.priority DESC, jb.jid;
        ELSIF NOT atcl THEN
            -- P+RR: the job served longest ago first, walking jobs_rr_idx
            OPEN jobs_c FOR
                SELECT jb.jid, jb.svcids, jb.owner, jb.spoolhost FROM tractor_dispatchable_jobs jb
                WHERE (jb.svcids && p_svcids OR jb.spoolhost = p_host)
                  AND (bnimby = '' OR (bnimby = '1' AND jb.spoolhost = p_host) OR jb.owner = bnimby)
                ORDER BY jb.tierpri DESC, jb.priority DESC, jb.dispatchtime NULLS FIRST, jb.jid;
        ELSE
            -- P+ATCL (+RR): fewest active commands first; their counts change at every claim, so
            -- this order is sorted at each claim
            OPEN jobs_c FOR
                SELECT jb.jid, jb.svcids, jb.owner, jb.spoolhost FROM tractor_dispatchable_jobs jb
                WHERE (jb.svcids && p_svcids OR jb.spoolhost = p_host)
                  AND (bnimby = '' OR (bnimby = '1' AND jb.spoolhost = p_host) OR jb.owner = bnimby)
                ORDER BY jb.tierpri DESC, jb.priority DESC, jb.numactive,
                         CASE WHEN rr THEN jb.dispatchtime END NULLS FIRST, jb.jid;
        END IF;
        LOOP
            FETCH jobs_c INTO j;
            EXIT WHEN NOT FOUND;
            job_full := false;
            job_done := false;
            -- a blade that matches every expression of the job walks its ready commands once, in
            -- cid order (NULL: any expression); else one expression after the other, so the walk
            -- never steps over commands of expressions it does not match (nor, per expression,
            -- over the dead index entries of one whose commands were all taken)
            IF j.svcids <@ p_svcids THEN
                svcs := ARRAY[NULL]::integer[];
            ELSE
                svcs := ARRAY(SELECT x FROM unnest(j.svcids) AS x
                              WHERE x = ANY(p_svcids) OR j.spoolhost = p_host ORDER BY x);
            END IF;
            FOREACH walk IN ARRAY svcs LOOP
                -- an expression this blade does not match: only local Cmds that bind servers
                local_only := walk IS NOT NULL AND NOT (walk = ANY(p_svcids));
                last_cid := 0;
                refused := 0;
                q_n := 0;
                -- Plain commands (tractor_plain_command: one slot, no servers, no limit, no %
                -- sequence to look up) are claimed a batch at a time: the job's first `free`
                -- ready commands, as far as they are all plain, in a fixed number of statements
                -- (about ten a command one by one, and each statement's start is most of its
                -- cost).  They get exactly what the walk below gives each one; the walk then
                -- goes on after them (with what is left, and from the first that is not plain).
                -- The batch's statements keep one plan each (plan_cache_mode force_generic_plan):
                -- left to choose, PostgreSQL plans statements that take arrays again at every
                -- call, which made a batch of two cost more than the walk.  Those plans are index
                -- lookups whatever the statistics they were made on (enable_seqscan off, and
                -- enable_sort off here).  Both settings are put back after the batch (and by the
                -- function's SET clauses at its end).
                IF NOT rr AND NOT local_only AND free >= 2 THEN
                    -- the job's row first: then the batch locks no ready rows of a job it cannot
                    -- take them from (other blades' claims would pass them over until this one ends)
                    IF held_jid IS DISTINCT FROM j.jid THEN
                        IF NOT tractor_take_job_row(j.jid, waiting) THEN
                            skipped := true;
                            job_full := true;
                            EXIT;
                        END IF;
                        held_jid := j.jid;
                    END IF;
                    PERFORM set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_sort', 'off', true);
                    -- the job's first `free` ready rows for this blade, locked (as the walk below
                    -- finds them, one statement for each kind of walk)
                    IF walk IS NULL THEN
                        SELECT array_agg(q.cid ORDER BY q.cid), array_agg(q.tid ORDER BY q.cid),
                               array_agg(q.ctid ORDER BY q.cid)
                        INTO q_cids, q_tids, q_ctids
                        FROM (SELECT q.cid, q.tid, q.ctid FROM ready q
                              WHERE q.jid = j.jid AND q.cid > last_cid AND q.svcid IS NOT NULL
                                AND (NOT q.local OR q.spoolhost = p_host)
                                AND (q.pinblade IS NULL OR q.pinblade = p_blade)
                              ORDER BY q.cid LIMIT free
                              FOR UPDATE SKIP LOCKED) q;
                    ELSE
                        SELECT array_agg(q.cid ORDER BY q.cid), array_agg(q.tid ORDER BY q.cid),
                               array_agg(q.ctid ORDER BY q.cid)
                        INTO q_cids, q_tids, q_ctids
                        FROM (SELECT q.cid, q.tid, q.ctid FROM ready q
                              WHERE q.jid = j.jid AND q.svcid = walk AND q.cid > last_cid
                                AND (NOT q.local OR q.spoolhost = p_host)
                                AND (q.pinblade IS NULL OR q.pinblade = p_blade)
                              ORDER BY q.cid LIMIT free
                              FOR UPDATE SKIP LOCKED) q;
                    END IF;
                    -- of them, the plain ones before the first that is not
                    SELECT coalesce(array_agg(k.cid ORDER BY k.cid), '{}'), coalesce(array_agg(k.tid ORDER BY k.cid), '{}'),
                           coalesce(array_agg(k.ctid ORDER BY k.cid), '{}')
                    INTO q_cids, q_tids, q_ctids
                    FROM (SELECT b.cid, b.tid, b.ctid,
                                 bool_and(tractor_plain_command(x.x, limit_names) AND b.tid > 0)
                                     OVER (ORDER BY b.cid) AS run
                          FROM unnest(q_cids, q_tids, q_ctids) AS b(cid, tid, ctid)
                          CROSS JOIN LATERAL (SELECT c FROM commands c
                                              WHERE c.jid = j.jid AND c.cid = b.cid OFFSET 0) x(x)) k
                    WHERE k.run;
                    q_n := cardinality(q_cids);
                    -- (a task has one command ready at a time; two would be left to the walk)
                    IF q_n > 0 AND q_n = (SELECT count(DISTINCT t) FROM unnest(q_tids) AS t) THEN
                        -- a job with -maxactive: one at a time, by the walk
                        UPDATE jobs SET numactive = numactive + q_n, numready = numready - q_n,
                                        starttime = coalesce(starttime, now())
                        WHERE jobs.jid = j.jid AND maxactive = 0
                        RETURNING jobs.owner, jobs.title, jobs.projects, jobs.spoolcwd, jobs.spoolhost, jobs.dirmap,
                                  jobs.assignments, jobs.envkey, jobs.priority INTO jl;
                        IF FOUND THEN
                            -- (Every row by its key, and the key's range beside `= ANY`, or by its ctid
                            -- (the ready rows this claim has locked), or in a LATERAL subquery kept
                            -- apart by OFFSET 0: planned on a new site's statistics, `= ANY` alone
                            -- and joins with the arrays read all the job's rows, 0.35 ms a command
                            -- in a job of 5,000.)
                            WITH t AS (
                                UPDATE tasks SET state = 'active', statetime = now(), activetime = now(),
                                                 currcid = q_cids[array_position(q_tids, tasks.tid)],
                                                 checkpointed = false
                                WHERE tasks.jid = j.jid AND tasks.tid = ANY(q_tids)
                                  AND tasks.tid BETWEEN (SELECT min(t) FROM unnest(q_tids) AS t)
                                                    AND (SELECT max(t) FROM unnest(q_tids) AS t)
                                RETURNING tasks.currcid AS cid, tasks.retrycount, tasks.resumecount, tasks.title,
                                          tasks.recover, tasks.lasttid)
                            SELECT array_agg(t.retrycount ORDER BY t.cid), array_agg(t.resumecount ORDER BY t.cid),
                                   array_agg(t.title ORDER BY t.cid), array_agg(t.recover ORDER BY t.cid),
                                   array_agg(t.lasttid ORDER BY t.cid)
                            INTO q_retry, q_resume, q_title, q_recover, q_last FROM t;
                            DELETE FROM ready WHERE ready.ctid = ANY(q_ctids);
                            UPDATE commands SET state = 'active', statetime = now()
                            WHERE commands.jid = j.jid AND commands.cid BETWEEN q_cids[1] AND q_cids[q_n]
                              AND commands.cid = ANY(q_cids);
                            WITH ins AS (
                                INSERT INTO invocations AS i (jid, tid, cid, iid, bladeid, bladename, numslots, leasetime,
                                                              retrycount, resumecount, limits, lent)
                                SELECT j.jid, b.tid, b.cid,
                                       coalesce((SELECT max(v.iid) FROM invocations v
                                                 WHERE v.jid = j.jid AND v.cid = b.cid), 0) + 1,
                                       p_blade, bname, 1, now() + make_interval(secs => lease),
                                       coalesce(b.retry, 0), coalesce(b.resume, 0),
                                       tractor_limit_tags(x.tags, x.argv[1]), 0
                                FROM unnest(q_tids, q_cids, q_retry, q_resume) AS b(tid, cid, retry, resume)
                                CROSS JOIN LATERAL (SELECT c.tags, c.argv FROM commands c
                                                    WHERE c.jid = j.jid AND c.cid = b.cid OFFSET 0) x
                                RETURNING i.cid, i.iid)
                            SELECT array_agg(ins.iid ORDER BY ins.cid) INTO q_iids FROM ins;
                            RETURN QUERY
                                SELECT j.jid, b.tid, b.cid, b.iid, 1, NULL::text[], NULL::integer,
                                       x.argv, x.local, x.expand, x.msg, x.envkey, x.minrunsecs, x.maxrunsecs,
                                       x.retryrcodes, x.resumewhile, x.resumepin, x.minslots, x.maxslots, x.runtype,
                                       jl.owner, jl.title, jl.projects, jl.spoolcwd, jl.spoolhost, jl.dirmap,
                                       jl.assignments, jl.envkey, jl.priority,
                                       b.title, coalesce(b.retry, 0), coalesce(b.resume, 0), coalesce(b.recover, false),
                                       CASE WHEN b.last IS NULL OR b.last <= b.tid THEN 1.0::real
                                            ELSE tractor_quality(j.jid, b.tid) END,
                                       x.refersto, NULL::jsonb, NULL::jsonb
                                FROM unnest(q_tids, q_cids, q_iids, q_retry, q_resume, q_title, q_recover, q_last)
                                     AS b(tid, cid, iid, retry, resume, title, recover, last)
                                CROSS JOIN LATERAL (SELECT c.* FROM commands c
                                                    WHERE c.jid = j.jid AND c.cid = b.cid OFFSET 0) x
                                ORDER BY b.cid;
                            free := free - q_n;
                            used := used + q_n;
                            took := took + q_n;
                            total := total + q_n;
                            last_cid := q_cids[q_n];
                        END IF;
                    END IF;
                    PERFORM set_config('plan_cache_mode', 'auto', true), set_config('enable_sort', 'on', true);
                END IF;
                LOOP
                    EXIT WHEN q_n > 0 AND free <= 0;  -- the batch took every free slot
                    -- (two statements, not one with `walk IS NULL OR`: each keeps a plan of its
                    -- own index, the primary key's cid order or ready_svc_job_idx)
                    IF walk IS NULL THEN
                        SELECT q.cid, q.tid, q.svcid INTO r FROM ready q
                        WHERE q.jid = j.jid AND q.cid > last_cid AND q.svcid IS NOT NULL
                          AND (NOT q.local OR q.spoolhost = p_host)
                          AND (q.pinblade IS NULL OR q.pinblade = p_blade)
                        ORDER BY q.cid LIMIT 1
                        FOR UPDATE SKIP LOCKED;
                    ELSE
                        SELECT q.cid, q.tid, q.svcid INTO r FROM ready q
                        WHERE q.jid = j.jid AND q.svcid = walk AND q.cid > last_cid
                          AND (NOT q.local OR q.spoolhost = p_host)
                          AND (NOT local_only OR q.local)
                          AND (q.pinblade IS NULL OR q.pinblade = p_blade)
                        ORDER BY q.cid LIMIT 1
                        FOR UPDATE SKIP LOCKED;
                    END IF;
                    EXIT WHEN NOT FOUND;
                    last_cid := r.cid;
                    s := r.svcid;
                    SELECT greatest(coalesce(x.minslots, 1), 1) AS need,
                           greatest(coalesce(x.maxslots, x.minslots, 1), coalesce(x.minslots, 1), 1) AS want,
                           x.samehost, x.local AND x.service <> '' AND x.refersto IS NULL AS servers,
                           x.refersto, x.local AS islocal,
                           x.refersto IS NOT NULL AND EXISTS (
                               SELECT 1 FROM tasks st WHERE st.jid = x.jid AND st.id = x.refersto
                                 AND st.service <> '') AS shared,
                           tractor_limit_tags(x.tags, x.argv[1]) AS tags,
                           x.argv, x.expand, x.msg, x.envkey, x.minrunsecs, x.maxrunsecs, x.retryrcodes,
                           x.resumewhile, x.resumepin, x.minslots, x.maxslots, x.runtype
                    INTO c FROM commands x
                    WHERE x.jid = j.jid AND x.cid = r.cid;
                    CONTINUE WHEN local_only AND NOT (c.servers OR c.shared AND c.islocal);
                    co_take := 0;
                    co_blade := NULL;
                    co_name := NULL;
                    -- the slots this blade gives: `own` it holds, `serve` of them bound as %h
                    IF c.shared THEN
                        serve := 0;
                        SELECT k.* INTO co FROM checkouts k JOIN blades bl ON bl.bladeid = k.bladeid
                        WHERE k.jid = j.jid AND k.id = c.refersto AND k.active
                          AND bl.status = 'up' AND bl.heartbeattime > now() - make_interval(secs => lease);
                        IF FOUND THEN
                            co_name := co.bladename;
                            IF c.islocal THEN
                                CONTINUE WHEN free < 1;
                                own := 1;
                            ELSE
                                CONTINUE WHEN co.bladeid <> p_blade;
                                own := 0;  -- in the check-out's slot
                            END IF;
                        ELSE
                            CONTINUE WHEN free < 1;
                            IF c.islocal THEN
                                own := 1;
                                IF NOT local_only AND free >= 2 THEN
                                    co_blade := p_blade;
                                    co_take := 1;
                                ELSE
                                    SELECT o.o_blades[1] INTO co_blade
                                    FROM tractor_borrow_slots(p_blade, s, 1, 1, false, j.owner, j.spoolhost) AS o;
                                    CONTINUE WHEN co_blade IS NULL;
                                END IF;
                            ELSE
                                own := 0;
                                co_blade := p_blade;
                                co_take := 1;
                            END IF;
                            SELECT bl.name INTO co_name FROM blades bl WHERE bl.bladeid = co_blade;
                        END IF;
                    ELSIF c.servers THEN
                        CONTINUE WHEN free < 1;
                        serve := CASE WHEN local_only THEN 0 ELSE least(free - 1, c.want) END;
                        IF c.samehost AND serve < c.need THEN
                            serve := 0;
                        END IF;
                        own := 1 + serve;
                    ELSIF c.samehost OR c.want = 1 THEN
                        CONTINUE WHEN c.need > free;
                        own := least(free, c.want);
                        serve := own;
                    ELSE
                        own := least(free, c.want);
                        serve := own;
                    END IF;
                    IF c.tags && limit_names
                       AND tractor_limit_refusal(j.jid, c.tags, p_blade, bname, true) IS NOT NULL THEN
                        refused := refused + 1;
                        EXIT WHEN refused >= LIMIT_SKIPS;
                        CONTINUE;
                    END IF;
                    -- short of -atmost: other blades' slots (at least what -atleast still needs)
                    b_ids := '{}';
                    b_names := '{}';
                    b_slots := '{}';
                    IF NOT c.shared AND (c.servers OR NOT c.samehost) AND serve < c.want
                       AND NOT (c.samehost AND serve > 0) THEN
                        SELECT o.o_blades, o.o_names, o.o_slots INTO b_ids, b_names, b_slots
                        FROM tractor_borrow_slots(
                            p_blade, s, CASE WHEN c.samehost THEN c.need ELSE greatest(c.need - serve, 0) END,
                            c.want - serve, c.samehost, j.owner, j.spoolhost) AS o;
                    END IF;
                    lent_total := 0;
                    IF cardinality(b_slots) > 0 THEN
                        lent_total := (SELECT sum(x) FROM unnest(b_slots) AS x);
                    END IF;
                    CONTINUE WHEN NOT c.shared AND serve + lent_total < c.need;
                    IF co_blade IS NOT NULL THEN  -- a new check-out (a dropped one ends first)
                        UPDATE checkouts SET active = false, stoptime = now()
                        WHERE checkouts.jid = j.jid AND checkouts.id = c.refersto AND checkouts.active;
                        INSERT INTO checkouts (jid, id, n, bladeid, bladename)
                        SELECT j.jid, c.refersto, coalesce(max(k.n), 0) + 1, co_blade, co_name
                        FROM checkouts k WHERE k.jid = j.jid AND k.id = c.refersto;
                    END IF;
                    v_retry := 0;
                    v_resume := 0;
                    v_title := NULL;
                    v_recover := false;
                    v_last := NULL;
                    IF r.tid > 0 THEN
                        -- the job's row (tractor_take_job_row: passed over when another holds it)
                        IF held_jid IS DISTINCT FROM j.jid THEN
                            IF NOT tractor_take_job_row(j.jid, waiting) THEN
                                skipped := true;
                                job_full := true;
                                EXIT;
                            END IF;
                            held_jid := j.jid;
                        END IF;
                        UPDATE jobs SET numactive = numactive + 1, numready = numready - 1,
                                        starttime = coalesce(starttime, now()),
                                        -- only where an order reads it: elsewhere the update stays HOT
                                        dispatchtime = CASE WHEN rr THEN clock_timestamp() ELSE dispatchtime END
                        WHERE jobs.jid = j.jid AND (maxactive = 0 OR numactive < maxactive)
                        RETURNING jobs.owner, jobs.title, jobs.projects, jobs.spoolcwd, jobs.spoolhost, jobs.dirmap,
                                  jobs.assignments, jobs.envkey, jobs.priority INTO jl;
                        IF NOT FOUND THEN
                            job_full := true;
                            EXIT;
                        END IF;
                        UPDATE tasks SET state = 'active', statetime = now(), activetime = now(), currcid = r.cid,
                                         checkpointed = false
                        WHERE tasks.jid = j.jid AND tasks.tid = r.tid
                        RETURNING tasks.retrycount, tasks.resumecount, tasks.title, tasks.recover, tasks.lasttid
                        INTO v_retry, v_resume, v_title, v_recover, v_last;
                    ELSE
                        SELECT jb.owner, jb.title, jb.projects, jb.spoolcwd, jb.spoolhost, jb.dirmap, jb.assignments,
                               jb.envkey, jb.priority
                        INTO jl FROM jobs jb WHERE jb.jid = j.jid;
                    END IF;
                    DELETE FROM ready WHERE ready.jid = j.jid AND ready.cid = r.cid;
                    UPDATE commands SET state = 'active', statetime = now()
                    WHERE commands.jid = j.jid AND commands.cid = r.cid;
                    jid := j.jid;
                    tid := r.tid;
                    cid := r.cid;
                    numslots := own;
                    INSERT INTO invocations AS i (jid, tid, cid, iid, bladeid, bladename, numslots, leasetime,
                                                  retrycount, resumecount, limits, lent)
                    VALUES (j.jid, r.tid, r.cid,
                            coalesce((SELECT max(x.iid) FROM invocations x WHERE x.jid = j.jid AND x.cid = r.cid), 0) + 1,
                            p_blade, bname, own, now() + make_interval(secs => lease),
                            coalesce(v_retry, 0), coalesce(v_resume, 0), c.tags, lent_total)
                    RETURNING i.iid INTO iid;
                    hosts := NULL;
                    boundslots := NULL;
                    IF c.shared THEN
                        hosts := ARRAY[co_name];
                        boundslots := 1;
                    ELSIF c.servers OR lent_total > 0 THEN
                        hosts := array_fill(bname, ARRAY[serve])
                                 || ARRAY(SELECT x.name FROM unnest(b_names, b_slots) WITH ORDINALITY AS x(name, n, o),
                                                generate_series(1, x.n) AS k ORDER BY x.o, k);
                        boundslots := serve + lent_total;
                        -- %h: this blade's serving slots first, then the lent ones
                        INSERT INTO bindings (jid, cid, iid, seq, bladeid, bladename, slots, lent)
                        SELECT j.jid, r.cid, iid, 0, p_blade, bname, serve, false WHERE serve > 0
                        UNION ALL
                        SELECT j.jid, r.cid, iid, n, b.id, b.name, b.slots, true
                        FROM unnest(b_ids, b_names, b_slots) WITH ORDINALITY AS b(id, name, slots, n);
                    END IF;
                    -- what launching it takes
                    argv := c.argv;
                    local := c.islocal;
                    expand := c.expand;
                    msg := c.msg;
                    cmd_envkey := c.envkey;
                    minrunsecs := c.minrunsecs;
                    maxrunsecs := c.maxrunsecs;
                    retryrcodes := c.retryrcodes;
                    resumewhile := c.resumewhile;
                    resumepin := c.resumepin;
                    minslots := c.minslots;
                    maxslots := c.maxslots;
                    runtype := c.runtype;
                    owner := jl.owner;
                    jobtitle := jl.title;
                    projects := jl.projects;
                    spoolcwd := jl.spoolcwd;
                    spoolhost := jl.spoolhost;
                    dirmap := jl.dirmap;
                    assignments := jl.assignments;
                    job_envkey := jl.envkey;
                    priority := jl.priority;
                    tasktitle := v_title;
                    retrycount := coalesce(v_retry, 0);
                    resumecount := coalesce(v_resume, 0);
                    recover := coalesce(v_recover, false);
                    -- %q: 1.0 for a task without subtasks (most), without a statement
                    quality := CASE WHEN v_last IS NULL OR v_last <= r.tid THEN 1.0
                                    ELSE tractor_quality(j.jid, r.tid) END;
                    refersto := c.refersto;
                    idrefs := NULL;
                    cmdrefs := NULL;
                    -- the job's ids, for a command whose text has a % sequence that may name one
                    IF strpos(concat(array_to_string(c.argv, ' '), c.msg, c.expand,
                                     array_to_string(c.resumewhile, ' ')), '%') > 0 THEN
                        SELECT (SELECT jsonb_object_agg(k.id, jsonb_build_array(k.bladename)) FROM checkouts k
                                WHERE k.jid = j.jid AND k.active),
                               -- the blades of each -id command's latest run (bound ones, or its own)
                               (SELECT jsonb_object_agg(x.id, h.hosts) FROM commands x
                                CROSS JOIN LATERAL (
                                    SELECT coalesce((SELECT jsonb_agg(b.bladename ORDER BY b.seq) FROM bindings b
                                                     WHERE b.jid = i.jid AND b.cid = i.cid AND b.iid = i.iid),
                                                    jsonb_build_array(i.bladename)) AS hosts
                                    FROM invocations i WHERE i.jid = x.jid AND i.cid = x.cid ORDER BY i.iid DESC LIMIT 1) h
                                WHERE x.jid = j.jid AND x.id IS NOT NULL)
                        INTO idrefs, cmdrefs;
                    END IF;
                    free := free - own - co_take;
                    used := used + own;
                    took := took + 1;
                    total := total + 1;
                    RETURN NEXT;
                    -- P+RR, first pass: one command per job, then the next job
                    job_done := rr AND pass = 1;
                    EXIT WHEN free <= 0 OR job_done;
                END LOOP;
                EXIT WHEN free <= 0 OR job_full OR job_done;
            END LOOP;
            EXIT WHEN free <= 0;
        END LOOP;
        CLOSE jobs_c;
        EXIT WHEN free <= 0 OR took = 0;
    END LOOP;
    -- every job with work for it was passed over (their rows held by other claims and reports,
    -- all at once): rather than come back empty, walk again and wait for them, in order
    EXIT WHEN total > 0 OR NOT skipped OR waiting;
    waiting := true;
    END LOOP;
    PERFORM tractor_slots_change(p_blade, used);
END $$;

-- A busy blade's whole cycle in one statement: its reports (the commands that ended:
-- p_jids .. p_checkpoints, one element each), a claim of up to p_slots, and the process ids
-- of what it launched since (p_pid_*).  Rows: one per report (`report`, its position in the
-- arrays from 1, and `outcome`, what tractor_finish_v1 answers), then the claimed commands
-- as tractor_claim_v3 returns them (`report` NULL).
-- One statement is one transaction, committed by the server as soon as its work is done:
-- the job rows the reports take (blades.sql: lock order) are held for the server's work
-- alone.  As statements of a transaction the client sends one by one, they were also held
-- while the blade's process came back to send the next one and the COMMIT; a thousand blades
-- running one job queue on its row, and that time was most of their wait.
CREATE OR REPLACE FUNCTION tractor_cycle_v1(p_blade uuid, p_jids bigint[], p_cids integer[], p_iids integer[],
                                            p_rcodes integer[], p_real double precision[],
                                            p_app double precision[], p_sys double precision[],
                                            p_checkpoints boolean[], p_svcids integer[], p_host text,
                                            p_slots integer, p_pid_jids bigint[], p_pid_cids integer[],
                                            p_pid_iids integer[], p_pids integer[])
RETURNS TABLE (report integer, outcome text,
               jid bigint, tid integer, cid integer, iid integer, numslots integer, hosts text[],
               boundslots integer,
               argv text[], local boolean, expand text, msg text, cmd_envkey text[],
               minrunsecs double precision, maxrunsecs double precision, retryrcodes integer[],
               resumewhile text[], resumepin boolean, minslots integer, maxslots integer, runtype text,
               owner text, jobtitle text, projects text[], spoolcwd text, spoolhost text, dirmap jsonb,
               assignments jsonb, job_envkey text[], priority double precision,
               tasktitle text, retrycount integer, resumecount integer, recover boolean,
               quality real, refersto text, idrefs jsonb, cmdrefs jsonb)
-- (enable_seqscan off for everything the cycle calls, its blade's row included: see
-- tractor_claim_v3)
LANGUAGE plpgsql ROWS 8 SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off AS $$
DECLARE
    k bigint;
    v_pid integer;
    ended integer[] := '{}';  -- the positions of the pids whose invocation a report here ended
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    PERFORM tractor_cycle_begin_v1(p_blade);
    -- the reports by job, then command (lock order), each with its command's pid when the blade
    -- sends that too (a command that ended before its pid went): one write of the invocation
    FOR k, v_pid IN SELECT r.n, (SELECT min(p.n) FROM unnest(p_pid_jids, p_pid_cids, p_pid_iids)
                                                       WITH ORDINALITY AS p(j, c, i, n)
                                 WHERE p.j = r.j AND p.c = r.c AND p.i = r.i)
                    FROM unnest(p_jids, p_cids, p_iids) WITH ORDINALITY AS r(j, c, i, n) ORDER BY r.j, r.c LOOP
        report := k;
        -- (the _v1 functions' own guard is this function's, above)
        outcome := tractor_finish(p_jids[k], p_cids[k], p_iids[k], p_blade,
                                  CASE WHEN p_checkpoints[k] THEN 0 ELSE p_rcodes[k] END, p_real[k], p_app[k],
                                  p_sys[k], coalesce(p_checkpoints[k], false), p_pids[v_pid]);
        IF v_pid IS NOT NULL AND outcome <> 'stale' THEN
            ended := ended || v_pid;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF p_slots > 0 THEN
        RETURN QUERY SELECT NULL::integer, NULL::text, c.*
                     FROM tractor_claim_v3(p_blade, p_svcids, p_host, p_slots) AS c ORDER BY c.jid, c.cid;
    END IF;
    -- the pids of commands still running (or stale: as before, recorded where they are not yet)
    IF cardinality(p_pids) > cardinality(ended) THEN
        PERFORM tractor_pids_v1(p_blade, array_agg(p.j), array_agg(p.c), array_agg(p.i), array_agg(p.pid))
        FROM unnest(p_pid_jids, p_pid_cids, p_pid_iids, p_pids) WITH ORDINALITY AS p(j, c, i, pid, n)
        WHERE NOT (p.n = ANY(ended));
    END IF;
    PERFORM tractor_cycle_end_v1(p_blade);
END $$;

-- The claim as blades of schema 20 and before call it (they read the launch fields apart).
CREATE OR REPLACE FUNCTION tractor_claim_v2(p_blade uuid, p_svcids integer[], p_host text, p_slots integer)
RETURNS TABLE (jid bigint, tid integer, cid integer, iid integer, numslots integer, hosts text[],
               boundslots integer)
LANGUAGE sql ROWS 4 SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT c.jid, c.tid, c.cid, c.iid, c.numslots, c.hosts, c.boundslots
    FROM tractor_claim_v3(p_blade, p_svcids, p_host, p_slots) AS c
$$;

-- The claim as blades of schema 12 and before call it (no bindings in the answer).
CREATE OR REPLACE FUNCTION tractor_claim_v1(p_blade uuid, p_svcids integer[], p_host text, p_slots integer)
RETURNS TABLE (jid bigint, tid integer, cid integer, iid integer, numslots integer)
LANGUAGE sql ROWS 4 SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT c.jid, c.tid, c.cid, c.iid, c.numslots FROM tractor_claim_v3(p_blade, p_svcids, p_host, p_slots) AS c
$$;

-- Progress of a running command's task (TR_PROGRESS); fenced like finish.
CREATE OR REPLACE FUNCTION tractor_progress_v1(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid, p_progress real)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off AS $$
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    UPDATE tasks t SET progress = least(greatest(p_progress, 0), 100)
    FROM invocations i
    WHERE i.jid = p_jid AND i.cid = p_cid AND i.iid = p_iid AND i.current AND i.stoptime IS NULL
      AND i.bladeid = p_blade AND t.jid = p_jid AND t.tid = i.tid;
    RETURN FOUND;
END $$;

-- A blade stops: with p_handback its unfinished invocations are queued
-- again at once (otherwise they wait for their lease, or for its return).
CREATE OR REPLACE FUNCTION tractor_blade_exit_v1(p_blade uuid, p_handback boolean) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    IF p_handback THEN
        PERFORM tractor_cycle_begin_v1(p_blade);  -- its own row last
        FOR r IN SELECT jid, cid, iid FROM invocations WHERE bladeid = p_blade AND current AND stoptime IS NULL LOOP
            IF tractor_requeue(r.jid, r.cid, r.iid) THEN
                n := n + 1;
            END IF;
        END LOOP;
        PERFORM tractor_cycle_end_v1(p_blade);
    END IF;
    UPDATE blades SET status = 'down', heartbeattime = now() WHERE bladeid = p_blade;
    RETURN n;
END $$;

-- The process ids of commands blade p_blade launched (p_jids, p_cids, p_iids, p_pids, one per
-- command), sent with its next report or heartbeat: what ps on the host shows for each
-- invocation.  Returns how many were recorded.
-- (enable_seqscan off: see tractor_claim_v3; planned on a new site's table, this read every
-- invocation at each cycle until the statistics caught up)
CREATE OR REPLACE FUNCTION tractor_pids_v1(p_blade uuid, p_jids bigint[], p_cids integer[], p_iids integer[],
                                           p_pids integer[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET enable_seqscan = off AS $$
DECLARE
    n integer;
BEGIN
    IF session_user <> current_user THEN  -- not the site's role: a blade login, for its own blade
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    UPDATE invocations i SET pid = p.pid
    FROM unnest(p_jids, p_cids, p_iids, p_pids) AS p(jid, cid, iid, pid)
    WHERE (i.jid, i.cid, i.iid) = (p.jid, p.cid, p.iid) AND i.bladeid = p_blade AND i.pid IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- An invocation ends without a result (lost blade, blade handing work back):
-- its command goes back to the queue; the next launch is a new invocation.
CREATE OR REPLACE FUNCTION tractor_requeue(p_jid bigint, p_cid integer, p_iid integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    inv invocations%ROWTYPE;
BEGIN
    IF (tractor_running_invocation(p_jid, p_cid, p_iid)).jid IS NULL THEN
        RETURN false;
    END IF;
    UPDATE invocations SET current = false, stoptime = now(), leasetime = NULL
    WHERE jid = p_jid AND cid = p_cid AND iid = p_iid
    RETURNING * INTO inv;
    PERFORM tractor_slots_change(inv.bladeid, -inv.numslots);
    PERFORM tractor_queue_command(p_jid, p_cid);
    IF inv.tid > 0 THEN
        UPDATE tasks SET state = 'ready', statetime = now(), readytime = now(), currcid = NULL
        WHERE jid = p_jid AND tid = inv.tid;
        UPDATE jobs SET numactive = numactive - 1, numready = numready + 1 WHERE jid = p_jid;
    END IF;
    RETURN true;
END $$;

-- A lapsed invocation (tractor_requeue'd by housekeeping when its lease ran out) whose blade
-- reports it after all, finished or still running: when it is its command's latest run and the
-- command still waits in the queue with no claim taking it just now, the requeue is undone and
-- the blade's report counts.  False: somebody else has the command (or it was retried,
-- skipped, deleted): the report is stale.
CREATE OR REPLACE FUNCTION tractor_unrequeue(p_jid bigint, p_cid integer, p_iid integer, p_blade uuid)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    inv invocations%ROWTYPE;
BEGIN
    SELECT * INTO inv FROM invocations i
    WHERE i.jid = p_jid AND i.cid = p_cid AND i.iid = p_iid AND i.bladeid = p_blade AND i.lapsed
      AND NOT i.current AND i.rcode IS NULL
      AND NOT EXISTS (SELECT 1 FROM invocations n WHERE n.jid = p_jid AND n.cid = p_cid AND n.iid > p_iid)
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM ready r WHERE r.jid = p_jid AND r.cid = p_cid FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM ready WHERE ready.jid = p_jid AND ready.cid = p_cid;
    UPDATE invocations SET current = true, stoptime = NULL, lapsed = false,
                           leasetime = now() + make_interval(secs => tractor_param_int('BladeLeaseSecs', 30))
    WHERE jid = p_jid AND cid = p_cid AND iid = p_iid;
    PERFORM tractor_slots_change(p_blade, inv.numslots);
    UPDATE commands SET state = 'active', statetime = now() WHERE jid = p_jid AND cid = p_cid;
    IF inv.tid > 0 THEN
        UPDATE tasks SET state = 'active', statetime = now(), currcid = p_cid WHERE jid = p_jid AND tid = inv.tid;
        UPDATE jobs SET numactive = numactive + 1, numready = numready - 1 WHERE jid = p_jid;
    END IF;
    RETURN true;
END $$;

-- Housekeeping: invocations whose lease ran out (the lease their claim
-- gave, and their blade has not heartbeaten for BladeLeaseSecs, or is gone)
-- are queued again, marked lapsed; jobs with nothing left to
-- run enter or leave their postscript phase.  Returns (requeued, jobs
-- checked).  For a lease after the server started (a restart, a crash, an
-- engine stopped and started) nobody could heartbeat while it was down: its
-- blades get a whole lease from the start before anything is requeued or a
-- blade is called lost.
CREATE OR REPLACE FUNCTION tractor_housekeep_v1(OUT requeued integer, OUT finished integer)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    lease integer := tractor_param_int('BladeLeaseSecs', 30);
    settled boolean := now() >= pg_postmaster_start_time() + make_interval(secs => lease);
BEGIN
    requeued := 0;
    finished := 0;
    -- the running invocations whose blade is silent (or gone), each joined to its blade's row:
    -- the cost grows with what runs, not with every blade the site has known (a list of the
    -- silent blades, matched against each running invocation, cost 50 ms a round on a site
    -- with 4,000 running and a few thousand blades of the past)
    FOR r IN SELECT i.jid, i.cid, i.iid FROM invocations i LEFT JOIN blades b ON b.bladeid = i.bladeid
             WHERE settled AND i.current AND i.stoptime IS NULL AND i.leasetime < now()
               AND (b.bladeid IS NULL OR b.heartbeattime IS NULL
                    OR b.heartbeattime < now() - make_interval(secs => lease))
             FOR UPDATE OF i SKIP LOCKED LOOP
        IF tractor_requeue(r.jid, r.cid, r.iid) THEN
            UPDATE invocations SET lapsed = true WHERE jid = r.jid AND cid = r.cid AND iid = r.iid;
            requeued := requeued + 1;
        END IF;
    END LOOP;
    UPDATE blades b SET status = 'lost'
    WHERE settled AND b.status = 'up' AND b.heartbeattime < now() - make_interval(secs => lease);
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

-- A running blade re-read its profile: its keys, slots, profile name, zone
-- and (when the profile's changed; NULL keeps what tq nimby set) NIMBY
-- change in place (tractor_blade_register_v1 would also hand back the
-- commands it is running).  Returns its name (NULL: no such blade).
CREATE OR REPLACE FUNCTION tractor_blade_reconfigure_v1(p_blade uuid, p_profile text, p_provides text[],
                                                        p_numslots integer, p_nimby text, p_zone text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_name text;
BEGIN
    IF session_user <> current_user THEN
        PERFORM tractor_guard_blade(p_blade);
    END IF;
    UPDATE blades SET profile = p_profile, provides = p_provides, numslots = p_numslots,
                      nimby = coalesce(p_nimby, nimby), zone = p_zone
    WHERE bladeid = p_blade
    RETURNING name INTO v_name;
    RETURN v_name;
END $$;
