-- Limits (limits.toml, loaded into the `limits` table): how many commands carrying a tag may run
-- at once on the site, on one blade, for one owner, project or crew.  The claim asks
-- tractor_limit_refusal before it takes a command whose tags name a limit; tq explain and tq
-- trace ask it too, without locks.
--
-- What is in use is counted from the running invocations (their `limits`, set by the claim),
-- never kept in a counter: every way a command ends (finish, kill, retry, lost blade, delete)
-- lowers the count with no code of its own.  Two claims must not both take the last place of
-- a limit: the claim holds advisory locks (stripes, below) until it commits; a claim that cannot
-- get them at once leaves the command ready for its next pass (it never waits, so it cannot
-- deadlock with another claim or with a finishing blade).
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else.

-- The tags a command is counted under: its -tags (the job's -tags appended at spool) and the
-- base name of its application, as Tractor counts them.
-- (One expression, no FROM: the planner inlines it, where a function body would be planned
-- again at every call of the claim.)
CREATE OR REPLACE FUNCTION tractor_limit_tags(p_tags text[], p_app text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(p_app, '') = '' OR regexp_replace(p_app, '^.*[/\\]', '') = ANY(p_tags)
                     OR regexp_replace(p_app, '^.*[/\\]', '') = '' THEN p_tags
                ELSE p_tags || regexp_replace(p_app, '^.*[/\\]', '') END
$$;

-- Whether limit p_limit caps anything counted across blades (site, owner, project, crew),
-- which claims of different blades could pass together; a BladeMax alone needs no lock.
CREATE OR REPLACE FUNCTION tractor_limit_site_wide(p_limit limits) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_limit.sitemax >= 0 OR p_limit.ownermax >= 0 OR p_limit.ownerexceptions <> '{}'::jsonb
           OR p_limit.projectshares <> '{}'::jsonb OR p_limit.crewshares <> '{}'::jsonb
$$;

-- The locks that keep two claims from both taking a limit's last place, without making every
-- claim of a farm whose commands share a tag queue behind one lock.  A limit has STRIPES
-- advisory locks.  Far from full (every site-wide count: site, owner, project, crew, at least
-- STRIPES * SPAN below its cap, and fewer than SPAN of the limit's commands on the claiming
-- blade) a claim holds any one stripe, from before its count until it commits.  At most
-- STRIPES claims hold stripes at once, each adding at most SPAN commands counted that way, so
-- what the others add unseen cannot pass a cap.  Nearer a cap a claim takes every stripe, in
-- order, and counts alone, exactly: one lock, as for a small licence pool.  Which way is
-- decided by a first count without locks, then counted again under them.  Claims never wait
-- for a stripe (one that is held refuses the command for this pass), so a claim cannot
-- deadlock with another or with a finishing blade.  A blade's own count (BladeMax) needs no
-- lock: only its own claims start commands on it, one at a time (its advisory lock,
-- bindings.sql), and a claim sees its own.
-- p_all: every stripe, else any one.
CREATE OR REPLACE FUNCTION tractor_limit_try_stripes(p_name text, p_all boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    STRIPES CONSTANT integer := 8;
    -- all: in order, so claims near a cap contend for stripe 0 as for one lock; one: claims of
    -- different blades start apart
    first integer := CASE WHEN p_all THEN 0 ELSE pg_backend_pid() % STRIPES END;
BEGIN
    FOR k IN 0 .. STRIPES - 1 LOOP
        IF pg_try_advisory_xact_lock(hashtext('tractor limit'), hashtext(p_name || '/' || (first + k) % STRIPES)) THEN
            CONTINUE WHEN p_all;
            RETURN true;
        ELSIF p_all THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN p_all;
END $$;

-- Why the command of job p_jid with limit tags p_tags may not start on blade p_blade (named
-- p_bname) now: the first full limit, as a sentence; NULL when every limit has room.  With
-- p_claim the caller is the claim: it holds the limits' stripes as above (and is refused when
-- it cannot get them at once).  VOLATILE: each count sees what other claims committed before
-- it.  One scan of the running invocations carrying any of the tags gives every limit's site,
-- host, blade and owner counts; project and crew shares count on their own.
CREATE OR REPLACE FUNCTION tractor_limit_refusal(p_jid bigint, p_tags text[], p_blade uuid, p_bname text,
                                                 p_claim boolean)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    STRIPES CONSTANT integer := 8;  -- as tractor_limit_try_stripes
    SPAN CONSTANT integer := 8;
    l record;
    v_owner text;
    v_projects text[];
    v_members text[];
    cap integer;
    n integer;
    k text;
    margin integer;  -- the room a count must leave under its cap for a claim on one stripe
    near text[];  -- limits with room, but too little to take on one stripe
    exact text[] := '{}';  -- limits whose every stripe this call holds
    -- the others' single stripes held (none needed where only blades are capped)
    one boolean := NOT EXISTS (SELECT 1 FROM limits lm WHERE lm.name = ANY(p_tags) AND tractor_limit_site_wide(lm));
BEGIN
    SELECT j.owner, j.projects INTO v_owner, v_projects FROM jobs j WHERE j.jid = p_jid;
    LOOP
        near := '{}';
        FOR l IN
            SELECT lm.*, tractor_limit_site_wide(lm) AS site_wide,
                   coalesce(u.n_site, 0) AS n_site, coalesce(u.n_hosts, 0) AS n_hosts,
                   coalesce(u.n_blade, 0) AS n_blade, coalesce(u.n_owner, 0) AS n_owner
            FROM limits lm
            LEFT JOIN (
                -- one scan of the running invocations carrying any of the tags, counted per tag
                SELECT t.tag, count(*)::integer AS n_site, count(DISTINCT i.bladeid)::integer AS n_hosts,
                       count(*) FILTER (WHERE i.bladeid = p_blade)::integer AS n_blade,
                       count(*) FILTER (WHERE j.owner = v_owner)::integer AS n_owner
                FROM invocations i JOIN jobs j ON j.jid = i.jid
                CROSS JOIN LATERAL unnest(i.limits) AS t(tag)
                WHERE i.current AND i.stoptime IS NULL AND i.limits && p_tags AND t.tag = ANY(p_tags)
                GROUP BY t.tag
            ) u ON u.tag = lm.name
            WHERE lm.name = ANY(p_tags)
            ORDER BY lm.name
        LOOP
            margin := CASE WHEN p_claim AND NOT l.name = ANY(exact) THEN STRIPES * SPAN ELSE 0 END;
            IF l.sitemax >= 0 THEN
                IF l.sitecounting = 'perHost' THEN
                    -- a host counts once, however many of its commands carry the tag
                    IF l.n_blade = 0 AND l.n_hosts >= l.sitemax THEN
                        RETURN format('limit %s is full: %s of %s hosts on the site (SiteMax, perHost)',
                                      l.name, l.n_hosts, l.sitemax);
                    ELSIF l.n_blade = 0 AND l.n_hosts + margin > l.sitemax THEN
                        near := near || l.name;
                    END IF;
                ELSIF l.n_site >= l.sitemax THEN
                    RETURN format('limit %s is full: %s of %s on the site (SiteMax)', l.name, l.n_site, l.sitemax);
                ELSIF l.n_site + margin > l.sitemax THEN
                    near := near || l.name;
                END IF;
            END IF;
            cap := coalesce((l.bladeexceptions ->> p_bname)::integer, l.blademax);
            IF cap >= 0 AND l.n_blade >= cap THEN
                RETURN format('limit %s is full on %s: %s of %s (BladeMax)', l.name, p_bname, l.n_blade, cap);
            END IF;
            IF l.site_wide AND margin > 0 AND l.n_blade >= SPAN THEN
                near := near || l.name;
            END IF;
            cap := coalesce((l.ownerexceptions ->> v_owner)::integer, l.ownermax);
            IF cap >= 0 AND l.n_owner >= cap THEN
                RETURN format('limit %s is full for %s: %s of %s (OwnerMax)', l.name, v_owner, l.n_owner, cap);
            ELSIF cap >= 0 AND l.n_owner + margin > cap THEN
                near := near || l.name;
            END IF;
            FOR k, cap IN SELECT sh.key, sh.value::integer FROM jsonb_each_text(l.projectshares) sh
                          WHERE sh.key = ANY(v_projects) ORDER BY sh.key LOOP
                SELECT count(*) INTO n FROM invocations i JOIN jobs j ON j.jid = i.jid
                WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name] AND j.projects @> ARRAY[k];
                IF n >= cap THEN
                    RETURN format('limit %s is full for project %s: %s of %s (share)', l.name, k, n, cap);
                ELSIF n + margin > cap THEN
                    near := near || l.name;
                END IF;
            END LOOP;
            FOR k, cap, v_members IN SELECT sh.key, sh.value::integer, c.members FROM jsonb_each_text(l.crewshares) sh
                          JOIN crews c ON c.crew = sh.key
                          WHERE v_owner = ANY(c.members) ORDER BY sh.key LOOP
                SELECT count(*) INTO n FROM invocations i JOIN jobs j ON j.jid = i.jid
                WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name]
                  AND j.owner = ANY(v_members);
                IF n >= cap THEN
                    RETURN format('limit %s is full for crew %s: %s of %s (share)', l.name, k, n, cap);
                ELSIF n + margin > cap THEN
                    near := near || l.name;
                END IF;
            END LOOP;
        END LOOP;
        -- tq explain and trace count without locks; a claim returns once it has counted under
        -- the stripes each limit needs
        IF NOT p_claim OR (one AND near <@ exact) THEN
            RETURN NULL;
        END IF;
        FOR k IN SELECT DISTINCT x FROM unnest(near) AS x WHERE NOT x = ANY(exact) ORDER BY x LOOP
            IF NOT tractor_limit_try_stripes(k, true) THEN
                RETURN format('limit %s is nearly full and being taken by other blades just now', k);
            END IF;
            exact := exact || k;
        END LOOP;
        IF NOT one THEN
            FOR k IN SELECT lm.name FROM limits lm WHERE lm.name = ANY(p_tags) AND tractor_limit_site_wide(lm)
                       AND NOT lm.name = ANY(exact) ORDER BY lm.name LOOP
                IF NOT tractor_limit_try_stripes(k, false) THEN
                    RETURN format('limit %s is being taken by other blades just now', k);
                END IF;
            END LOOP;
            one := true;
        END IF;
    END LOOP;
END $$;
