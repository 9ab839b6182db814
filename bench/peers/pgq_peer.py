"""pgqueuer as a peer: its own virtual environment, a database in a scratch site's server.

The benchmark process never imports pgqueuer: `ensure_venv` makes `bench/peers/.venv` (git
ignores it) and pip installs the pinned `pgqueuer[asyncpg]` into it from PyPI; every pgqueuer
step then runs that venv's Python on `pgq_worker.py` (or its `pgq` program), with libpq's
environment variables naming a database of the scratch site's server: the same PostgreSQL,
started the same way (`tractor-dbctl --start-for-engine`, as the `postgres` account), with the
same settings and reached over the same Unix socket as tractorcli's blades reach theirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import BenchError, Site, cpu_times, log, server_cpu

VERSION = "1.6.0"  # the pgqueuer measured; change it here (the venv is remade to match)
REQUIREMENT = f"pgqueuer[asyncpg]=={VERSION}"
PEERS_DIR = Path(__file__).resolve().parent
VENV = Path(os.environ.get("TRACTOR_BENCH_PGQ_VENV", PEERS_DIR / ".venv"))
WORKER = PEERS_DIR / "pgq_worker.py"
DBNAME = "pgqueuer_bench"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def installed_versions() -> dict | None:
    """Versions of what the venv holds (pgqueuer, its driver and event loop, Python), or None."""
    py = venv_python()
    if not py.exists():
        return None
    code = ("import importlib.metadata as m, json, platform; v = {}\n"
            "for p in ('pgqueuer', 'asyncpg', 'uvloop', 'pydantic'):\n"
            "    try: v[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: v[p] = None\n"
            "v['python'] = platform.python_version(); print(json.dumps(v))")
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def ensure_venv() -> dict:
    """The venv with pgqueuer VERSION, made (or remade) when missing or another version."""
    have = installed_versions()
    if have and have.get("pgqueuer") == VERSION and have.get("asyncpg"):
        return have
    log(f"making {VENV} with {REQUIREMENT} (pip, from PyPI)")
    steps = ([sys.executable, "-m", "venv", "--clear", str(VENV)],
             [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check", REQUIREMENT])
    for argv in steps:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    have = installed_versions()
    if not have or have.get("pgqueuer") != VERSION:
        raise BenchError(f"{VENV}: pgqueuer {VERSION} wanted, found {have}")
    return have


def _env(site: Site) -> dict[str, str]:
    from tractorcli.db.connection import conninfo

    ci = conninfo(site.settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PGHOST=str(ci["host"]), PGPORT=str(ci["port"]), PGUSER=str(ci["user"]), PGDATABASE=DBNAME,
               PGAPPNAME="pgqueuer-bench")
    return env


def _check(argv: list, env: dict, timeout: float = 600) -> None:
    proc = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                          cwd=PEERS_DIR, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}: {proc.stderr.strip()[-600:]}")


def prepare(site: Site, n: int) -> None:
    """A new database with pgqueuer's schema (`pgq install`) and `n` jobs queued."""
    with site.connect(autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DBNAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DBNAME}")
    env = _env(site)
    _check([VENV / "bin" / "pgq", "install"], env)
    _check([venv_python(), WORKER, "enqueue", n], env)


def run_workers(site: Site, n: int, workers: int, batch_size: int, max_concurrent: int,
                timeout: float = 1800) -> dict:
    """Queue `n` jobs, start `workers` worker processes (each dequeuing `batch_size` jobs at a
    time and running at most `max_concurrent` at once; 0: no limit) in drain mode and wait
    for them to exit.  Every job must have been picked once and logged successful once.

    `seconds`: first dequeue to last completion by pgqueuer's own log (its `picked` and
    `successful` rows are stamped by the transactions that dequeue and record them);
    `seconds_launch`: from starting the workers to that last completion.  CPU seconds from
    /proc as in the dispatch benchmark: the workers' own (`worker`), their commands'
    (`child`), the server's (`server`)."""
    prepare(site, n)
    env = _env(site)
    argv = [str(venv_python()), str(WORKER), "work", str(batch_size), str(max_concurrent)]
    server0 = server_cpu(site.db_data_dir)
    launched = time.time()
    procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=env, cwd=PEERS_DIR) for _ in range(workers)]
    own = child = 0.0
    try:
        deadline = time.monotonic() + timeout
        for p in procs:
            # wait for its exit without reaping it, so that its CPU times can still be read
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"pgqueuer workers not done after {timeout} s")
                try:
                    info = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
                except ChildProcessError:
                    break
                if info is not None:
                    o, c = cpu_times(p.pid)
                    own += o
                    child += c
                    break
                time.sleep(0.02)
        server = server_cpu(site.db_data_dir) - server0
        errors = []
        for p in procs:
            _, err = p.communicate(timeout=60)
            if p.returncode != 0:
                errors.append(f"exit {p.returncode}: {err.decode(errors='replace').strip()[-400:]}")
        if errors:
            raise BenchError(f"pgqueuer worker failed: {errors[0]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    with site.connect(autocommit=True, dbname=DBNAME) as conn:
        left = conn.execute("SELECT count(*) FROM pgqueuer").fetchone()[0]
        rows = dict(conn.execute(
            "SELECT status::text, count(*) FROM pgqueuer_log GROUP BY 1").fetchall())
        distinct = conn.execute(
            "SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE status = 'successful'").fetchone()[0]
        first, last = conn.execute(
            "SELECT extract(epoch FROM min(created) FILTER (WHERE status = 'picked')),"
            " extract(epoch FROM max(created) FILTER (WHERE status = 'successful')) FROM pgqueuer_log").fetchone()
    if left or rows != {"queued": n, "picked": n, "successful": n} or distinct != n:
        raise BenchError(f"pgqueuer: {left} jobs left, log {rows}, {distinct} distinct successful: "
                         f"not {n} jobs run exactly once")
    return {"seconds": float(last) - float(first), "seconds_launch": float(last) - launched,
            "worker": own, "child": child, "server": server}
