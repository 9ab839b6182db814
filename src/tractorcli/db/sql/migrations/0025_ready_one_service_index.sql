-- The ready queue's two service indexes made one (issue 14: spooling at farm scale).
--
-- ready_svc_idx (svcid) answered an idle blade's poll ("anything queued of my expressions?",
-- functions/blades.sql) and ready_job_svc_idx (jid, svcid, cid) a claim's walk over one job's
-- ready commands of one expression.  One index led by the expression answers both: the poll
-- reads its leading column, the walk gives svcid and jid and reads cid in order.  A spool
-- writes one ready row for each task that starts ready, so each index there is one more entry
-- per task: with 1,000,000 tasks the second one cost the server about a tenth of its time.
CREATE INDEX IF NOT EXISTS ready_svc_job_idx ON ready (svcid, jid, cid);
DROP INDEX IF EXISTS ready_job_svc_idx;
DROP INDEX IF EXISTS ready_svc_idx;
