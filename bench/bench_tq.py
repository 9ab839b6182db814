"""tq: queries and operations on a job database of a million tasks.

A scratch site gets 1,000 jobs of 1,000 one-command tasks (quick: 100 jobs):
one job is spooled through the library (`tractorcli.db.spool.spool_job`), so
its rows are exactly what a spool writes at the current schema, and the
others are copied from it in SQL (new jids from jid_seq; every column of
jobs, tasks, commands, ready and task_edges copied as spooled, then owner,
title and spool time varied).  Then every job is run to where a busy farm
leaves it: 990 tasks done and 10 in error (every 100th tid), each command with
one finished invocation (rcode 0 or 1), no ready rows, the counters
(numdone, numerror, ...) consistent and the job `finished` as
tractor_job_check leaves a job with nothing left to run.  VACUUM (ANALYZE).

Figures:

* `select_job_errors_db`: one job's error tasks, the SQL
  `tractorcli.query.build_select("tasks", "jid=N and error")` makes with tq's
  default task columns and sort, timed in the database (EXPLAIN ANALYZE
  execution time), median over several jids; the rows are checked (10).
* `tq_jobs_all`: `tq jobs --limit 0` (every job) end to end, output to
  /dev/null (plain format); `tq_jobs_default`: `tq jobs` with the site's
  default row cap.  The listed row count is checked once.
* `tq_retry_errors`: `tq --yes --force retry error` of all 10,000 error tasks;
  afterwards every one of them must be ready with its command queued and no
  error left.  Between runs the tasks are put back in error in SQL.
* `tq_skip_errors`: `tq --yes --force skip error` of the same 10,000 tasks
  (put back in error first); afterwards every task is done and every job
  finished.  No target (informational).
* `tq_help`: `tq --help`, wall time of the process, median.

Targets (issue 5): selective query under 50 ms in the database, `tq jobs`
under 300 ms end to end, the 10,000-task retry under 2 s, `tq --help` under
150 ms.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    BenchError,
    Site,
    clean_env,
    figure,
    log,
    pick_port,
    summary,
    time_argv,
)

TASKS_PER_JOB = 1000
ERROR_EVERY = 100  # tid % 100 == 0 is in error: 10 per job
JOBS_FULL = 1000
JOBS_QUICK = 100
TASK_COLS = ("jid", "tid", "user", "title", "state", "statetime", "Blade.name")  # tq tasks' defaults


def tq_script() -> str:
    exe = Path(sys.executable).parent / "tq"
    found = str(exe) if exe.is_file() else shutil.which("tq")
    if not found:
        raise BenchError("tq is not installed (pip install -e .)")
    return found


def _columns(conn, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum", (table,)).fetchall()]


def _copy_sql(conn, table: str, replace: dict[str, str]) -> str:
    """INSERT INTO table SELECT every column of the template's rows `t`, with `n.jid` for jid."""
    cols = _columns(conn, table)
    exprs = [replace.get(c, f"t.{c}") for c in cols]
    return (f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
            f"FROM {table} t CROSS JOIN bench_newjobs n WHERE t.jid = %(tjid)s")


