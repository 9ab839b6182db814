"""spool: parse-only and parse+spool of generated jobs of single-command tasks.

Job files of 1,000, 100,000 and 1,000,000 tasks (quick: up to 100,000) are
written in the shape render pipelines produce (`Task {Frame N} -cmds {
RemoteCmd {prman ...} -service {PixarRender} }`), then timed with the
installed `tractor-spool`:

* `--parse-debug FILE`: read, parse, resolve; nothing is spooled;
* `FILE`: parse and commit the whole job (one transaction, COPY);

each as wall time, the peak memory and CPU time of that process (from
wait4, in a small launcher: `_common.run_measured`; forked from this
process, grown by the benchmarks before it, the program's peak would be
this process's) and, for the spool, the database server's CPU time (all its
processes, from /proc): on a shared machine the CPU times move less than
the wall times when other work runs.
After each spool the task count in the database is checked, so a broken
spool cannot pass as fast.

Targets (issue 14): 100,000 tasks spooled in under 1.2 s; 1,000,000 tasks
in under 12 s with peak memory under 1.2 GB (issue 3 asked for 3 s and
1.5 GB).

A job file over the size a job script may have (`script_text.
MAX_SCRIPT_BYTES`, 128 MiB, which refuses it before reading) is run by
`python -c` with the limit lifted in that process and otherwise the same
program (`tractorcli.cli.spool.main`), and its figures say so
(`limit_lifted`); the 1,000,000-task file (116 MB) is under it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BenchError, Site, clean_env, figure, log, pick_port, run_measured, server_cpu

SIZES_FULL = (1_000, 100_000, 1_000_000)
SIZES_QUICK = (1_000, 10_000, 100_000)


def write_job(path: Path, n: int) -> None:
    with open(path, "w") as f:
        f.write("##AlfredToDo 3.0\nJob -title {bench %d} -service {PixarRender} -subtasks {\n" % n)
        for i in range(1, n + 1):
            f.write("  Task {Frame %d} -cmds {\n    RemoteCmd {prman -Progress /net/ribs/frame.%04d.rib}"
                    " -service {PixarRender}\n  }\n" % (i, i))
        f.write("}\n")


def spool_script() -> str:
    exe = Path(sys.executable).parent / "tractor-spool"
    found = str(exe) if exe.is_file() else shutil.which("tractor-spool")
    if not found:
        raise BenchError("tractor-spool is not installed (pip install -e .)")
    return found


# tractor-spool with the script size limit lifted to the file's size, for a job file over it (see
# above; not higher: the reader allocates the limit's worth up front)
_LIFTED = ("import sys; from tractorcli.jobs import script_text; script_text.MAX_SCRIPT_BYTES = %d; "
           "from tractorcli.cli.spool import main; sys.argv[0] = 'tractor-spool'; main()")


def spool_argv(script: str, path: Path) -> tuple[list[str], bool]:
    """How to run tractor-spool on `path`, and whether the script size limit is lifted for it."""
    from tractorcli.jobs.script_text import MAX_SCRIPT_BYTES

    size = path.stat().st_size
    if size > MAX_SCRIPT_BYTES:
        return [sys.executable, "-c", _LIFTED % size], True
    return [script], False


def measure(argv: list[str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KB) and CPU seconds (user + system) of one run (run_measured: the
    program's own, whatever this process grew to before)."""
    with tempfile.TemporaryFile() as err:
        m = run_measured(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=clean_env())
        if m.code != 0:
            err.seek(0)
            text = err.read().decode(errors="replace")
            raise BenchError(f"{' '.join(argv[:3])} ... exited {m.code}: {text.strip()[-500:]}")
    return m.wall, m.rss_kb, m.cpu


def run(quick: bool) -> list[dict]:
    sizes = SIZES_QUICK if quick else SIZES_FULL
    script = spool_script()
    out: list[dict] = []
    with Site("spool", pick_port(9931)) as site:
        site.dbctl("--start-for-engine", timeout=600)
        for n in sizes:
            path = site.root / f"job{n}.alf"
            write_job(path, n)
            mb = path.stat().st_size / 1e6
            log(f"{n} tasks ({mb:.1f} MB): parse only")
            program, lifted = spool_argv(script, path)
            base = [*program, "--configdir", str(site.config_dir), "-q"]
            parse_s, parse_kb, parse_cpu = measure([*base, "--parse-debug", str(path)])
            log(f"{n} tasks: parse and spool")
            before = site.count("tasks")
            server_before = server_cpu(site.db_data_dir)
            spool_s, spool_kb, spool_cpu = measure([*base, str(path)])
            time.sleep(0.5)  # its backend ends after the client: then its CPU is the postmaster's cutime
            server_s = server_cpu(site.db_data_dir) - server_before
            added = site.count("tasks") - before
            if added != n:
                raise BenchError(f"spooled {added} tasks, expected {n}")
            label = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}M"
            target_time = {100_000: "< 1.2", 1_000_000: "< 12"}.get(n)
            target_mem = "< 1200" if n == 1_000_000 else None
            out += [
                figure(f"parse_{label}", round(parse_s, 3), "s", None, file_mb=round(mb, 1), limit_lifted=lifted),
                figure(f"parse_{label}_peak_mem", round(parse_kb / 1024), "MB"),
                figure(f"parse_{label}_cpu", round(parse_cpu, 3), "s"),
                figure(f"spool_{label}", round(spool_s, 3), "s", target_time,
                       note="parse + resolve + one-transaction COPY, process wall time", limit_lifted=lifted),
                figure(f"spool_{label}_rate", round(n / spool_s), "tasks/s"),
                figure(f"spool_{label}_peak_mem", round(spool_kb / 1024), "MB", target_mem),
                # CPU, less moved than wall time by other work on a shared machine: the spooling
                # process's, and the database server's (all its processes) during that spool
                figure(f"spool_{label}_client_cpu", round(spool_cpu, 3), "s"),
                figure(f"spool_{label}_server_cpu", round(server_s, 3), "s"),
            ]
    return out
