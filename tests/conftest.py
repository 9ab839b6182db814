"""Shared fixtures: real PostgreSQL servers started through the project's own code.

* `tmp_site` makes a new site (config dir + data dir + free port) for a
  test that drives the whole lifecycle itself.
* `shared_site` is one running site for the whole session, started with
  `jobdb.start_for_engine`; it holds a template database with the schema.
* `db_settings` gives each test its own fresh database copied from that
  template (CREATE DATABASE ... TEMPLATE: milliseconds, not an initdb).

Every directory is created under one base directory that the `postgres`
account can traverse, because as root the server runs as that account
(pytest's own tmp_path lives in a 0700 directory of root's).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tractorcli.cluster import Cluster
from tractorcli.config import SiteSettings, load_settings

_BASE: Path | None = None
_SITES: list[SiteSettings] = []


def base_dir() -> Path:
    global _BASE
    if _BASE is None:
        _BASE = Path(tempfile.mkdtemp(prefix="tractorcli-tests-", dir="/tmp"))
        os.chmod(_BASE, 0o755)
    return _BASE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_counter = itertools.count(1)


def make_site(tractor_toml: str = "", db_toml: str = "", *, port: int | None = None, name: str | None = None) -> tuple[Path, SiteSettings]:
    """Write a config dir for a new site and return (config dir, settings)."""
    name = name or f"site{next(_counter)}"
    root = base_dir() / name
    cfg = root / "config"
    cfg.mkdir(parents=True)
    os.chmod(root, 0o755)
    port = port or free_port()
    # the suite runs as root with made-up job owners: its blades run commands as themselves
    (cfg / "tractor.toml").write_text(f'data_dir = "{root / "data"}"\nblade_run_as = "blade"\n{tractor_toml}')
    (cfg / "db.toml").write_text(f"port = {port}\nstart_timeout = 60\n{db_toml}")
    settings = load_settings(cfg)
    _SITES.append(settings)
    return cfg, settings


def program(name: str) -> str:
    """An installed tractorcli program (tractor-spool, tractor-blade, ...), as a user would run it."""
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.is_file() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e .)"
    return found


def clean_env() -> dict:
    """The environment for a program under test: no site or debug settings leaking in."""
    return {k: v for k, v in os.environ.items() if k not in ("TRACTOR_CONFIGDIR", "TRACTOR_DEBUG", "TRACTOR_ENGINE")}


def dbctl_path() -> str:
    """The installed tractor-dbctl, as a user would run it."""
    exe = Path(sys.executable).parent / "tractor-dbctl"
    found = str(exe) if exe.is_file() else shutil.which("tractor-dbctl")
    assert found, "tractor-dbctl is not installed (pip install -e .)"
    return found


def dbctl(cfg: Path | None, *args: str, input: str | None = None, timeout: float = 180,
          env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed tractor-dbctl on the site in `cfg`."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("TRACTOR_CONFIGDIR", "TRACTOR_DEBUG")}
    if env:
        full_env.update(env)
    argv = [dbctl_path(), *(["--configdir", str(cfg)] if cfg else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout, env=full_env,
                          stdin=None if input is not None else subprocess.DEVNULL)


@pytest.fixture
def tmp_site():
    """A factory of new, empty sites; their servers are stopped afterwards."""
    made: list[SiteSettings] = []

    def factory(tractor_toml: str = "", db_toml: str = "", **kw) -> tuple[Path, SiteSettings]:
        cfg, settings = make_site(tractor_toml, db_toml, **kw)
        made.append(settings)
        return cfg, settings

    yield factory
    for s in made:
        _stop_quietly(s)


def _stop_quietly(settings: SiteSettings) -> None:
    c = Cluster(settings)
    try:
        if c.status(tcp=False).running:
            c.stop()
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass


@pytest.fixture(scope="session")
def shared_site():
    from tractorcli import jobdb
    from tractorcli.db import migrate
    from tractorcli.db.connection import connect

    # the site role has a password, so tests may also reach the server over TCP (localhost is
    # not trusted); on the socket the site owner is let in by peer authentication
    cfg, settings = make_site(db_toml='password = "shared-site-pw"\n', name="shared")
    jobdb.start_for_engine(settings)
    template = dataclasses.replace(settings, db=dataclasses.replace(settings.db, dbname="tractor_template"))
    with connect(settings, dbname="postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE tractor_template")
    with connect(template, autocommit=True) as conn:
        migrate.upgrade(conn)
    yield cfg, settings
    _stop_quietly(settings)


def _fresh_database(settings, prefix: str, template: str | None):
    """Create a uniquely named database (from `template`, if given), yield its settings, drop it."""
    from psycopg import sql

    from tractorcli.db.connection import connect

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with connect(settings, dbname="postgres", autocommit=True) as conn:
        conn.execute(create)
    yield dataclasses.replace(settings, db=dataclasses.replace(settings.db, dbname=name))
    with connect(settings, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_settings(shared_site):
    """Settings pointing at a fresh job database (schema applied) for this test."""
    yield from _fresh_database(shared_site[1], "t", "tractor_template")


@pytest.fixture
def empty_db(shared_site):
    """Settings pointing at a fresh database with no schema at all."""
    yield from _fresh_database(shared_site[1], "e", None)


@pytest.fixture(autouse=True)
def _fresh_engine_client():
    """The Python APIs' one engine client (tractorcli.api.client) starts each test with its defaults."""
    from tractorcli.api.client import ModuleEngineClient

    ModuleEngineClient.reset()
    yield
    ModuleEngineClient.reset()


def pytest_sessionfinish(session, exitstatus):
    for s in _SITES:
        _stop_quietly(s)
    if _BASE is not None:
        shutil.rmtree(_BASE, ignore_errors=True)


root_only = pytest.mark.skipif(not (hasattr(os, "geteuid") and os.geteuid() == 0), reason="needs root")
