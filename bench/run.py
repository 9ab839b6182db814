#!/usr/bin/env python3
"""Run tractorcli's benchmarks, print a table of figures, write them as JSON.

    python bench/run.py [NAME ...] [--quick] [--out FILE] [--strict] [--list]

NAME is a benchmark (`bench/bench_<NAME>.py`); default: all of them.  Each
module exposes `run(quick: bool) -> list[dict]` returning figures
`{figure, value, unit, target, ...}`; `target` is None (informational) or a
comparison such as "< 150", ">= 10", "== false", checked against `value`.

Exit status: 0 when every benchmark ran (1 if one failed); with --strict,
also 1 when a figure misses its target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _common import REPO_DIR, dbctl_paths

ORDER = ["startup", "site_init", "backup_restore"]  # cheap first; others after, by name


def available() -> list[str]:
    names = sorted(p.stem[len("bench_"):] for p in BENCH_DIR.glob("bench_*.py"))
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


# --- targets -------------------------------------------------------------------

_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _literal(text: str):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    return float(text)


def meets(value, target: str | None) -> bool | None:
    """Does `value` meet `target`? None when there is no target."""
    if target is None:
        return None
    op, _, rhs = target.strip().partition(" ")
    if op not in _OPS:
        raise ValueError(f"bad target {target!r}: expected '<op> <value>' with op one of {', '.join(_OPS)}")
    if value is None:
        return False
    want = _literal(rhs)
    if isinstance(want, bool) or isinstance(value, bool):
        return _OPS[op](bool(value), want) if isinstance(want, bool) else False
    return _OPS[op](float(value), want)


# --- machine ---------------------------------------------------------------------


def _postgres_version() -> str | None:
    try:
        from tractorcli.cluster import find_bindir
        from tractorcli.config import SiteSettings

        bindir = find_bindir(SiteSettings(config_dir=Path("/nonexistent"), data_dir=Path("/nonexistent")))
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or None
    except Exception as exc:  # noqa: BLE001 - informational only
        return f"unknown ({exc})"


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_info() -> dict:
    try:
        from tractorcli import __version__ as tv
    except Exception:  # noqa: BLE001
        tv = None
    try:
        dbctl = dbctl_paths()
    except Exception as exc:  # noqa: BLE001
        dbctl = {"error": str(exc)}
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "postgresql": _postgres_version(),
        "tractorcli": tv,
        "git_commit": _git("rev-parse", "HEAD"),
        # uncommitted changes to the code measured (an editable install runs the working tree)
        "git_src_modified": _git("status", "--porcelain", "--", "src").splitlines() if _git("rev-parse", "HEAD") else None,
        "tractor_dbctl": dbctl,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONOPTIMIZE")},
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


# --- output --------------------------------------------------------------------------


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"
    return "-" if value is None else str(value)


def print_table(results: dict, file=sys.stdout) -> None:
    header = ("benchmark", "figure", "value", "unit", "target", "ok?")
    rows = []
    for name, res in results.items():
        if res.get("error"):
            rows.append((name, "ERROR", res["error"].splitlines()[-1][:60], "", "", "FAIL"))
            continue
        for f in res["figures"]:
            ok = f.get("ok")
            rows.append((name, f["figure"], _fmt(f["value"]), f.get("unit") or "", f.get("target") or "",
                         "" if ok is None else ("yes" if ok else "NO")))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    right = {2}
    line = "  ".join(h.rjust(w) if i in right else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths)))
    print(line, file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for r in rows:
        print("  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip(), file=file)


# --- main ----------------------------------------------------------------------------


def compile_package() -> None:
    """Write the package's bytecode, as `pip install` does for a regular install.

    An editable install (pip install -e .) is compiled at run time, and not
    even that when PYTHONDONTWRITEBYTECODE is set (it is on this machine):
    every program would then compile our modules from source at each start,
    some 40 ms that no installed copy pays.
    """
    import compileall

    import tractorcli

    compileall.compile_dir(str(Path(tractorcli.__file__).parent), quiet=1)


def _terminate(signum, frame):  # turn SIGTERM into an exception so cleanups run
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    names_all = available()
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default all: {', '.join(names_all)})")
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer runs, for CI")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON file to write (default bench/results/latest.json, or latest-quick.json with --quick)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(names_all))
        return 0
    unknown = [n for n in args.names if n not in names_all]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)} (available: {', '.join(names_all)})")
    names = args.names or names_all
    out = args.out or BENCH_DIR / "results" / ("latest-quick.json" if args.quick else "latest.json")

    signal.signal(signal.SIGTERM, _terminate)
    compile_package()
    started = dt.datetime.now(dt.timezone.utc)
    doc = {
        "format": 1,
        "timestamp": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": machine_info(),
        "benchmarks": {},
    }
    failed = missed = 0
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        res: dict = {"figures": [], "error": None}
        try:
            module = importlib.import_module(f"bench_{name}")
            figures = module.run(args.quick)
            for f in figures:
                f["ok"] = meets(f["value"], f.get("target"))
                missed += f["ok"] is False
            res["figures"] = figures
        except KeyboardInterrupt:
            res["error"] = "interrupted"
            doc["benchmarks"][name] = res
            print(f"{name}: interrupted; scratch sites were cleaned up", file=sys.stderr)
            failed += 1
            break
        except Exception as exc:  # noqa: BLE001 - record and go on with the next benchmark
            res["error"] = f"{exc.__class__.__name__}: {exc}"
            res["traceback"] = traceback.format_exc()
            print(res["traceback"], file=sys.stderr)
            failed += 1
        res["seconds"] = round(time.perf_counter() - t0, 2)
        doc["benchmarks"][name] = res
    doc["seconds"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 2)

    sys.stderr.flush()
    print_table(doc["benchmarks"])
    sys.stdout.flush()
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.names and out.exists():
        # a partial run updates its benchmarks and keeps the others' last figures
        try:
            previous = json.loads(out.read_text())
        except (OSError, ValueError):
            previous = None
        if previous and previous.get("quick") == args.quick:
            kept = {k: v for k, v in previous.get("benchmarks", {}).items() if k not in doc["benchmarks"]}
            for res in kept.values():
                res.setdefault("measured", previous.get("timestamp"))
            doc["benchmarks"] = {**kept, **doc["benchmarks"]}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}" + (f"; {missed} figure(s) missed their target" if missed else "")
          + (f"; {failed} benchmark(s) failed" if failed else ""), file=sys.stderr)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
