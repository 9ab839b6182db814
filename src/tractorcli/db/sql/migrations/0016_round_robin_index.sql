-- P+RR walks the live jobs in this order and stops at the first with work for the claiming
-- blade, as P+FIFO walks jobs_dispatch_idx: no sort of every ready job at each claim.  Only
-- P+RR claims change dispatchtime, so under the other modes a claim's update of its job stays
-- a heap-only (HOT) update.
CREATE INDEX jobs_rr_idx ON jobs (tierpri DESC, priority DESC, dispatchtime NULLS FIRST, jid)
WHERE deletetime IS NULL AND phase <> 'finished';

-- The commands of a job that carry an -id (few): %ID(host) names the blades each ran on.
CREATE INDEX commands_id_idx ON commands (jid) WHERE id IS NOT NULL;
