"""startup: how long `tractor-dbctl` takes to start and answer.

Process wall time (fork to exit) of `--help` and of `--status` against a
stopped and against a running site, each through the installed console
script and through `python -m tractorcli dbctl`; median of RUNS runs after
two warm-up runs.  Baselines: `python -c pass` (python_startup), the same
without site-packages processing (`-S`), and `python -c "import click"`.
Also whether `--help` (and `--status`) import psycopg or rich, from
`python -X importtime`.

All commands of a group run round-robin, so that drift on a busy machine
affects them alike.  When the environment sets PYTHONDONTWRITEBYTECODE (as
this project's sandbox does), an editable install compiles tractorcli's
sources at every start; the `*_pyc` figures show the same commands with
bytecode caching on (the cache in a scratch dir, not in the repository).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

from _common import (
    Site,
    clean_env,
    dbctl_paths,
    figure,
    log,
    pick_port,
    summary,
    time_argv,
)

TARGET_MS = "< 150"
RUNS_FULL = 20
RUNS_QUICK = 8


def interleaved(cases: dict[str, dict], runs: int, target_default: str | None = None) -> list[dict]:
    """Time several commands round-robin (so drift on a busy machine hits all alike).

    cases: figure name -> {argv, ok_codes?, env?, target?, note?, ...extra for the JSON}.
    Two warm-up rounds, then `runs` rounds; the figure is the median in ms.
    """
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for rnd in range(runs + 2):
        for name, c in cases.items():
            secs = time_argv(c["argv"], ok_codes=c.get("ok_codes", (0,)), env=c.get("env"))
            if rnd >= 2:
                samples[name].append(secs)
    out = []
    for name, c in cases.items():
        s = summary(samples[name], scale=1000.0)
        extra = {k: v for k, v in c.items() if k not in ("env", "ok_codes", "target")}
        out.append(figure(name, s.pop("value"), "ms", c.get("target", target_default), **extra, **s))
    return out


def pyc_env(prefix: str) -> dict[str, str]:
    """The environment with bytecode caching on, the cache kept outside the repository."""
    env = clean_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = prefix
    return env


_IMPORT_LINE = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)\s*$")


def _interpreter_of(script: str) -> str:
    """The interpreter named by a script's #! line (else the one running the benchmarks)."""
    try:
        with open(script, "rb") as f:
            first = f.readline().decode(errors="replace")
    except OSError:
        return sys.executable
    if first.startswith("#!") and "python" in first:
        words = first[2:].split()
        return words[-1] if words[0].endswith("/env") else words[0]
    return sys.executable


def imported_modules(argv: list[str], ok_codes=(0,)) -> tuple[set[str], list[tuple[str, float]]]:
    """Modules a Python program imports (via -X importtime) and its slowest top-level imports."""
    if argv[0] != sys.executable:
        argv = [_interpreter_of(argv[0]), *argv]  # a console script: run it with its own interpreter
    proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], check=False, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env())
    if proc.returncode not in ok_codes:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr[-500:]}")
    mods: set[str] = set()
    top: list[tuple[str, float]] = []
    for line in proc.stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if not m:
            continue
        mods.add(m.group(4))
        if len(m.group(3)) <= 1:  # top-level import (one space of indentation)
            top.append((m.group(4), int(m.group(2)) / 1000.0))
    top.sort(key=lambda t: -t[1])
    return mods, top[:10]


def _uses(mods: set[str], package: str) -> bool:
    return any(m == package or m.startswith(package + ".") for m in mods)


def run(quick: bool) -> list[dict]:
    runs = RUNS_QUICK if quick else RUNS_FULL
    where = dbctl_paths()
    script = where["script"]
    py = sys.executable
    out: list[dict] = []
    nopyc = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    pycache = tempfile.mkdtemp(prefix="tractor-bench-pycache-", dir="/tmp")
    try:
        cached = pyc_env(pycache)
        pyc_note = "with bytecode caching on (PYTHONPYCACHEPREFIX, no PYTHONDONTWRITEBYTECODE)"
        log(f"python baselines and --help ({runs} runs each, interleaved); script {script}")
        cases = {
            "python_startup": dict(argv=[py, "-c", "pass"], target=None,
                                   note="python -c pass: the floor for any Python program here"),
            "python_startup_no_site": dict(argv=[py, "-S", "-c", "pass"], target=None,
                                           note="python -S -c pass: without site-packages and .pth files"),
            "python_import_click": dict(argv=[py, "-c", "import click"], target=None),
            "help_script": dict(argv=[script, "--help"]),
            "help_module": dict(argv=[py, "-m", "tractorcli", "dbctl", "--help"]),
        }
        if nopyc:
            cases["help_script_pyc"] = dict(argv=[script, "--help"], env=cached, note=pyc_note)
        if where["shim"]:
            cases["help_via_shim"] = dict(argv=[where["shim"], "--help"], target=None, shim=where["shim"],
                                          note="through the pyenv shim a shell finds on PATH; the shim's cost is not ours")
        out += interleaved(cases, runs, TARGET_MS)

        mods, top = imported_modules([script, "--help"])
        out.append(figure("help_imports_psycopg", _uses(mods, "psycopg"), "bool", "== false", slowest_imports=top))
        out.append(figure("help_imports_rich", _uses(mods, "rich"), "bool", "== false"))

        with Site("startup", pick_port(9921)) as site:
            log(f"bringing up a site on port {site.port} for --status")
            site.dbctl("--start-for-engine")
            for label in ("running", "stopped"):
                if label == "stopped":
                    site.dbctl("--stop")
                code = (0,) if label == "running" else (4,)  # --status exits 4 when the server is not running
                log(f"--status against a {label} site")
                cases = {
                    f"status_{label}_script": dict(argv=site.argv("--status"), ok_codes=code),
                    f"status_{label}_module": dict(argv=site.module_argv("--status"), ok_codes=code),
                }
                if nopyc:
                    cases[f"status_{label}_script_pyc"] = dict(argv=site.argv("--status"), ok_codes=code,
                                                               env=cached, note=pyc_note)
                out += interleaved(cases, runs, TARGET_MS)
                mods, top = imported_modules(site.argv("--status"), ok_codes=code)
                out.append(figure(f"status_{label}_imports_psycopg", _uses(mods, "psycopg"), "bool", None,
                                  slowest_imports=top))
    finally:
        shutil.rmtree(pycache, ignore_errors=True)
    return out
