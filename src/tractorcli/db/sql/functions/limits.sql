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
CREATE OR REPLACE FUNCTION tractor_limit_tags(p_tags text[], p_app text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a.app = '' OR a.app = ANY(p_tags) THEN p_tags ELSE p_tags || a.app END
    FROM (SELECT regexp_replace(coalesce(p_app, ''), '^.*[/\\]', '') AS app) a
$$;

-- Why the command of job p_jid with limit tags p_tags may not start on blade p_blade (named
-- p_bname) now: the first full limit, as a sentence; NULL when every limit has room.  With
-- p_claim the caller is the claim: it takes each limit's lock first (and is refused when
-- another claim holds it).  VOLATILE: each count sees what other claims committed before the
-- lock was taken.
CREATE OR REPLACE FUNCTION tractor_limit_refusal(p_jid bigint, p_tags text[], p_blade uuid, p_bname text,
                                                 p_claim boolean)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    l limits%ROWTYPE;
    v_owner text;
    v_projects text[];
    v_members text[];
    cap integer;
    n integer;
    k text;
BEGIN
    FOR l IN SELECT * FROM limits WHERE name = ANY(p_tags) ORDER BY name LOOP
        IF p_claim AND NOT pg_try_advisory_xact_lock(hashtext('tractor limit'), hashtext(l.name)) THEN
            RETURN format('limit %s is being taken by another blade just now', l.name);
        END IF;
        IF l.sitemax >= 0 THEN
            IF l.sitecounting = 'perHost' THEN
                -- a host counts once, however many of its commands carry the tag
                IF NOT EXISTS (SELECT 1 FROM invocations i
                               WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name]
                                 AND i.bladeid = p_blade) THEN
                    SELECT count(DISTINCT i.bladeid) INTO n FROM invocations i
                    WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name];
                    IF n >= l.sitemax THEN
                        RETURN format('limit %s is full: %s of %s hosts on the site (SiteMax, perHost)',
                                      l.name, n, l.sitemax);
                    END IF;
                END IF;
            ELSE
                SELECT count(*) INTO n FROM invocations i
                WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name];
                IF n >= l.sitemax THEN
                    RETURN format('limit %s is full: %s of %s on the site (SiteMax)', l.name, n, l.sitemax);
                END IF;
            END IF;
        END IF;
        cap := coalesce((l.bladeexceptions ->> p_bname)::integer, l.blademax);
        IF cap >= 0 THEN
            SELECT count(*) INTO n FROM invocations i
            WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name] AND i.bladeid = p_blade;
            IF n >= cap THEN
                RETURN format('limit %s is full on %s: %s of %s (BladeMax)', l.name, p_bname, n, cap);
            END IF;
        END IF;
        IF v_owner IS NULL THEN
            SELECT j.owner, j.projects INTO v_owner, v_projects FROM jobs j WHERE j.jid = p_jid;
        END IF;
        cap := coalesce((l.ownerexceptions ->> v_owner)::integer, l.ownermax);
        IF cap >= 0 THEN
            SELECT count(*) INTO n FROM invocations i JOIN jobs j ON j.jid = i.jid
            WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name] AND j.owner = v_owner;
            IF n >= cap THEN
                RETURN format('limit %s is full for %s: %s of %s (OwnerMax)', l.name, v_owner, n, cap);
            END IF;
        END IF;
        FOR k, cap IN SELECT s.key, s.value::integer FROM jsonb_each_text(l.projectshares) s
                      WHERE s.key = ANY(v_projects) ORDER BY s.key LOOP
            SELECT count(*) INTO n FROM invocations i JOIN jobs j ON j.jid = i.jid
            WHERE i.current AND i.stoptime IS NULL AND i.limits @> ARRAY[l.name] AND j.projects @> ARRAY[k];
            IF n >= cap THEN
                RETURN format('limit %s is full for project %s: %s of %s (share)', l.name, k, n, cap);
            END IF;
        END LOOP;
        FOR k, cap, v_members IN SELECT s.key, s.value::integer, c.members FROM jsonb_each_text(l.crewshares) s
                      JOIN crews c ON c.crew = s.key
                      WHERE v_owner = ANY(c.members) ORDER BY s.key LOOP
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