def build(site: Site, jobs: int) -> int:
    """Fill the site's database; returns the template jid."""
    from tractorcli.db.connection import connect
    from tractorcli.db.spool import spool_job
    from tractorcli.jobs.model import Command, Job, Task, resolve

    job = Job(title="show seq1 shot1 beauty v1", service="PixarRender", subtasks=tuple(
        Task(f"Frame {i}", cmds=(Command(("prman", "-Progress", "-t:4", "-recover", "%r",
                                          f"/proj/show/seq1/shot1/rib/beauty.{i:04d}.rib"),
                                         service="PixarRender"),))
        for i in range(1, TASKS_PER_JOB + 1)))
    t0 = time.perf_counter()
    with connect(site.settings, autocommit=True) as conn:
        tjid = spool_job(conn, resolve(job), owner="artist00", spoolhost="ws000.studio.example")
    log(f"template job {tjid} spooled in {time.perf_counter() - t0:.2f} s; copying it {jobs - 1} times")
    with site.connect() as conn:
        conn.execute("CREATE TEMP TABLE bench_newjobs AS "
                     "SELECT nextval('jid_seq') AS jid, k FROM generate_series(1, %s) AS k ORDER BY k", (jobs - 1,))
        p = {"tjid": tjid}
        conn.execute(_copy_sql(conn, "jobs", {
            "jid": "n.jid",
            "owner": "'artist' || lpad((n.k %% 40)::text, 2, '0')",
            "spoolhost": "'ws' || lpad((n.k %% 200)::text, 3, '0') || '.studio.example'",
            "title": "'show seq' || (n.k / 100 + 1) || ' shot' || (n.k + 1) || ' beauty v' || (n.k %% 7 + 1)",
            "priority": "100 + n.k %% 50",
            "spooltime": "t.spooltime + make_interval(secs => n.k)",
        }), p)
        for table in ("tasks", "commands", "task_edges", "ready"):
            conn.execute(_copy_sql(conn, table, {"jid": "n.jid"}), p)
        conn.commit()
        log("running every job to 990 done and 10 error tasks")
        conn.execute("DELETE FROM ready")
        conn.execute(f"""
            UPDATE tasks SET state = CASE WHEN tid % {ERROR_EVERY} = 0 THEN 'error' ELSE 'done' END,
                   statetime = readytime + make_interval(secs => 60 + tid % 600),
                   activetime = readytime + make_interval(secs => tid % 600),
                   progress = CASE WHEN tid % {ERROR_EVERY} = 0 THEN 40 ELSE 100 END,
                   haslog = true, currcid = NULL""")
        conn.execute(f"""
            UPDATE commands SET state = CASE WHEN tid % {ERROR_EVERY} = 0 THEN 'error' ELSE 'done' END,
                   statetime = statetime + make_interval(secs => 60 + tid % 600)""")
        conn.execute(f"""
            INSERT INTO invocations (jid, tid, cid, iid, current, bladename, starttime, stoptime, pid,
                                     elapsedreal, elapsedapp, elapsedsys, rcode)
            SELECT c.jid, c.tid, c.cid, 1, true, 'rack' || lpad((c.cid % 64)::text, 2, '0'),
                   c.statetime - interval '60 s', c.statetime, 10000 + c.cid, 60, 110, 3,
                   CASE WHEN c.tid % {ERROR_EVERY} = 0 THEN 1 ELSE 0 END
            FROM commands c""")
        conn.execute("""
            UPDATE jobs j SET numblocked = 0, numready = 0, numactive = 0, numerror = s.error,
                   numdone = s.done, starttime = j.spooltime + interval '5 s', phase = 'finished',
                   stoptime = j.spooltime + interval '1 h', elapsedsecs = 3595
            FROM (SELECT jid, count(*) FILTER (WHERE state = 'error') AS error,
                         count(*) FILTER (WHERE state = 'done') AS done FROM tasks GROUP BY jid) s
            WHERE s.jid = j.jid""")
        conn.commit()
    with site.connect(autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    return tjid


def put_back_in_error(site: Site) -> None:
    """Undo a retry of the error tasks (no blade ran anything since)."""
    with site.connect() as conn:
        conn.execute("DELETE FROM ready")
        conn.execute(f"UPDATE tasks SET state = 'error', progress = 40, currcid = NULL, recover = false "
                     f"WHERE tid % {ERROR_EVERY} = 0")
        conn.execute(f"UPDATE commands SET state = 'error' WHERE tid % {ERROR_EVERY} = 0")
        conn.execute(f"UPDATE invocations SET current = true WHERE tid % {ERROR_EVERY} = 0")
        conn.execute("UPDATE jobs SET numready = 0, numblocked = 0, numerror = numtasks / %s, "
                     "numdone = numtasks - numtasks / %s, phase = 'finished', "
                     "stoptime = spooltime + interval '1 h'", (ERROR_EVERY, ERROR_EVERY))
        conn.commit()
    with site.connect(autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) tasks, commands, jobs, ready, invocations")


def check_counts(site: Site, jobs: int, state: str) -> None:
    want_err = jobs * TASKS_PER_JOB // ERROR_EVERY
    with site.connect(autocommit=True) as conn:
        tasks = dict(conn.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall())
        ready_rows = conn.execute("SELECT count(*) FROM ready").fetchone()[0]
        bad_jobs = conn.execute(
            "SELECT count(*) FROM jobs j JOIN (SELECT jid, count(*) FILTER (WHERE state = 'blocked') AS b, "
            "count(*) FILTER (WHERE state = 'ready') AS r, count(*) FILTER (WHERE state = 'active') AS a, "
            "count(*) FILTER (WHERE state = 'error') AS e, count(*) FILTER (WHERE state = 'done') AS d "
            "FROM tasks GROUP BY jid) s ON s.jid = j.jid "
            "WHERE (j.numblocked, j.numready, j.numactive, j.numerror, j.numdone) <> (s.b, s.r, s.a, s.e, s.d)"
        ).fetchone()[0]
    want = {"done": jobs * TASKS_PER_JOB - want_err, state: want_err}
    if tasks != want or ready_rows != (want_err if state == "ready" else 0) or bad_jobs:
        raise BenchError(f"expected tasks {want} ({ready_rows} ready rows, {bad_jobs} jobs with wrong counters); "
                         f"found {tasks}")


def select_errors(site: Site, jids: list[int]) -> tuple[list[float], list[float]]:
    """EXPLAIN ANALYZE execution time (ms) of one job's error tasks, and the client round trip (ms)."""
    from tractorcli.query import build_select

    db_ms, rt_ms = [], []
    with site.connect(autocommit=True) as conn:
        for jid in jids:
            q = build_select("tasks", f"jid={jid} and error", columns=TASK_COLS, sortby=["jid", "tid"],
                             user="artist00")
            for _ in range(2):  # warm
                rows = conn.execute(q.sql, q.params).fetchall()
            if len(rows) != TASKS_PER_JOB // ERROR_EVERY:
                raise BenchError(f"jid={jid} and error: {len(rows)} rows")
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + q.sql, q.params).fetchone()[0]
            db_ms.append(plan[0]["Execution Time"])
            t0 = time.perf_counter()
            conn.execute(q.sql, q.params).fetchall()
            rt_ms.append((time.perf_counter() - t0) * 1000)
    return db_ms, rt_ms


