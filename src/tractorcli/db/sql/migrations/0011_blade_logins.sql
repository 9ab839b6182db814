-- Which login registered each blade: a blade login (tractor-dbctl
-- --add-blade-login) may report only for the blades it registered
-- (functions/permissions.sql, tractor_guard_blade).  NULL: registered
-- before logins were recorded, or by the site's own role.
ALTER TABLE blades ADD COLUMN login text;
