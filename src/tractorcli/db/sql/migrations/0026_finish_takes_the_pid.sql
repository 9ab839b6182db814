-- A report carries its command's process id (issue 14: a blade's cycle at farm scale).
--
-- A blade sends the pid of each command it launched with its next cycle; a trivial command
-- has ended by then, so the same cycle reports it too, and the invocation's row was written
-- twice in one transaction: the finish (stoptime, rcode, ...) and then the pid (0.06 ms a
-- command on the server, and one more dead row version).  The finish now takes the pid and
-- writes both at once (functions/finish.sql, tractor_finish gains p_pid; the cycle passes it,
-- functions/blades.sql).  tractor_finish is internal: blades call the _v1 functions, whose
-- signatures stay.  The old signature goes, so no call can find two.
DROP FUNCTION IF EXISTS tractor_finish(bigint, integer, integer, uuid, integer, double precision,
                                       double precision, double precision, boolean);
