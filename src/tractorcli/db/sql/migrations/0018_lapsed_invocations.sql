-- An invocation queued again because its lease ran out (its blade did not heartbeat in time:
-- dead, or only cut off from the database) is marked lapsed.  When its blade reports it
-- after all and nobody has taken the command since, the report counts (tractor_unrequeue):
-- a blade that only lost the database for a while does not see its work thrown away.
ALTER TABLE invocations ADD COLUMN lapsed boolean NOT NULL DEFAULT false;
