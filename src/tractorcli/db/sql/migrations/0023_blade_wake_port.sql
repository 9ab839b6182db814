-- Wake-ups without a connection per blade (issue 14: a thousand blades on one database).
--
-- A blade that LISTENs for tractor_ready holds a second server connection, idle nearly all the
-- time: a thousand blades, a thousand connections.  A blade of a site with BladeWakeups =
-- "engine" listens on a UDP port of its own instead, and tractor-engine, which LISTENs once for
-- the whole farm, sends a datagram to each blade with a free slot when work is queued
-- (wakeups.py).  NULL: the blade listens itself (or is of an older version).
ALTER TABLE blades ADD COLUMN IF NOT EXISTS wakeport integer;
