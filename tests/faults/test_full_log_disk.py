"""The blades' log directory fills up: commands still run and their ends are reported (no job
state is lost), the blade says why the log stopped, and logs are written again once there is
room."""

from __future__ import annotations

import pytest
from test_blade import Site, sh, states
from test_server_faults import small_mount  # noqa: F401 - the fixture

from conftest import root_only
from tractorcli.jobs.model import Task

pytestmark = pytest.mark.faults


@root_only
def test_a_full_log_disk_loses_no_job_state_and_logs_resume(small_mount, db_settings):  # noqa: F811
    point = small_mount("1m")
    site = Site(db_settings)
    try:
        data = point / "data"
        data.mkdir()
        (site.cfg / "tractor.toml").write_text(f'data_dir = "{data}"\nblade_run_as = "blade"\n')
        filler = point / "filler"
        with open(filler, "wb", buffering=0) as f:  # the disk full
            try:
                while True:
                    f.write(b"x" * 4096)
            except OSError:
                pass
        # much more output than there is room: the log stops, the command goes on
        jid = site.spool(Task("loud", cmds=(sh("head -c 400000 /dev/zero | tr '\\\\0' x; echo; echo ran >> ran.txt"),)))
        blade = site.blade("--name", "full", "--exit-when-idle")
        assert blade.wait() == 0, blade.text()
        assert states(site, jid) == {"loud": "done"}
        assert (site.work / "ran.txt").read_text().split() == ["ran"]
        assert "cannot write the log" in blade.text() and "No space left on device" in blade.text()
        inv = site.invocations(jid)
        assert [(i["current"], i["rcode"]) for i in inv] == [(True, 0)]

        filler.unlink()  # room again: the next command's log is written whole
        jid = site.spool(Task("quiet", cmds=(sh("echo logged again"),)))
        blade = site.blade("--name", "full", "--exit-when-idle")
        assert blade.wait() == 0, blade.text()
        assert states(site, jid) == {"quiet": "done"}
        log = next((data / "cmd-logs").rglob(f"J{jid}/T1.log")).read_text()
        assert "logged again" in log
    finally:
        site.close()
