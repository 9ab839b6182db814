-- The farm controls of the site's configuration, in the database where the
-- claim reads them: limits (limits.toml) and tiers (tractor.toml [tiers]).
-- Loaded by tractor-dbctl --start-for-engine (every engine start) and by tq
-- reloadconfig --limits / --tractor; only the site's role writes them.

-- A limit: how many commands carrying its tag may run at once.  -1: no
-- maximum.  Shares are counts (fractions of sitemax are resolved when the
-- file is loaded).  What is in use is never stored: it is counted from the
-- running invocations (their `limits`), so no path that ends a command can
-- leave a count wrong.
CREATE TABLE limits (
    name text PRIMARY KEY,
    sitemax integer NOT NULL DEFAULT -1,
    -- perInvocation: every running command counts; perHost: a host counts once
    sitecounting text NOT NULL DEFAULT 'perInvocation' CHECK (sitecounting IN ('perInvocation', 'perHost')),
    ownermax integer NOT NULL DEFAULT -1,
    ownerexceptions jsonb NOT NULL DEFAULT '{}'::jsonb,   -- {"user": n}
    blademax integer NOT NULL DEFAULT -1,
    bladeexceptions jsonb NOT NULL DEFAULT '{}'::jsonb,   -- {"blade name": n}
    projectshares jsonb NOT NULL DEFAULT '{}'::jsonb,     -- {"project": n}
    crewshares jsonb NOT NULL DEFAULT '{}'::jsonb,        -- {"crew": n}
    description text NOT NULL DEFAULT ''
);

-- one row when the site has a limits.toml
CREATE TABLE limits_file (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    path text NOT NULL,
    loadtime timestamptz NOT NULL DEFAULT now()
);

-- the running invocations carrying a tag, counted by the claim
CREATE INDEX invocations_limits_idx ON invocations USING gin (limits) WHERE current AND stoptime IS NULL;

-- Dispatch tiers: a job's tier names one; its priority orders the queue before the job's own.
CREATE TABLE tiers (
    name text PRIMARY KEY,
    priority integer NOT NULL
);
INSERT INTO tiers (name, priority) VALUES ('admin', 111), ('rush', 99), ('default', 50), ('batch', 10);

-- when the claim last took a command of the job: P+RR turns to the job that waited longest
ALTER TABLE jobs ADD COLUMN dispatchtime timestamptz;
