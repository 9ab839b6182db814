-- Multi-host commands: the slots a command gathers on other blades (-atleast/-atmost without
-- -samehost; a netrender-style local Cmd's servers), recorded in `bindings` (migration 0013);
-- and shared-server check-outs (a Task's -service and -id, migration 0015).
--
-- Blades never wait for each other here, so no claim can deadlock with another or with a
-- finishing blade: each claim first takes its own blade's advisory lock without waiting (a
-- blade being borrowed from claims nothing on that pass), and a claim borrows only from blades
-- whose lock it gets at once.  A blade's free slots for its own claims are its slots less
-- those it runs (the blade's own count) and those it lends (active lent bindings).  When the
-- invocation ends, however it ends, a trigger clears its bindings' `active`: the lent slots
-- are free again.
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else.

-- The advisory lock of a blade (its claims, and claims borrowing its slots), without waiting.
CREATE OR REPLACE FUNCTION tractor_blade_try_lock(p_blade uuid) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
    SELECT pg_try_advisory_xact_lock(hashtext('tractor blade'), hashtext(p_blade::text))
$$;

-- The slots blade p_blade lends now to commands running elsewhere, and holds for shared-server
-- check-outs of live jobs (one each).
-- (plpgsql: its plans are kept, where a SQL function's body is planned at every call.)
CREATE OR REPLACE FUNCTION tractor_blade_lent(p_blade uuid) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (coalesce((SELECT sum(b.slots) FROM bindings b WHERE b.bladeid = p_blade AND b.active AND b.lent), 0)
            + (SELECT count(*) FROM checkouts co JOIN jobs jb ON jb.jid = co.jid
               WHERE co.bladeid = p_blade AND co.active AND jb.deletetime IS NULL AND jb.phase <> 'finished')
           )::integer;
END $$;

-- Borrow between p_need and p_want slots of blades other than p_blade for a command of a job
-- owned by p_owner, spooled from p_spoolhost, whose servers must match service expression
-- p_svcid: blades that are up, heard from within the lease, matched p_svcid at their last
-- claim, let the job in (NIMBY) and have free slots; most free slots first; with p_samehost all
-- on one blade.  Returns what was taken as (bladeids, names, slots) arrays, empty when fewer
-- than p_need slots could be had (then nothing is taken).
CREATE OR REPLACE FUNCTION tractor_borrow_slots(p_blade uuid, p_svcid integer, p_need integer, p_want integer,
                                                p_samehost boolean, p_owner text, p_spoolhost text,
                                                OUT o_blades uuid[], OUT o_names text[], OUT o_slots integer[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    b record;
    v_free integer;
    v_take integer;
    got integer := 0;
BEGIN
    o_blades := '{}';
    o_names := '{}';
    o_slots := '{}';
    IF p_want <= 0 THEN
        RETURN;
    END IF;
    FOR b IN SELECT bl.bladeid, bl.name FROM blades bl
             WHERE bl.bladeid <> p_blade AND bl.status = 'up'
               AND bl.heartbeattime > now() - make_interval(secs => tractor_param_int('BladeLeaseSecs', 30))
               AND bl.svcids @> ARRAY[p_svcid]
               AND (bl.nimby = '' OR (bl.nimby = '1' AND bl.name = p_spoolhost) OR bl.nimby = p_owner)
               AND bl.numslots > bl.slotsinuse
             ORDER BY bl.numslots - bl.slotsinuse DESC, bl.name
    LOOP
        CONTINUE WHEN NOT tractor_blade_try_lock(b.bladeid);  -- claiming, or lending to another claim
        -- read again under its lock: what it runs and lends now
        SELECT bl.numslots - bl.slotsinuse - tractor_blade_lent(bl.bladeid) INTO v_free
        FROM blades bl WHERE bl.bladeid = b.bladeid;
        CONTINUE WHEN v_free <= 0;
        IF p_samehost THEN
            CONTINUE WHEN v_free < p_need;
            o_blades := ARRAY[b.bladeid];
            o_names := ARRAY[b.name];
            o_slots := ARRAY[least(v_free, p_want)];
            RETURN;
        END IF;
        v_take := least(v_free, p_want - got);
        o_blades := o_blades || b.bladeid;
        o_names := o_names || b.name;
        o_slots := o_slots || v_take;
        got := got + v_take;
        EXIT WHEN got >= p_want;
    END LOOP;
    IF p_samehost OR got < p_need THEN
        o_blades := '{}';
        o_names := '{}';
        o_slots := '{}';
    END IF;
END $$;

-- An invocation ended (finished, failed, killed, requeued, its blade lost): its lent slots are free.
CREATE OR REPLACE FUNCTION tractor_bindings_release() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bindings SET active = false
    WHERE jid = NEW.jid AND cid = NEW.cid AND iid = NEW.iid AND active;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER invocations_bindings_release
AFTER UPDATE OF stoptime, current ON invocations
FOR EACH ROW
WHEN (OLD.stoptime IS NULL AND OLD.current AND (NEW.stoptime IS NOT NULL OR NOT NEW.current) AND NEW.lent > 0)
EXECUTE FUNCTION tractor_bindings_release();

-- A command that -refersto a shared server ended (done, or in error): when no other command of
-- the job refers to it any more (none blocked, ready or running in a task that is not in
-- error), the check-out ends and its slot is free.  Deferred to the commit, when the ending
-- command's task has its new state.
CREATE OR REPLACE FUNCTION tractor_checkout_release() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM commands c JOIN tasks t ON t.jid = c.jid AND t.tid = c.tid
                   WHERE c.jid = NEW.jid AND c.refersto = NEW.refersto AND c.cid <> NEW.cid
                     AND c.state IN ('blocked', 'ready', 'active') AND t.state <> 'error' AND t.attached) THEN
        UPDATE checkouts SET active = false, stoptime = now()
        WHERE jid = NEW.jid AND id = NEW.refersto AND active;
    END IF;
    RETURN NULL;
END $$;

-- (a constraint trigger cannot be replaced in place: made again on every apply of this file)
DROP TRIGGER IF EXISTS commands_checkout_release ON commands;
CREATE CONSTRAINT TRIGGER commands_checkout_release
AFTER UPDATE OF state ON commands
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
WHEN (NEW.refersto IS NOT NULL AND NEW.state IN ('done', 'error') AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION tractor_checkout_release();
