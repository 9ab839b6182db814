-- The running invocations' lease times are no longer indexed (issue 14: the cost of a claim).
--
-- Since schema 21 housekeeping finds lapsed work from the silent blades (their ids, then their
-- running invocations by invocations_blade_idx), not by scanning leases; nothing else searches
-- by leasetime.  The index cost every claim an index entry and every finish its removal.
DROP INDEX IF EXISTS invocations_active_idx;
