-- An idle blade's poll answered from the ready queue's indexes (issue 14: idle cost).
--
-- A claim walks the dispatchable jobs in the site's order and looks in each for ready commands
-- of the expressions the blade matches.  A blade whose expressions no queued command needs
-- (keys nothing on the farm asks for just now) walked every live job to find nothing: about
-- 0.5 ms of the server's time at each poll with 1,000 jobs, a core's worth for 1,000 such
-- blades polling every 1.5 s.  The claim first asks these indexes whether anything it could
-- take is queued at all (functions/blades.sql, tractor_claim_v3): the ready commands of its
-- expressions, and the local Cmds spooled from its host.
CREATE INDEX IF NOT EXISTS ready_svc_idx ON ready (svcid);
CREATE INDEX IF NOT EXISTS ready_local_idx ON ready (spoolhost) WHERE local;
