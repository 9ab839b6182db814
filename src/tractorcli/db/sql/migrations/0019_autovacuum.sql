-- Autovacuum thresholds for a queue's tables (issue 13: the soak bench's bloat figures).
--
-- The default (vacuum after 20% of a table is dead, at least 50 rows) fits tables that mostly
-- grow.  Here `ready`, `jobs` and `blades` are rewritten all the time and stay small: a fixed
-- number of dead rows starts a vacuum, whatever their size.  `tasks`, `commands` and
-- `invocations` are large and updated in place (a task or command row a few times, an
-- invocation at its end): 2-5% dead starts one, where 20% of a million-task farm is 200,000
-- dead rows each index drags along.  `invocations` also grows by inserts only (history):
-- vacuuming after 5% new rows keeps its visibility map (index-only scans) current.
ALTER TABLE ready SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                       autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200);
ALTER TABLE blades SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 50);
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE commands SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE invocations SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_insert_scale_factor = 0.05);
