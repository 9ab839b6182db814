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
-- order, and counts alone, exactly: one lock, as for a small licence pool.  Which way a claim
-- takes is what its session found last time (tractor.near_limits, a hint only: a count under
-- the locks decides, and a claim on one stripe that finds the limit near takes the rest).
-- Claims never wait
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
-- it.  One scan of the running invocations carrying any of the limits gives every limit's
-- site, host, blade and owner counts; project and crew shares count on their own.
CREATE OR REPLACE FUNCTION tractor_limit_refusal(p_jid bigint, p_tags text[], p_blade uuid, p_bname text,
                                                 p_claim boolean)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    STRIPES CONSTANT integer := 8;  -- as tractor_limit_try_stripes
    SPAN CONSTANT integer := 8;
    MARGIN CONSTANT integer := STRIPES * SPAN;  -- the room a count leaves for claims on one stripe
    v_limits text[];  -- the tags that name limits
    v_wide text[];  -- those capped across blades
    l record;
    v_owner text;
    v_projects text[];
    kind text;
    cap integer;
    n integer;
    k text;
    refusal text;
    hint text[];  -- the limits this session found near at its last claim
    near text[];  -- limits with room, but too little to take on one stripe
    exact text[] := '{}';  -- limits whose every stripe this call holds
    v_perhost boolean;  -- a limit of these counts hosts (SiteMaxCounting perHost)
