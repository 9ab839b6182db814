"""scripts/submit_shot.py: a studio submitter (tractor.api.author) spooling a shot to a real site.

Checked in the job database: the job's attributes as the script set them,
the tasks (Iterate expanded), Instances pointing at the task with the right
-id where titles repeat, argv words (numbers and booleans written with
str()), retry codes and the run types of cleanup and postscript commands.
Also: a job without tasks raises RequiredValueError, and a spool to an
engine nobody answers at raises SpoolError, which a script catches by name.
"""

from __future__ import annotations

import json
import re
import socket

import pytest

from .support import SCRIPTS, TqSite, free_port, run_python, run_script, script_env

SCRIPT = SCRIPTS / "submit_shot.py"


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def test_submit_shot_lands_in_the_database(site):
    r = run_script(site, "submit_shot.py", user="lighter")
    m = re.fullmatch(r"Submitted job (\d+)\.\n", r.stdout)
    assert m, r.stdout + r.stderr
    jid = int(m.group(1))

    job = site.jobrow(jid)
    assert job["owner"] == "lighter"
    assert job["title"] == "sh010 lighting v003"
    assert job["priority"] == 87.5
    assert job["projects"] == ["ProjectX"]
    assert job["envkey"] == ["setenv SHOT=sh010", "rez-pkgs=nuke-13.2"]
    assert json.loads(job["metadata"]) == {"shot": "sh010", "version": 3, "layers": ["bg", "fg", "fx"]}
    assert job["comment"] == "submitted by submit_shot.py"
    assert job["serialsubtasks"] is False
    assert job["spoolcwd"] == "/shows/projx/sh010/lighting"  # the job's own, not the script's cwd
    assert job["spoolfile"] == str(SCRIPT)
    assert job["spoolhost"] == socket.gethostname()
    assert job["script"].startswith("Job -title {sh010 lighting v003}")

    tasks = site.all("SELECT * FROM tasks WHERE jid = %s ORDER BY tid", jid)
    # setup, final comp, 3 layers, 3 renders, 3 Iterate frames, 3 comps
    assert len(tasks) == job["numtasks"] == 14
    by_tid = {t["tid"]: t for t in tasks}
    by_id = {t["id"]: t for t in tasks if t["id"]}
    assert by_id["sh010_setup"]["title"] == "setup" and by_id["sh010_setup"]["parent_tid"] is None
    assert sorted(t["title"] for t in tasks if t["title"].startswith("bg frame")) == [
        "bg frame 1", "bg frame 2", "bg frame 3"]
    assert {t["parent_tid"] for t in tasks if t["title"].startswith("bg frame")} == {by_id["render_bg"]["tid"]}

    # "render" under every layer: the same title, three tasks
    renders = [t for t in tasks if t["title"] == "render"]
    assert len(renders) == 3
    render_of = {by_tid[t["parent_tid"]]["title"].split()[-1]: t["tid"] for t in renders}
    assert set(render_of) == {"bg", "fg", "fx"}
    assert by_id["render_bg"]["tid"] == render_of["bg"] and by_id["render_fg"]["tid"] == render_of["fg"]

    # each comp waits on its own layer's render (Instance by id, and the render
    # task added a second time), not on the first task titled "render"
    edges = site.all("SELECT parent_tid, child_tid FROM task_edges WHERE jid = %s AND kind = 'instance' "
                     "ORDER BY parent_tid, child_tid", jid)
    got: dict[str, set[int]] = {}
    for e in edges:
        got.setdefault(by_tid[e["parent_tid"]]["title"], set()).add(e["child_tid"])
    assert got == {"comp bg": {render_of["bg"]}, "comp fg": {render_of["fg"]}, "comp fx": {render_of["fx"]}}
    for layer in ("bg", "fg", "fx"):
        comp = by_id[f"comp_{layer}"]
        assert comp["parent_tid"] == by_id["sh010_final"]["tid"]
        assert comp["state"] == "blocked" and comp["pending"] == 1  # one render to wait for, however named

    cmds = site.all("SELECT * FROM commands WHERE jid = %s ORDER BY cid", jid)
    task_cmds = {}
    for c in cmds:
        task_cmds.setdefault(c["tid"], []).append(c)
    assert [c["argv"] for c in task_cmds[by_id["sh010_setup"]["tid"]]] == [["mkdir", "-p", "renders", "comps"]]
    assert [c["argv"] for c in task_cmds[by_id["sh010_final"]["tid"]]] == [["nuke", "-x", "comp.nk"]]
    for layer in ("bg", "fg", "fx"):
        (render,) = task_cmds[render_of[layer]]
        assert render["argv"] == ["prman", "-t", "4", "-p", "True", "-Progress", f"{layer}/sh010.rib"]
        assert render["retryrcodes"] == list(range(0, 11))
        assert render["service"] == "PixarRender" and render["tags"] == ["prman"]
        (comp,) = task_cmds[by_id[f"comp_{layer}"]["tid"]]
        assert comp["argv"] == ["nuke", "-x", f"comp_{layer}.nk", "1.5"]
        assert comp["runtype"] == "regular" and comp["retryrcodes"] == []
    frame_tasks = sorted((t for t in tasks if t["title"].startswith("bg frame")), key=lambda t: t["title"])
    assert [task_cmds[t["tid"]][0]["argv"] for t in frame_tasks] == [
        ["prman", "-Progress", f"bg/sh010.{n}.rib"] for n in (1, 2, 3)]

    # job-level commands: the cleanup and the two postscripts
    job_cmds = [(c["runtype"], c["argv"]) for c in task_cmds[0]]
    assert job_cmds == [("cleanup", ["rm", "-rf", "/tmp/sh010_scratch"]),
                        ("post_done", ["notify", "--done", "sh010"]),
                        ("post_error", ["notify", "--error", "sh010", "3"])]
    assert len(cmds) == 14 - 3 + 3  # one command in every task but the layer groups; 3 of the job's
    assert job["maxcid"] == len(cmds)


def test_a_job_without_tasks_raises_required_value_error(site):
    env = script_env(site, user="lighter")
    code = ("import tractor.api.author as author\n"
            "job = author.Job(title='t')\n"
            "try:\n"
            "    print(job.asTcl())\n"
            "except author.RequiredValueError as err:\n"
            "    print('RequiredValueError: %s' % err)\n"
            "try:\n"
            "    job.spool()\n"
            "except author.RequiredValueError as err:\n"
            "    print('RequiredValueError: %s' % err)\n")
    r = run_python(["-c", code], env, cwd=site.work)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(ln.startswith("RequiredValueError: ") for ln in lines), r.stdout
    assert "subtasks" in lines[0]
    # and it is also an AuthorError: nothing was spooled
    assert site.one("SELECT count(*) AS n FROM jobs")["n"] == 0


def test_spool_to_an_unreachable_engine_raises_spool_error(site):
    port = free_port()
    r = run_script(site, "submit_shot.py", user="lighter", engine=f"127.0.0.1:{port}", status=2)
    assert r.stdout == ""
    assert r.stderr.startswith("Spool error: "), r.stderr
    assert "Traceback" not in r.stderr
    # the reason names where it tried
    assert str(port) in r.stderr, r.stderr
    assert site.one("SELECT count(*) AS n FROM jobs")["n"] == 0
