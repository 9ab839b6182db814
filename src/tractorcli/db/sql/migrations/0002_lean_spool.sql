-- Leaner rows per spooled task (a 100,000-task job writes 400,000 rows and
-- their index entries in one transaction; these were a quarter of the work).
--
-- * task_edges keeps only Instance edges: the tree is tasks.parent_tid
--   (indexed by tasks_parent_idx), so its rows only repeated it.
-- * tasks_state_idx serves searches for active and error tasks across jobs
--   (tq tasks active, tq tasks error); blocked, ready and done tasks are
--   found per job through the primary key.  Partial, it costs nothing at spool.
-- * ready_svc_idx: blades claim in ready_order_idx order and filter the
--   service expression on the way; nothing looks ready rows up by svcid.

DELETE FROM task_edges WHERE kind = 'tree';
ALTER TABLE task_edges ALTER COLUMN kind SET DEFAULT 'instance';

DROP INDEX tasks_state_idx;
CREATE INDEX tasks_state_idx ON tasks (state, statetime) WHERE state IN ('active', 'error');

DROP INDEX ready_svc_idx;
