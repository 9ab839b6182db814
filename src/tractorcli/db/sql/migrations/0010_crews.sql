-- The site's crews (crews.toml) in the database, where the permission
-- functions (db/sql/functions/permissions.sql) read them.  Loaded by
-- tractor-dbctl --start-for-engine and tq reloadconfig --crews: the file is
-- the site owner's, on the engine's host.
--
-- crews_file holds one row when the site has a crews.toml, none when it has
-- not (then only the site's own role may use force on others' jobs).
CREATE TABLE crews_file (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    path text NOT NULL,
    loadtime timestamptz NOT NULL DEFAULT now()
);

-- a crew and its users, nested crews expanded (an empty crew still hides a user of its name)
CREATE TABLE crews (
    crew text PRIMARY KEY,
    members text[] NOT NULL
);

-- [force]: members of `who` (a crew, a user or '*') may force on the jobs of `targets` (crews, users, '*')
CREATE TABLE crew_force (
    who text PRIMARY KEY,
    targets text[] NOT NULL
);
