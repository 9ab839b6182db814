"""backup_restore: backup and restore of a job database holding many task rows.

A scratch site is filled with `fill.sql` (1,000 jobs x 1,000 tasks = 1,000,000
task rows, with their tree edges and one command each; --quick: 50 jobs), then
with the installed `tractor-dbctl`:

* online backup (`--backup FILE` while the server runs: pg_basebackup);
* offline backup (`--backup FILE` after `--stop`: tarball of the data dir);
* restore (`--destroy --yes`, then `--restore FILE`) of the offline backup;
* restore with `--verify` of the offline backup;
* restore of the online backup (and the first start after it, which replays WAL).

After every restore the server is started and the task and command rows are
counted: a restore that loses rows fails the benchmark instead of looking fast.

Throughput is given two ways: the data directory's disk usage (du) divided
by the time, and the backup file's size divided by the time.  For
comparison, `tar | gzip -1` and `tar -xzf` of the same data are timed too.
"""

from __future__ import annotations

import shutil
import time

from _common import (
    BENCH_DIR,
    MB,
    BenchError,
    Site,
    du_bytes,
    figure,
    log,
    pick_port,
    time_argv,
)

TASKS_PER_JOB = 1000
JOBS_FULL = 1000
JOBS_QUICK = 50


def fill(site: Site, jobs: int, tasks_per_job: int) -> float:
    sql = (BENCH_DIR / "fill.sql").read_text()
    t0 = time.perf_counter()
    with site.connect() as conn:
        conn.execute("SELECT set_config('bench.jobs', %s, false), set_config('bench.tasks_per_job', %s, false)",
                     (str(jobs), str(tasks_per_job)))
        conn.execute(sql)
        conn.commit()
    secs = time.perf_counter() - t0
    with site.connect(autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    return secs


def check_rows(site: Site, expected_tasks: int, expected_jobs: int, what: str) -> int:
    """Start the restored site, count rows, stop it again. Fails loudly on a mismatch."""
    site.dbctl("--start")
    try:
        tasks, cmds, jobs = site.count("tasks"), site.count("commands"), site.count("jobs")
    finally:
        site.dbctl("--stop")
    if (tasks, cmds, jobs) != (expected_tasks, expected_tasks, expected_jobs):
        raise BenchError(f"after {what}: {jobs} jobs, {tasks} tasks, {cmds} commands; "
                         f"expected {expected_jobs}, {expected_tasks}, {expected_tasks}")
    return tasks


def _rates(prefix: str, secs: float, dir_bytes: int, file_bytes: int, note: str) -> list[dict]:
    return [
        figure(prefix, round(secs, 3), "s", None, note=note),
        figure(f"{prefix}_rate_dir", round(dir_bytes / MB / secs, 1), "MB/s", None,
               note=f"data dir {dir_bytes / MB:.0f} MB (du) / {prefix}"),
        figure(f"{prefix}_rate_file", round(file_bytes / MB / secs, 1), "MB/s", None,
               note=f"backup file {file_bytes / MB:.0f} MB / {prefix}"),
    ]


def _shell_timed(cmd: str) -> float:
    return time_argv(["bash", "-o", "pipefail", "-c", cmd])


def run(quick: bool) -> list[dict]:
    jobs = JOBS_QUICK if quick else JOBS_FULL
    expected = jobs * TASKS_PER_JOB
    out: list[dict] = []
    with Site("backup", pick_port(9925)) as site:
        backups = site.root / "backups"
        backups.mkdir()
        online, offline = backups / "online.tgz", backups / "offline.tgz"

        log(f"new site on port {site.port}; filling {jobs} jobs x {TASKS_PER_JOB} tasks")
        site.dbctl("--start-for-engine")
        fill_secs = fill(site, jobs, TASKS_PER_JOB)
        tasks = site.count("tasks")
        if tasks != expected:
            raise BenchError(f"fill.sql made {tasks} task rows, expected {expected}")
        with site.connect(autocommit=True) as conn:
            db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        pgdata = site.db_data_dir
        out.append(figure("task_rows", tasks, "rows", None, note=f"{jobs} jobs; as many commands and tree edges"))
        out.append(figure("fill", round(fill_secs, 2), "s", None, note="fill.sql in one transaction (not a target)"))
        out.append(figure("database_size", round(db_bytes / MB, 1), "MB", None, note="pg_database_size of the job db"))

        running_dir = du_bytes(pgdata)
        log(f"online backup ({running_dir / MB:.0f} MB data dir)")
        secs = time_argv(site.argv("--backup", str(online)))
        out += _rates("backup_online", secs, running_dir, online.stat().st_size,
                      "--backup while running (pg_basebackup, streamed into a gzip tarball)")
        out.append(figure("backup_online_file_size", round(online.stat().st_size / MB, 1), "MB", None))

        site.dbctl("--stop")
        stopped_dir = du_bytes(pgdata)
        out.append(figure("data_dir_size", round(stopped_dir / MB, 1), "MB", None, note="du of the stopped data dir"))
        out.append(figure("data_dir_pg_wal_size", round(du_bytes(pgdata / "pg_wal") / MB, 1), "MB", None,
                          note="of which pg_wal (after a clean stop only the last checkpoint's segment is needed)"))
        log("offline backup")
        secs = site.timed("--backup", str(offline))
        out += _rates("backup_offline", secs, stopped_dir, offline.stat().st_size,
                      "--backup after --stop (tarball of the data dir, gzip level 1)")
        out.append(figure("backup_offline_file_size", round(offline.stat().st_size / MB, 1), "MB", None))

        log("baselines: tar | gzip -1, tar -xzf")
        base = backups / "baseline.tgz"
        secs = _shell_timed(f"tar -C '{pgdata.parent}' -cf - '{pgdata.name}' | gzip -1 > '{base}'")
        out.append(figure("baseline_tar_gzip1", round(secs, 3), "s", None,
                          note="tar -cf - psql | gzip -1 of the same stopped data dir, for comparison"))
        unpack = site.root / "unpack"
        unpack.mkdir()
        secs = _shell_timed(f"tar -C '{unpack}' -xzf '{offline}'")
        out.append(figure("baseline_tar_xzf", round(secs, 3), "s", None,
                          note="tar -xzf of the offline backup, for comparison with restore"))
        shutil.rmtree(unpack)
        base.unlink()

        counts = []
        for label, src, opts in (("restore", offline, ()), ("restore_verify", offline, ("--verify",)),
                                 ("restore_online", online, ())):
            log(label.replace("_", " "))
            out.append(figure(f"destroy_before_{label}", round(site.timed("--destroy", "--yes"), 3), "s", None))
            secs = site.timed("--restore", str(src), *opts)
            restored_dir = du_bytes(pgdata)
            out += _rates(label, secs, restored_dir, src.stat().st_size,
                          f"--restore {src.name} {' '.join(opts)}".strip())
            if label == "restore_online":
                # the first start replays the WAL the online backup carries
                t0 = time.perf_counter()
                site.dbctl("--start")
                out.append(figure("first_start_after_online_restore", round(time.perf_counter() - t0, 3), "s", None))
                site.dbctl("--stop")
            counts.append(check_rows(site, expected, jobs, label))
        out.append(figure("restored_task_rows", min(counts), "rows", f"== {expected}",
                          note="task rows counted after each restore (smallest of the three)"))
    return out