BEGIN
    -- (the job's owner and projects in the same statement: one statement fewer a claim)
    SELECT array_agg(lm.name ORDER BY lm.name),
           coalesce(array_agg(lm.name ORDER BY lm.name) FILTER (WHERE tractor_limit_site_wide(lm)), '{}'),
           bool_or(lm.sitemax >= 0 AND lm.sitecounting = 'perHost'),
           (SELECT j.owner FROM jobs j WHERE j.jid = p_jid), (SELECT j.projects FROM jobs j WHERE j.jid = p_jid)
    INTO v_limits, v_wide, v_perhost, v_owner, v_projects FROM limits lm WHERE lm.name = ANY(p_tags);
    IF v_limits IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_claim AND cardinality(v_wide) > 0 THEN
        hint := coalesce(nullif(current_setting('tractor.near_limits', true), ''), '{}')::text[];
        FOREACH k IN ARRAY v_wide LOOP
            IF NOT tractor_limit_try_stripes(k, k = ANY(hint)) THEN
                RETURN format('limit %s is being taken by other blades just now', k);
            END IF;
            IF k = ANY(hint) THEN
                exact := exact || k;
            END IF;
        END LOOP;
    END IF;
    LOOP
        refusal := NULL;
        near := '{}';
        FOR l IN
            SELECT lm.*, coalesce(u.n_site, 0) AS n_site, coalesce(u.n_hosts, 0) AS n_hosts,
                   coalesce(u.n_blade, 0) AS n_blade, coalesce(u.n_owner, 0) AS n_owner
            FROM limits lm
            LEFT JOIN (
                -- one scan of the running invocations carrying any of the limits, counted per limit
                -- (hosts are counted, a sort per limit, only where a limit counts them)
                SELECT t.tag, count(*)::integer AS n_site,
                       count(DISTINCT i.bladeid) FILTER (WHERE v_perhost)::integer AS n_hosts,
                       count(*) FILTER (WHERE i.bladeid = p_blade)::integer AS n_blade,
                       count(*) FILTER (WHERE j.owner = v_owner)::integer AS n_owner
                FROM invocations i JOIN jobs j ON j.jid = i.jid
                CROSS JOIN LATERAL unnest(i.limits) AS t(tag)
                WHERE i.current AND i.stoptime IS NULL AND i.limits && v_limits AND t.tag = ANY(v_limits)
                GROUP BY t.tag
            ) u ON u.tag = lm.name
            WHERE lm.name = ANY(v_limits)
            ORDER BY lm.name
        LOOP
            -- every cap of every limit is looked at: the first full one is the refusal, and which
            -- are near is remembered for the next claim
            IF l.sitemax >= 0 THEN
                IF l.sitecounting = 'perHost' THEN
                    -- a host counts once, however many of its commands carry the tag
                    IF l.n_blade = 0 AND l.n_hosts >= l.sitemax THEN
                        refusal := coalesce(refusal, format(
                            'limit %s is full: %s of %s hosts on the site (SiteMax, perHost)',
                            l.name, l.n_hosts, l.sitemax));
                    END IF;
                    IF l.n_blade = 0 AND l.n_hosts + MARGIN > l.sitemax THEN
                        near := near || l.name;
                    END IF;
                ELSE
                    IF l.n_site >= l.sitemax THEN
                        refusal := coalesce(refusal, format('limit %s is full: %s of %s on the site (SiteMax)',
                                                            l.name, l.n_site, l.sitemax));
                    END IF;
                    IF l.n_site + MARGIN > l.sitemax THEN
                        near := near || l.name;
                    END IF;
                END IF;
            END IF;
            cap := coalesce((l.bladeexceptions ->> p_bname)::integer, l.blademax);
            IF cap >= 0 AND l.n_blade >= cap THEN
                refusal := coalesce(refusal, format('limit %s is full on %s: %s of %s (BladeMax)',
                                                    l.name, p_bname, l.n_blade, cap));
            END IF;
            IF l.n_blade >= SPAN AND l.name = ANY(v_wide) THEN
                near := near || l.name;
            END IF;
            cap := coalesce((l.ownerexceptions ->> v_owner)::integer, l.ownermax);
            IF cap >= 0 AND l.n_owner >= cap THEN
                refusal := coalesce(refusal, format('limit %s is full for %s: %s of %s (OwnerMax)',
                                                    l.name, v_owner, l.n_owner, cap));
            END IF;
            IF cap >= 0 AND l.n_owner + MARGIN > cap THEN
                near := near || l.name;
            END IF;
            -- the shares of the job's projects, then of the owner's crews, each counted (most limits have none)
            IF l.projectshares <> '{}'::jsonb OR l.crewshares <> '{}'::jsonb THEN
                FOR kind, k, cap, n IN
                    SELECT sh.kind, sh.key, sh.cap,
                           (SELECT count(*) FROM invocations i JOIN jobs j ON j.jid = i.jid
                            WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name]
                              AND CASE sh.kind WHEN 'project' THEN j.projects @> ARRAY[sh.key]
                                               ELSE j.owner = ANY(sh.members) END)::integer
                    FROM (SELECT 'project' AS kind, p.key, p.value::integer AS cap, NULL::text[] AS members
                          FROM jsonb_each_text(l.projectshares) p WHERE p.key = ANY(v_projects)
                          UNION ALL
                          SELECT 'crew', c.key, c.value::integer, cr.members
                          FROM jsonb_each_text(l.crewshares) c JOIN crews cr ON cr.crew = c.key
                          WHERE v_owner = ANY(cr.members)) sh
                    ORDER BY sh.kind DESC, sh.key
                LOOP
                    IF n >= cap THEN
                        refusal := coalesce(refusal, format('limit %s is full for %s %s: %s of %s (share)',
                                                            l.name, kind, k, n, cap));
                    END IF;
                    IF n + MARGIN > cap THEN
                        near := near || l.name;
                    END IF;
                END LOOP;
            END IF;
        END LOOP;
        -- tq explain and trace count without locks
        IF NOT p_claim THEN
            RETURN refusal;
        END IF;
        IF cardinality(v_wide) > 0 THEN
            -- the hint for this session's next claim: these limits' near ones
            -- (written only when it changes: near ones it lacks, or far ones it has)
            IF NOT near <@ hint OR hint && v_wide
               AND NOT ARRAY(SELECT unnest(hint) INTERSECT SELECT unnest(v_wide)) <@ near THEN
                hint := ARRAY(SELECT x FROM unnest(hint) AS x WHERE NOT x = ANY(v_wide)
                              UNION SELECT y FROM unnest(near) AS y ORDER BY 1);
                PERFORM set_config('tractor.near_limits', hint::text, false);
            END IF;
        END IF;
        IF refusal IS NOT NULL OR near <@ exact THEN
            RETURN refusal;
        END IF;
        -- counted on one stripe, but near a cap: every stripe of those limits, then count again
        FOR k IN SELECT DISTINCT x FROM unnest(near) AS x WHERE NOT x = ANY(exact) ORDER BY x LOOP
            IF NOT tractor_limit_try_stripes(k, true) THEN
                RETURN format('limit %s is nearly full and being taken by other blades just now', k);
            END IF;
            exact := exact || k;
        END LOOP;
    END LOOP;
END $$;
