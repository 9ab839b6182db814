-- Limits (limits.toml, loaded into the `limits` table): how many commands carrying a tag may run
-- at once on the site, on one blade, for one owner, project or crew.  The claim asks
-- tractor_limit_refusal before it takes a command whose tags name a limit; tq explain and tq
-- trace ask it too, without locks.
--
-- What is in use is counted from the running invocations (their `limits`, set by the claim),
-- never kept in a counter: every way a command ends (finish, kill, retry, lost blade, delete)
-- lowers the count with no code of its own.  Two claims must not both take the last place of
-- a limit: the claim holds an advisory lock per limit until it commits; a claim that cannot get
-- it at once leaves the command ready for its next pass (it never waits, so it cannot deadlock
-- with another claim or with a finishing blade).
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

-- Why the command of job p_jid with limit tags p_tags may not start on blade p_blade (named
-- p_bname) now: the first full limit, as a sentence; NULL when every limit has room.  With
-- p_claim the caller is the claim: it takes every such limit's lock first (and is refused when
-- another claim holds one).  VOLATILE: each count sees what other claims committed before the
-- locks were taken.  One scan of the running invocations carrying any of the tags gives every
-- limit's site, host, blade and owner counts; project and crew shares count on their own.
CREATE OR REPLACE FUNCTION tractor_limit_refusal(p_jid bigint, p_tags text[], p_blade uuid, p_bname text,
                                                 p_claim boolean)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    l record;
    v_owner text;
    v_projects text[];
    v_members text[];
    cap integer;
    n integer;
    k text;
BEGIN
    IF p_claim AND EXISTS (
            SELECT 1 FROM limits lm WHERE lm.name = ANY(p_tags)
              AND NOT pg_try_advisory_xact_lock(hashtext('tractor limit'), hashtext(lm.name))) THEN
        RETURN format('limit %s is being taken by another blade just now',
                      (SELECT string_agg(lm.name, ', ' ORDER BY lm.name) FROM limits lm WHERE lm.name = ANY(p_tags)));
    END IF;
    SELECT j.owner, j.projects INTO v_owner, v_projects FROM jobs j WHERE j.jid = p_jid;
    FOR l IN
        SELECT lm.*, coalesce(u.n_site, 0) AS n_site, coalesce(u.n_hosts, 0) AS n_hosts,
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
        IF l.sitemax >= 0 THEN
            IF l.sitecounting = 'perHost' THEN
                -- a host counts once, however many of its commands carry the tag
                IF l.n_blade = 0 AND l.n_hosts >= l.sitemax THEN
                    RETURN format('limit %s is full: %s of %s hosts on the site (SiteMax, perHost)',
                                  l.name, l.n_hosts, l.sitemax);
                END IF;
            ELSIF l.n_site >= l.sitemax THEN
                RETURN format('limit %s is full: %s of %s on the site (SiteMax)', l.name, l.n_site, l.sitemax);
            END IF;
        END IF;
        cap := coalesce((l.bladeexceptions ->> p_bname)::integer, l.blademax);
        IF cap >= 0 AND l.n_blade >= cap THEN
            RETURN format('limit %s is full on %s: %s of %s (BladeMax)', l.name, p_bname, l.n_blade, cap);
        END IF;
        cap := coalesce((l.ownerexceptions ->> v_owner)::integer, l.ownermax);
        IF cap >= 0 AND l.n_owner >= cap THEN
            RETURN format('limit %s is full for %s: %s of %s (OwnerMax)', l.name, v_owner, l.n_owner, cap);
        END IF;
        FOR k, cap IN SELECT sh.key, sh.value::integer FROM jsonb_each_text(l.projectshares) sh
                      WHERE sh.key = ANY(v_projects) ORDER BY sh.key LOOP
            SELECT count(*) INTO n FROM invocations i JOIN jobs j ON j.jid = i.jid
            WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name] AND j.projects @> ARRAY[k];
            IF n >= cap THEN
                RETURN format('limit %s is full for project %s: %s of %s (share)', l.name, k, n, cap);
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
            END IF;
        END LOOP;
    END LOOP;
    RETURN NULL;
END $$;
