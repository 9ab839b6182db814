-- Fill a fresh job database with finished render jobs, for bench_backup_restore.py.
--
-- Sizes come from two settings the benchmark sets on the session first:
--   bench.jobs            number of jobs
--   bench.tasks_per_job   tasks per job (task 1 is the parent of all others)
-- Each task gets one command with a realistic argv; each task has its tree
-- edge (task 1 hangs off the job itself, parent_tid 0).  Everything is done,
-- like the history a busy site accumulates before --clear-history.
--
-- Expects an empty job database (jids come from jid_seq; tasks are made for
-- every row of `jobs`).

INSERT INTO service_exprs (expr) VALUES ('PixarRender'), ('Nuke,linux') ON CONFLICT (expr) DO NOTHING;

INSERT INTO jobs (owner, spoolhost, spoolfile, spoolcwd, spooladdr, title, assignments, tier, priority,
                  projects, tags, service, envkey, spooltime, starttime, stoptime, elapsedsecs, esttotalsecs,
                  numtasks, numdone, maxtid, maxcid, comment, metadata, phase, scriptformat)
SELECT 'artist' || lpad((j % 40)::text, 2, '0'),
       'ws' || lpad((j % 200)::text, 3, '0') || '.studio.example',
       '/proj/show/seq' || (j / 100) || '/shot' || j || '/render/beauty.alf',
       '/proj/show/seq' || (j / 100) || '/shot' || j || '/render',
       '10.1.' || (j % 250) || '.' || (j % 199 + 1),
       'show seq' || (j / 100) || ' shot' || j || ' beauty v' || (j % 7 + 1),
       jsonb_build_object('SHOT', 'shot' || j, 'FRAMES', '1-' || (n.tasks - 1)),
       'default',
       100 + j % 50,
       ARRAY['show'],
       ARRAY['render', 'beauty'],
       'PixarRender',
       ARRAY['prman-24.4'],
       now() - make_interval(hours => n.jobs - j + 2),
       now() - make_interval(hours => n.jobs - j + 1),
       now() - make_interval(hours => n.jobs - j),
       3600,
       3600,
       n.tasks, n.tasks, n.tasks, n.tasks,
       '',
       '{"dept": "lighting"}',
       'finished',
       'alfred'
FROM (SELECT current_setting('bench.jobs')::int AS jobs,
             current_setting('bench.tasks_per_job')::int AS tasks) AS n,
     generate_series(1, n.jobs) AS j;

INSERT INTO tasks (jid, tid, title, id, state, statetime, readytime, activetime, currcid, haslog,
                   preview, progress, parent_tid, position, pending)
SELECT j.jid, t,
       CASE WHEN t = 1 THEN 'Render ' || j.title ELSE 'Frame ' || (t - 1) END,
       CASE WHEN t = 1 THEN 'all' ELSE NULL END,
       'done',
       j.stoptime,
       j.starttime,
       j.starttime + make_interval(secs => t % 600),
       t,
       true,
       CASE WHEN t = 1 THEN '{}'::text[]
            ELSE ARRAY['sho', j.spoolcwd || '/images/beauty.' || lpad((t - 1)::text, 4, '0') || '.exr'] END,
       100,
       CASE WHEN t = 1 THEN NULL ELSE 1 END,
       CASE WHEN t = 1 THEN 0 ELSE t - 2 END,
       0
FROM jobs j, generate_series(1, j.numtasks) AS t;

INSERT INTO task_edges (jid, parent_tid, child_tid, kind)
SELECT jid, coalesce(parent_tid, 0), tid, 'tree' FROM tasks;

INSERT INTO commands (jid, cid, tid, position, argv, service, svcid, tags, envkey, retryrcodes, metrics,
                      state, statetime)
SELECT j.jid, t, t, 0,
       CASE WHEN t = 1
            THEN ARRAY['/usr/bin/env', 'python3', '/studio/bin/make_movie.py', '--shot', 'shot' || j.jid,
                       '--frames', '1-' || (j.numtasks - 1), j.spoolcwd || '/images/beauty.####.exr']
            ELSE ARRAY['prman', '-Progress', '-t:4', '-recover', '%r', '-cwd', j.spoolcwd,
                       j.spoolcwd || '/rib/beauty.' || lpad((t - 1)::text, 4, '0') || '.rib'] END,
       CASE WHEN t = 1 THEN 'Nuke,linux' ELSE 'PixarRender' END,
       CASE WHEN t = 1 THEN s.nuke ELSE s.render END,
       CASE WHEN t = 1 THEN '{}'::text[] ELSE ARRAY['prman'] END,
       ARRAY['prman-24.4'],
       '{}'::int[],
       '',
       'done',
       j.stoptime
FROM jobs j, generate_series(1, j.numtasks) AS t,
     (SELECT max(svcid) FILTER (WHERE expr = 'PixarRender') AS render,
             max(svcid) FILTER (WHERE expr = 'Nuke,linux') AS nuke FROM service_exprs) AS s;
