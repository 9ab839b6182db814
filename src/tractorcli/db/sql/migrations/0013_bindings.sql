-- Multi-host commands (-atleast/-atmost across blades, netrender-style local Cmds): the slots a
-- command's invocation holds on each blade.  The blade that claims it runs the process; the
-- others only lend slots (their blade row's slotsinuse counts them, so their own claims leave
-- them free).  %h / %H / %n are the blades and slots bound here.  Kept after the invocation
-- ends (history); `active` is cleared when it ends, giving the lent slots back.
CREATE TABLE bindings (
    jid bigint NOT NULL,
    cid integer NOT NULL,
    iid integer NOT NULL,
    seq integer NOT NULL,                 -- the order of %h
    bladeid uuid NOT NULL,
    bladename text NOT NULL,
    slots integer NOT NULL CHECK (slots > 0),
    lent boolean NOT NULL,                -- a slot of a blade that does not run the process
    active boolean NOT NULL DEFAULT true,
    PRIMARY KEY (jid, cid, iid, seq),
    FOREIGN KEY (jid, cid, iid) REFERENCES invocations (jid, cid, iid) ON DELETE CASCADE
);
CREATE INDEX bindings_lent_idx ON bindings (bladeid) WHERE active AND lent;

-- the service expressions each blade matched at its last claim: whom a claim may borrow from
ALTER TABLE blades ADD COLUMN svcids integer[] NOT NULL DEFAULT '{}';

-- slots other blades lend to the invocation (bindings with lent): the release trigger's condition
ALTER TABLE invocations ADD COLUMN lent integer NOT NULL DEFAULT 0;
