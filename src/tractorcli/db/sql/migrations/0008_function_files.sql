-- The state machine's functions live in db/sql/functions/*.sql, one place
-- per area, re-applied (CREATE OR REPLACE) by every upgrade whose file
-- differs from the one recorded here; migrations keep tables and data.
CREATE TABLE schema_functions (
    file       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT ''
);
