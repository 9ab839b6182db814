-- The operations people run (tq, tractor.api.query): on jobs, tasks,
-- commands and blades.  Each is SECURITY DEFINER with a fixed search_path and
-- begins with its permission check (permissions.sql): people may write no
-- table, and reach the state machine's functions (tasks.sql) only through
-- these.  `p_force` is tq --force; `p_as` the user the site's role acts as.
-- Each returns whether the target was found (or what it changed).
--
-- Applied after the migrations by every upgrade (CREATE OR REPLACE): a function lives here,
-- in one file, and nowhere else; a signature clients call is never changed (add _v2 instead).

-- text[] (bigint[]) from a JSON array of strings (numbers)
CREATE OR REPLACE FUNCTION tractor_json_texts(p_value jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN p_value IS NULL OR jsonb_typeof(p_value) = 'null' THEN NULL
                ELSE ARRAY(SELECT jsonb_array_elements_text(p_value)) END
$$;

-- A job's attribute (tq pause, unpause, delete's archive, undelete, chpri,
-- delay, undelay, lock, unlock, chcrews, jattr).  `p_value` is JSON: a
-- boolean for paused/deleted, a number for priority/maxactive, a string
-- (NULL: none) for aftertime/title/comment/metadata/tier/lock's note, an array
-- for tags/projects/envkey/crews/afterjids.
CREATE OR REPLACE FUNCTION tractor_job_set_v1(p_jid bigint, p_key text, p_value jsonb, p_force boolean, p_as text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_text text := p_value #>> '{}';
    v_tierpri integer;
BEGIN
    PERFORM tractor_guard_jobs(ARRAY[p_jid], p_force, p_as);
    CASE p_key
    WHEN 'paused' THEN
        UPDATE jobs SET pausetime = CASE WHEN v_text::boolean THEN coalesce(pausetime, now()) END WHERE jid = p_jid;
    WHEN 'deleted' THEN
        UPDATE jobs SET deletetime = CASE WHEN v_text::boolean THEN coalesce(deletetime, now()) END WHERE jid = p_jid;
    WHEN 'priority' THEN
        UPDATE ready SET priority = v_text::double precision WHERE jid = p_jid;
        UPDATE jobs SET priority = v_text::double precision WHERE jid = p_jid;
    WHEN 'tier' THEN
        -- another of the site's tiers (tractor.toml [tiers]): its ready commands move with it
        SELECT t.priority INTO v_tierpri FROM tiers t WHERE t.name = lower(v_text);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown tier %: the site''s tiers are %', v_text,
                (SELECT string_agg(t.name, ', ' ORDER BY t.priority DESC, t.name) FROM tiers t)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        UPDATE ready SET tierpri = v_tierpri WHERE jid = p_jid;
        UPDATE jobs SET tier = v_text, tierpri = v_tierpri WHERE jid = p_jid;
    WHEN 'aftertime' THEN
        UPDATE jobs SET aftertime = v_text::timestamptz WHERE jid = p_jid;
    WHEN 'lock' THEN
        UPDATE jobs SET lockowner = tractor_acting_user(p_as), locktime = now(), locknote = v_text WHERE jid = p_jid;
    WHEN 'unlock' THEN
        UPDATE jobs SET lockowner = NULL, locktime = NULL, locknote = NULL WHERE jid = p_jid;
    WHEN 'title' THEN
        UPDATE jobs SET title = v_text WHERE jid = p_jid;
    WHEN 'comment' THEN
        UPDATE jobs SET comment = v_text WHERE jid = p_jid;
    WHEN 'metadata' THEN
        UPDATE jobs SET metadata = v_text WHERE jid = p_jid;
    WHEN 'maxactive' THEN
        IF v_text::integer < 0 THEN  -- (the jobs table has no CHECK: migration 20)
            RAISE EXCEPTION 'maxactive is 0 (no cap) or more, not %', v_text USING ERRCODE = 'invalid_parameter_value';
        END IF;
        UPDATE jobs SET maxactive = v_text::integer WHERE jid = p_jid;
    WHEN 'tags' THEN
        UPDATE jobs SET tags = tractor_json_texts(p_value) WHERE jid = p_jid;
    WHEN 'projects' THEN
        UPDATE jobs SET projects = tractor_json_texts(p_value) WHERE jid = p_jid;
    WHEN 'envkey' THEN
        UPDATE jobs SET envkey = tractor_json_texts(p_value) WHERE jid = p_jid;
    WHEN 'crews' THEN
        UPDATE jobs SET crews = tractor_json_texts(p_value) WHERE jid = p_jid;
    WHEN 'afterjids' THEN
        UPDATE jobs SET afterjids = tractor_json_texts(p_value)::bigint[] WHERE jid = p_jid;
    ELSE
        RAISE EXCEPTION 'no job attribute %', p_key USING ERRCODE = 'invalid_parameter_value';
    END CASE;
    RETURN FOUND;
END $$;

-- What happens to a job's tasks: 'retryerrors', 'skiperrors',
-- 'retryactive' (its tasks in that state), 'interrupt' (paused, active
-- tasks killed), 'delete' (active tasks killed, the job archived),
-- 'restart' (tractor_job_restart_v1).  Returns the tids acted on.
CREATE OR REPLACE FUNCTION tractor_job_tasks_v1(p_jid bigint, p_op text, p_force boolean, p_as text)
RETURNS integer[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_state text := CASE p_op WHEN 'retryerrors' THEN 'error' WHEN 'skiperrors' THEN 'error' ELSE 'active' END;
    v_tids integer[];
    v_done integer[];
BEGIN
    PERFORM tractor_guard_jobs(ARRAY[p_jid], p_force, p_as);
    IF p_op = 'restart' THEN
        RETURN tractor_job_restart_v1(p_jid);
    ELSIF p_op NOT IN ('retryerrors', 'skiperrors', 'retryactive', 'interrupt', 'delete') THEN
        RAISE EXCEPTION 'no job operation %', p_op USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_op = 'interrupt' THEN
        UPDATE jobs SET pausetime = coalesce(pausetime, now()) WHERE jid = p_jid;
    END IF;
    SELECT coalesce(array_agg(t.tid ORDER BY t.tid), ARRAY[]::integer[]) INTO v_tids
    FROM tasks t WHERE t.jid = p_jid AND t.state = v_state;
    IF cardinality(v_tids) > 0 THEN
        IF p_op IN ('retryerrors', 'retryactive') THEN
            v_done := tractor_task_retry_v1(p_jid, v_tids, false);
        ELSIF p_op = 'skiperrors' THEN
            v_done := tractor_task_skip_v1(p_jid, v_tids);
        ELSE
            v_done := tractor_task_kill_v1(p_jid, v_tids);
        END IF;
    END IF;
    IF p_op = 'delete' THEN
        UPDATE jobs SET deletetime = coalesce(deletetime, now()) WHERE jid = p_jid;
    END IF;
    RETURN coalesce(v_done, ARRAY[]::integer[]);
END $$;

-- tq retry (p_op 'retry', resume with p_recover), skip, kill of tasks of
-- any jobs, as (p_jids[i], p_tids[i]) pairs; the pairs acted on.
CREATE OR REPLACE FUNCTION tractor_tasks_v1(p_op text, p_jids bigint[], p_tids integer[], p_recover boolean,
                                            p_force boolean, p_as text)
RETURNS TABLE (jid bigint, tid integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM tractor_guard_jobs(ARRAY(SELECT DISTINCT u.j FROM unnest(p_jids) AS u(j)), p_force, p_as);
    CASE p_op
    WHEN 'retry' THEN
        RETURN QUERY SELECT r.jid, r.tid FROM tractor_tasks_retry_v1(p_jids, p_tids, p_recover) r ORDER BY 1, 2;
    WHEN 'skip' THEN
        RETURN QUERY SELECT r.jid, r.tid FROM tractor_tasks_skip_v1(p_jids, p_tids) r ORDER BY 1, 2;
    WHEN 'kill' THEN
        RETURN QUERY SELECT r.jid, r.tid FROM tractor_tasks_kill_v1(p_jids, p_tids) r ORDER BY 1, 2;
    ELSE
        RAISE EXCEPTION 'no task operation %', p_op USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END $$;

-- tq chkeys (cattr service): the command's own service expression
-- `p_service` and its effective one `p_expr` (command AND the job's -service
-- AND NOT -avoid, made by the client from the job's row).  The command's
-- queue row (if it is ready) and the command are locked in that order, as a
-- blade's claim takes them; the expression is stored once and added to the
-- job's svcids (claims pick jobs by them; one no longer used stays listed);
-- a queue row is re-pointed and blades woken.  Returns the new svcid, NULL
-- if there is no such command.
CREATE OR REPLACE FUNCTION tractor_command_service_v1(p_jid bigint, p_cid integer, p_service text, p_expr text,
                                                      p_force boolean, p_as text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_svcid integer;
BEGIN
    PERFORM tractor_guard_jobs(ARRAY[p_jid], p_force, p_as);
    PERFORM 1 FROM ready r WHERE r.jid = p_jid AND r.cid = p_cid FOR UPDATE;
    PERFORM 1 FROM commands c WHERE c.jid = p_jid AND c.cid = p_cid FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT s.svcid INTO v_svcid FROM tractor_service_ids_v1(ARRAY[p_expr]) s;
    UPDATE commands SET service = p_service, svcid = v_svcid WHERE jid = p_jid AND cid = p_cid;
    UPDATE jobs SET svcids = ARRAY(SELECT DISTINCT s FROM unnest(svcids || v_svcid) AS u(s) ORDER BY s)
    WHERE jid = p_jid AND NOT (v_svcid = ANY (svcids));
    -- a separate statement: also finds a queue row inserted by a transaction that held the command
    UPDATE ready SET svcid = v_svcid WHERE jid = p_jid AND cid = p_cid AND svcid IS DISTINCT FROM v_svcid;
    IF FOUND THEN
        PERFORM pg_notify('tractor_ready', p_jid::text);
    END IF;
    RETURN v_svcid;
END $$;

-- tq cattr: one of a command's launch attributes (the next launch reads
-- it).  `p_value` (JSON) sets it: an array for argv/tags/envkey/retryrcodes,
-- a string for msg/metadata, a number (NULL: no bound) for minrunsecs/
-- maxrunsecs/minslots/maxslots, a boolean for resumepin.  For the list
-- attributes `p_add` and `p_remove` (arrays) edit the current list instead:
-- items of p_add not there yet are added (argv: all, appended), every
-- occurrence of those of p_remove removed.  False if there is no such command.
CREATE OR REPLACE FUNCTION tractor_command_set_v1(p_jid bigint, p_cid integer, p_key text, p_value jsonb,
                                                  p_add jsonb, p_remove jsonb, p_force boolean, p_as text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c commands%ROWTYPE;
    v_list text[];
    v_text text := p_value #>> '{}';
BEGIN
    PERFORM tractor_guard_jobs(ARRAY[p_jid], p_force, p_as);
    SELECT * INTO c FROM commands WHERE jid = p_jid AND cid = p_cid FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_key IN ('argv', 'tags', 'envkey', 'retryrcodes') THEN
        IF p_add IS NULL AND p_remove IS NULL THEN
            v_list := tractor_json_texts(p_value);
        ELSE
            v_list := CASE p_key WHEN 'argv' THEN c.argv WHEN 'tags' THEN c.tags WHEN 'envkey' THEN c.envkey
                                 ELSE c.retryrcodes::text[] END;
            v_list := v_list || ARRAY(SELECT a FROM jsonb_array_elements_text(coalesce(p_add, '[]')) WITH ORDINALITY
                                          AS x(a, n)
                                      WHERE p_key = 'argv' OR NOT (a = ANY (v_list)) ORDER BY n);
            v_list := ARRAY(SELECT a FROM unnest(v_list) WITH ORDINALITY AS x(a, n)
                            WHERE NOT (a = ANY (tractor_json_texts(coalesce(p_remove, '[]')))) ORDER BY n);
        END IF;
        IF p_key = 'argv' AND cardinality(v_list) = 0 THEN
            RAISE EXCEPTION 'argv cannot be empty' USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    CASE p_key
    WHEN 'argv' THEN UPDATE commands SET argv = v_list WHERE jid = p_jid AND cid = p_cid;
    WHEN 'tags' THEN UPDATE commands SET tags = v_list WHERE jid = p_jid AND cid = p_cid;
    WHEN 'envkey' THEN UPDATE commands SET envkey = v_list WHERE jid = p_jid AND cid = p_cid;
    WHEN 'retryrcodes' THEN UPDATE commands SET retryrcodes = v_list::integer[] WHERE jid = p_jid AND cid = p_cid;
    WHEN 'msg' THEN UPDATE commands SET msg = v_text WHERE jid = p_jid AND cid = p_cid;
    WHEN 'metadata' THEN UPDATE commands SET metadata = v_text WHERE jid = p_jid AND cid = p_cid;
    WHEN 'minrunsecs' THEN UPDATE commands SET minrunsecs = v_text::double precision WHERE jid = p_jid AND cid = p_cid;
    WHEN 'maxrunsecs' THEN UPDATE commands SET maxrunsecs = v_text::double precision WHERE jid = p_jid AND cid = p_cid;
    WHEN 'minslots' THEN UPDATE commands SET minslots = v_text::integer WHERE jid = p_jid AND cid = p_cid;
    WHEN 'maxslots' THEN UPDATE commands SET maxslots = v_text::integer WHERE jid = p_jid AND cid = p_cid;
    WHEN 'resumepin' THEN UPDATE commands SET resumepin = v_text::boolean WHERE jid = p_jid AND cid = p_cid;
    ELSE
        RAISE EXCEPTION 'no command attribute %', p_key USING ERRCODE = 'invalid_parameter_value';
    END CASE;
    RETURN true;
END $$;

-- tq nimby / unnimby (p_key 'nimby': '' open, '1' local jobs only, else
-- the one user whose jobs it takes) and delist (p_key 'delist').  Returns
-- the blade's name, NULL if there is no such blade.
CREATE OR REPLACE FUNCTION tractor_blade_set_v1(p_bladeid uuid, p_key text, p_value text, p_as text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_name text;
BEGIN
    PERFORM tractor_guard_blades(p_as);
    CASE p_key
    WHEN 'nimby' THEN UPDATE blades SET nimby = p_value WHERE bladeid = p_bladeid RETURNING name INTO v_name;
    WHEN 'delist' THEN UPDATE blades SET cleartime = now() WHERE bladeid = p_bladeid RETURNING name INTO v_name;
    ELSE
        RAISE EXCEPTION 'no blade operation %', p_key USING ERRCODE = 'invalid_parameter_value';
    END CASE;
    RETURN v_name;
END $$;

-- tq eject: the tasks the blade runs now are retried; their (jid, tid).
CREATE OR REPLACE FUNCTION tractor_blade_eject_v1(p_bladeid uuid, p_as text)
RETURNS TABLE (jid bigint, tid integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_jids bigint[];
    v_tids integer[];
BEGIN
    PERFORM tractor_guard_blades(p_as);
    SELECT array_agg(r.jid ORDER BY r.jid, r.tid), array_agg(r.tid ORDER BY r.jid, r.tid) INTO v_jids, v_tids
    FROM (SELECT DISTINCT i.jid, i.tid FROM invocations i
          WHERE i.bladeid = p_bladeid AND i.current AND i.stoptime IS NULL) r;
    IF v_jids IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM tractor_tasks_retry_v1(v_jids, v_tids, false);
    RETURN QUERY SELECT u.j, u.t FROM unnest(v_jids, v_tids) AS u(j, t);
END $$;