def run(quick: bool) -> list[dict]:
    jobs = JOBS_QUICK if quick else JOBS_FULL
    reps = 3 if quick else 7
    tq = tq_script()
    out: list[dict] = []
    with Site("tq", pick_port(9926)) as site:
        site.dbctl("--start-for-engine", timeout=600)
        t0 = time.perf_counter()
        tjid = build(site, jobs)
        fill_s = time.perf_counter() - t0
        check_counts(site, jobs, "error")
        ntasks = site.count("tasks")
        out.append(figure("task_rows", ntasks, "tasks", f"== {jobs * TASKS_PER_JOB}", jobs=jobs))
        out.append(figure("fill", round(fill_s, 1), "s", note="spool one job, copy it in SQL, set states, VACUUM"))
        base = [tq, "--configdir", str(site.config_dir)]

        log("selective query: one job's error tasks")
        jids = [tjid + k * (jobs - 1) // 8 for k in range(9)]
        db_ms, rt_ms = select_errors(site, jids)
        out.append(figure("select_job_errors_db", **summary(db_ms), unit="ms", target="< 50",
                          note="EXPLAIN ANALYZE execution time of build_select('tasks', 'jid=N and error')"))
        out.append(figure("select_job_errors_roundtrip", **summary(rt_ms), unit="ms",
                          note="the same query from Python (psycopg), send to last row"))

        log("tq jobs")
        proc = subprocess.run([*base, "jobs", "--limit", "0", "--nh"], capture_output=True, text=True,
                              env=clean_env(), check=False)
        listed = len([ln for ln in proc.stdout.splitlines() if ln.strip() and not ln.startswith("=")])
        if proc.returncode != 0 or listed != jobs:
            raise BenchError(f"tq jobs --limit 0 listed {listed} rows (exit {proc.returncode}): {proc.stderr[-500:]}")
        for argv, name, note in (([*base, "jobs", "--limit", "0"], "tq_jobs_all", f"all {jobs} jobs, plain format"),
                                 ([*base, "jobs"], "tq_jobs_default", "the site's default row cap")):
            time_argv(argv)
            samples = []
            for _ in range(reps):
                samples.append(time_argv(argv))
            out.append(figure(name, **summary(samples, 1000), unit="ms", target="< 300", note=note,
                              argv=argv[:1] + argv[3:]))

        log(f"tq --yes --force retry error ({jobs * TASKS_PER_JOB // ERROR_EVERY} tasks)")
        argv = [*base, "--yes", "--force", "retry", "error"]
        samples = []
        for i in range(1 if quick else 3):
            if i:
                put_back_in_error(site)
                check_counts(site, jobs, "error")
            samples.append(time_argv(argv, timeout=600))
            check_counts(site, jobs, "ready")
        out.append(figure("tq_retry_errors", **summary(samples), unit="s", target="< 2",
                          note=f"{jobs * TASKS_PER_JOB // ERROR_EVERY} error tasks retried, then checked ready",
                          argv=argv[:1] + argv[3:]))

        log(f"tq --yes --force skip error ({jobs * TASKS_PER_JOB // ERROR_EVERY} tasks)")
        argv = [*base, "--yes", "--force", "skip", "error"]
        samples = []
        for _ in range(1 if quick else 3):
            put_back_in_error(site)
            check_counts(site, jobs, "error")
            samples.append(time_argv(argv, timeout=600))
            with site.connect(autocommit=True) as conn:
                left = conn.execute("SELECT count(*) FROM tasks WHERE state <> 'done'").fetchone()[0]
                live = conn.execute("SELECT count(*) FROM jobs WHERE phase <> 'finished' OR numdone <> numtasks"
                                    ).fetchone()[0]
            if left or live:
                raise BenchError(f"after skip: {left} tasks not done, {live} jobs not finished")
        out.append(figure("tq_skip_errors", **summary(samples), unit="s",
                          note=f"{jobs * TASKS_PER_JOB // ERROR_EVERY} error tasks skipped; every job then finished",
                          argv=argv[:1] + argv[3:]))

        log("tq --help")
        argv = [tq, "--help"]
        for _ in range(2):
            time_argv(argv)
        samples = [time_argv(argv) for _ in range(8 if quick else 20)]
        out.append(figure("tq_help", **summary(samples, 1000), unit="ms", target="< 150"))
    return out

