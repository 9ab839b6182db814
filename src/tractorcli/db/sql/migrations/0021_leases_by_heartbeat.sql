-- A blade's heartbeat renews the leases of all its commands by its own row alone (issue 14; the
-- full-disk fault test).
--
-- Before, each heartbeat rewrote the lease time of every invocation its blade ran and the
-- blade's heartbeat time.  Both columns are indexed, so neither update could stay on its page
-- (HOT): every heartbeat added an entry to each index of both tables.  At farm scale that is
-- 1,000 blades x their slots every few seconds of index growth for nothing, and on a full disk
-- it is a write that needs a new page: the heartbeat failed, and the engine took away commands
-- that were still running.  Now an invocation's lease runs until its blade's heartbeat is older
-- than BladeLeaseSecs (functions/blades.sql, tractor_housekeep_v1); `leasetime` is the lease
-- the claim gave, the least it has.  The heartbeat index goes (housekeeping reads every blade
-- row anyway) and blade pages keep half their room for the new versions of their rows.
DROP INDEX IF EXISTS blades_heartbeat_idx;
ALTER TABLE blades SET (fillfactor = 50);
