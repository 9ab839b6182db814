-- PLACEHOLDER on branch spool-speed only: number 25 is another session's migration.
-- Migrations must be numbered without gaps, so this empty one stands in for it here;
-- drop this file when merging (the other branch's 0025 takes its place).
SELECT 1;
