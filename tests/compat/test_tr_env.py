"""The TR_ENV_* variables a command reads while it runs (reference 4.6), on a real blade.

scripts/submit_env_probe.py spools (tractor.api.author) a job of two tasks
titled alike, three commands in all, each running scripts/tr_env_dump.py,
which writes the TR_ENV_* variables it sees to a file named by them.  A real
tractor-blade runs the job; the files are checked against the database:
TR_ENV_JID, TR_ENV_TID, TR_ENV_CID of each command, TR_ENV_JOB_PROJECT (the
job's projects, blank separated), TR_ENV_TRACTOR_ROOT (the installation the
blade runs from: its sys.prefix), and the job's `setenv SHOT=...` envkey.
"""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from .support import TqSite, run_script


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def test_commands_read_tr_env_variables(site):
    out = site.work / "probe"
    out.mkdir()
    r = run_script(site, "submit_env_probe.py", str(out), user="ann")
    jid = int(re.fullmatch(r"Submitted job (\d+)\.\n", r.stdout).group(1))
    blade = site.blade("--exit-when-idle")
    assert blade.wait() == 0, blade.text()
    assert site.states(jid) == ["done", "done"]

    job = site.jobrow(jid)
    assert job["projects"] == ["ProjectX", "sh030"] and job["owner"] == "ann"
    cmds = site.all("SELECT jid, tid, cid FROM commands WHERE jid = %s ORDER BY cid", jid)
    assert [(c["tid"], c["cid"]) for c in cmds] == [(1, 1), (1, 2), (2, 3)]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"J{jid}-T{c['tid']}-C{c['cid']}.json" for c in cmds)
    for c in cmds:
        seen = json.loads((out / f"J{jid}-T{c['tid']}-C{c['cid']}.json").read_text())
        assert seen["TR_ENV_JID"] == str(jid)
        assert seen["TR_ENV_TID"] == str(c["tid"])
        assert seen["TR_ENV_CID"] == str(c["cid"])
        assert seen["TR_ENV_JOB_PROJECT"] == " ".join(job["projects"])
        assert seen["TR_ENV_TRACTOR_ROOT"] == sys.prefix and os.path.isdir(seen["TR_ENV_TRACTOR_ROOT"])
        assert seen["SHOT"] == "sh030"
        assert seen["cwd"] == str(out)  # commands start in the job's spoolcwd
        assert f"wrote {out}/J{jid}-T{c['tid']}-C{c['cid']}.json" in site.log(jid, c["tid"])
    progress = site.all("SELECT progress FROM tasks WHERE jid = %s ORDER BY tid", jid)
    assert [t["progress"] for t in progress] == [100, 100]
