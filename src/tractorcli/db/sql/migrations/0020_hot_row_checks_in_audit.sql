-- The value checks of the four hot tables move from CHECK constraints to the invariant audit
-- (functions/audit.sql, "row values"; issue 12's and 14's dispatch figures).
--
-- PostgreSQL builds a table's CHECK expressions from their stored text for every statement that
-- writes a row of it, and a plpgsql function's cached plan does not keep them: a claim and a
-- finish write job, task, command and invocation rows about ten times per command, and reading
-- those expressions back was a fifth of the server's time per command (3,000 one-command tasks
-- claimed and finished on one connection: 2.2 ms a command with them, 1.7 without).  These
-- rows are written only by the state machine's functions (no person or blade may write a
-- table), which set states from constants; the audit that every fault test and
-- `tractor-dbctl --check` run finds any value outside its set, as the constraint did.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_phase_check,
                 DROP CONSTRAINT IF EXISTS jobs_maxactive_check,
                 DROP CONSTRAINT IF EXISTS jobs_scriptformat_check;
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_state_check,
                  DROP CONSTRAINT IF EXISTS tasks_progress_check,
                  DROP CONSTRAINT IF EXISTS tasks_pending_check,
                  DROP CONSTRAINT IF EXISTS tasks_tid_check;
ALTER TABLE commands DROP CONSTRAINT IF EXISTS commands_state_check,
                     DROP CONSTRAINT IF EXISTS commands_runtype_check,
                     DROP CONSTRAINT IF EXISTS commands_cid_check;
ALTER TABLE invocations DROP CONSTRAINT IF EXISTS invocations_iid_check;
