"""The engine is stopped, upgraded to a newer schema and started while blades run commands (the seeds'
upgrade story): nothing is lost or run twice, and a blade of the older version keeps working against
the newer schema; a blade whose functions the database no longer has stops and says why.

The older version is a real one: the project's source at OLD_VERSION, taken from the git history
into a directory and run with PYTHONPATH (same dependencies), schema version OLD_SCHEMA.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_blade import Site, sh, site  # noqa: F401 - the fixture
from test_dbctl_lifecycle import ok

from conftest import base_dir, dbctl
from tractorcli.db import migrate
from tractorcli.db.audit import audit
from tractorcli.db.connection import connect
from tractorcli.errors import ExitStatus
from tractorcli.jobs.model import Task

pytestmark = pytest.mark.faults

OLD_VERSION = "64c24c513e2b474d3873419f3e356a629fcc5e89"  # before limits and tiers: schema 11
OLD_SCHEMA = 11
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def old_source() -> Path:
    """The older tractorcli's src/ directory."""
    if subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{OLD_VERSION}^{{commit}}"],
                      capture_output=True).returncode != 0:
        pytest.skip(f"needs the project's git history (commit {OLD_VERSION[:10]}, the older version)")
    dest = base_dir() / f"old-tractorcli-{time.monotonic_ns()}"
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_VERSION, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def old_program(src: Path, module: str, *args: str) -> list[str]:
    """argv running the older version's program (tractorcli.cli.MODULE:main)."""
    return [sys.executable, "-c", f"import sys; from tractorcli.cli.{module} import main; sys.exit(main())", *args]


def old_env(src: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRACTOR_CONFIGDIR", "TRACTOR_DEBUG")}
    env["PYTHONPATH"] = str(src)
    return env


def schema_version(settings) -> int:
    with connect(settings, autocommit=True) as conn:
        return max(migrate.applied(conn))


def test_an_older_blade_runs_on_through_an_upgrade_and_against_the_newer_schema(tmp_site, old_source):
    cfg, settings = tmp_site()
    env = old_env(old_source)
    ok(subprocess.run(old_program(old_source, "dbctl", "--configdir", str(cfg), "--start-for-engine"),
                      capture_output=True, text=True, env=env, timeout=180))
    assert schema_version(settings) == OLD_SCHEMA

    farm = Site(settings)
    runs = farm.work / "runs"
    runs.mkdir()
    try:
        # each command leaves one file per run: a run twice shows as a second line
        script = farm.work / "upgrade.alf"
        script.write_text("Job -title upgrade -subtasks {\n" + "".join(
            f'  Task t{i} -cmds {{RemoteCmd {{/bin/sh -c "echo run >> {runs}/t{i}; sleep 1.5"}}}}\n'
            for i in range(8)) + "}\n")
        spooled = ok(subprocess.run(old_program(old_source, "spool", str(script)), capture_output=True, text=True,
                                    env={**env, "TRACTOR_CONFIGDIR": str(farm.cfg)}, timeout=60))
        jid = int(spooled.stdout.rsplit("jid:", 1)[1])
        log = open(farm.root / "old-blade.log", "w")
        blade = subprocess.Popen(old_program(old_source, "blade", "--configdir", str(farm.cfg), "--heartbeat", "0.3",
                                             "--name", "old-blade", "--slots", "4"),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        farm.wait(lambda: len(list(runs.iterdir())) >= 4, msg="the older blade running four commands")

        # the engine stops (its database with it), the newer version starts it and upgrades it
        farm.conn.close()
        ok(subprocess.run(old_program(old_source, "dbctl", "--configdir", str(cfg), "--stop"),
                          capture_output=True, text=True, env=env, timeout=120))
        up = ok(dbctl(cfg, "--start-for-engine"))
        assert schema_version(settings) == migrate.latest_version() > OLD_SCHEMA, up.stdout + up.stderr
        farm.conn = connect(settings, autocommit=True)

        def finished() -> bool:
            return farm.one("SELECT numdone FROM jobs WHERE jid = %s", jid)["numdone"] == 8

        farm.wait(finished, timeout=60, msg=f"the job's 8 tasks done by the older blade\n{_text(farm)}")
        # and it takes new work spooled against the newer schema
        jid2 = farm.spool(Task("after", cmds=(sh(f"echo run >> {runs}/after"),)))
        farm.wait(lambda: farm.one("SELECT numdone FROM jobs WHERE jid = %s", jid2)["numdone"] == 1, timeout=30,
                  msg=f"a job spooled after the upgrade\n{_text(farm)}")

        assert blade.poll() is None, _text(farm)
        assert {p.name: p.read_text() for p in runs.iterdir()} == {
            **{f"t{i}": "run\n" for i in range(8)}, "after": "run\n"}
        rows = farm.all("SELECT cid, count(*) AS n, bool_and(rcode = 0) AS ok, bool_and(bladename = 'old-blade') AS here "
                        "FROM invocations WHERE jid IN (%s, %s) GROUP BY cid, jid", jid, jid2)
        assert len(rows) == 9 and all(r["n"] == 1 and r["ok"] and r["here"] for r in rows), rows
        assert audit(farm.conn) == []
        assert "Traceback" not in _text(farm)
    finally:
        if "blade" in locals() and blade.poll() is None:
            blade.kill()
            blade.wait(10)
        farm.close()


def _text(farm: Site) -> str:
    path = farm.root / "old-blade.log"
    return path.read_text() if path.exists() else ""


def test_a_blade_the_database_has_outgrown_stops_and_says_why(site):  # noqa: F811
    s = site()
    jid = s.spool(Task("long", cmds=(sh("sleep 30"),)))
    blade = s.blade("--name", "outgrown")
    s.wait(lambda: s.one("SELECT numactive FROM jobs WHERE jid = %s", jid)["numactive"] == 1, msg="running")
    # a newer schema that retired the heartbeat this blade calls
    s.conn.execute("ALTER FUNCTION tractor_heartbeat_v1(uuid, jsonb, real, real, real, bigint[], integer[], integer[]) "
                   "RENAME TO tractor_heartbeat_retired")
    status = blade.wait(30)
    text = blade.text()
    assert status == ExitStatus.SCHEMA, text
    assert "stopping: " in text and "has no function this tractorcli" in text and "tractor_heartbeat_v1" in text, text
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]  # the program's one-line error
    assert last.startswith("tractor-blade: ") and "tractor_heartbeat_v1" in last and "upgrade the database" in last
