-- The claim counts a limit's running commands by scanning the running invocations (the btree
-- indexes on current AND stoptime IS NULL), not through the GIN index on their tags: GIN
-- entries of ended invocations stay until VACUUM and every scan reads them (2,000 per claim
-- after 2,000 commands), where a btree scan marks dead entries once and skips them after.
DROP INDEX invocations_limits_idx;
