-- Shared servers (seed 001, "Sharing One Server Check-Out Among Several Commands"): a Task with
-- -service and -id is checked out on one blade, lazily, when the first command that -refersto
-- it is next; its referring commands run there (a RemoteCmd) or name it (%h of a local Cmd);
-- the check-out holds one slot of that blade until the last referring command has ended
-- (functions/bindings.sql).
CREATE TABLE checkouts (
    jid bigint NOT NULL REFERENCES jobs (jid) ON DELETE CASCADE,
    id text NOT NULL,
    n integer NOT NULL,                   -- the job's nth check-out of this id
    bladeid uuid NOT NULL,
    bladename text NOT NULL,
    active boolean NOT NULL DEFAULT true,
    starttime timestamptz NOT NULL DEFAULT now(),
    stoptime timestamptz,
    PRIMARY KEY (jid, id, n)
);
CREATE UNIQUE INDEX checkouts_one_active_idx ON checkouts (jid, id) WHERE active;
CREATE INDEX checkouts_blade_idx ON checkouts (bladeid) WHERE active;
