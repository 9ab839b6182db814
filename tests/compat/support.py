"""Helpers for the compatibility tests: a site for each test, and running pipeline scripts.

Each test gets its own job database (tests/conftest.py `db_settings`) and a
config dir pointing at it (test_tq.TqSite): `site.cfg`.  The scripts in
scripts/ are run as separate processes with the Python running the tests,
as pipeline code is run: they find the site through TRACTOR_CONFIGDIR and
name the engine as Tractor's clients do, TRACTOR_ENGINE=tractor-engine:80
(which config.at_engine reads as the site's own job database).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import clean_env, free_port
from test_tq import TqSite

SCRIPTS = Path(__file__).resolve().parent / "scripts"
ENGINE = "tractor-engine:80"

__all__ = ["ENGINE", "SCRIPTS", "TqSite", "free_port", "script_env", "run_script", "run_python"]


def script_env(site: TqSite, user: str | None = None, engine: str | None = ENGINE, **extra: str) -> dict:
    """The environment of a pipeline script run on a workstation of `site`'s farm (no TRACTOR_DEBUG)."""
    env = {k: v for k, v in clean_env().items()
           if k not in ("TRACTOR_USER", "TRACTOR_PASSWORD", "PYTHONPATH")}
    env["TRACTOR_CONFIGDIR"] = str(site.cfg)
    if engine is not None:
        env["TRACTOR_ENGINE"] = engine
    if user is not None:
        env["TRACTOR_USER"] = user
    env.update(extra)
    return env


def run_python(argv: list[str], env: dict, cwd: str | os.PathLike | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def run_script(site: TqSite, name: str, *args: str, user: str | None = None, engine: str | None = ENGINE,
               status: int | None = 0, env: dict | None = None, **extra: str) -> subprocess.CompletedProcess:
    """Run scripts/`name` as its own process (in the site's work dir); check its exit status."""
    r = run_python([str(SCRIPTS / name), *args], env if env is not None else script_env(site, user, engine, **extra),
                   cwd=site.work)
    if status is not None:
        assert r.returncode == status, f"{name} {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r
