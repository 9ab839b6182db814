-- Checkpoint-resume loops (-resumeblock, -resumewhile): a task whose command only reached a
-- checkpoint in this pass of its block is done for the pass (its dependents go on, with %q
-- below 1.0) and runs again in the next pass, which starts when the block's root finishes
-- (functions/finish.sql, tractor_next_pass).  Cleared when the task's command is claimed again.
ALTER TABLE tasks ADD COLUMN checkpointed boolean NOT NULL DEFAULT false;
