"""Checkpoint-resume loops (seed 002): the OpenEXR header rule, the passes of a -resumeblock on a
real job database, and the seed's "checkpoint-resume iteration example" run verbatim by real
blades with a stand-in prman that writes checkpoint images for two passes and a final one on the
third."""

from __future__ import annotations

import os
import struct
import sys

import pytest
from test_dispatch import Blade, check_counters, spool

from tractorcli.blade.exr import ExrError, checkpoint_state, is_checkpoint, read_header, write_header
from tractorcli.db.connection import connect
from tractorcli.jobs.alfred import parse

# --- the header rule -------------------------------------------------------------------------------


@pytest.mark.parametrize("attrs, yes", [
    ({"checkpoint": 1}, True),
    ({"checkpoint": 0}, False),
    ({"renderman:checkpoint": "yes"}, True),
    ({"prman.Checkpoint": "false"}, False),
    ({"Checkpoint": 0.5}, True),
    ({"owner": "ann"}, False),
    ({"checkpointed_at": 1}, False),  # only a name that is `checkpoint` after its prefix
])
def test_the_checkpoint_rule(tmp_path, attrs, yes):
    path = tmp_path / "t.exr"
    write_header(path, attrs)
    assert is_checkpoint(path) is yes
    header = read_header(path)[0]
    assert header["compression"][0] == "compression" and header["pixelAspectRatio"] == ("float", 1.0)


def test_what_is_not_an_exr_is_not_a_checkpoint(tmp_path):
    assert checkpoint_state(tmp_path / "none.exr") == (False, f"{tmp_path / 'none.exr'} does not exist: "
                                                              "not a checkpoint")
    (tmp_path / "x.exr").write_bytes(b"P6 not an exr")
    yes, why = checkpoint_state(tmp_path / "x.exr")
    assert not yes and why.endswith("not an OpenEXR file (no magic number): not a checkpoint")
    write_header(tmp_path / "t.exr", {"checkpoint": 1})
    data = (tmp_path / "t.exr").read_bytes()
    (tmp_path / "cut.exr").write_bytes(data[:60])
    with pytest.raises(ExrError):
        read_header(tmp_path / "cut.exr")
    bad = bytearray(data[:8]) + b"x\0int\0" + struct.pack("<i", -5)
    (tmp_path / "neg.exr").write_bytes(bytes(bad))
    with pytest.raises(ExrError, match="a size of -5 bytes"):
        read_header(tmp_path / "neg.exr")


# --- passes of a -resumeblock (simulated blades) ----------------------------------------------------

LOOP = """
Job -title {loop} -subtasks {
    Task {the wait} -subtasks {
        Task {the loop} -resumeblock 1 -subtasks {
            Task {render f1} -cmds {
                RemoteCmd {render -recover %r} -resumewhile {exitcode 9} -resumepin 1
            }
            Task {script test1} -cmds {
                RemoteCmd {otherApp --pass %R} -resumewhile {exitcode 123}
            }
        } -cmds {
            RemoteCmd {looping %q %R}
        }
    } -cmds {
        RemoteCmd {done}
    }
}
"""


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def run_all(conn, blade: Blade, rcodes: dict[str, list[int]]) -> list[tuple[str, int, str, float, list[str]]]:
    """Claim and finish until nothing is left: (task title, %R, outcome, %q, argv) per run; a task's
    exit codes come from rcodes[title] in turn (0 when none is left)."""
    runs = []
    while True:
        got = blade.claim()
        if not got:
            return runs
        for jid, tid in got:
            c = blade.running[(jid, tid)]
            title = conn.execute("SELECT title FROM tasks WHERE jid = %s AND tid = %s", (jid, tid)).fetchone()["title"]
            codes = rcodes.get(title, [])
            rc = codes.pop(0) if codes else 0
            outcome = blade.finish(jid, tid, rc)
            runs.append((title, c.info["resumecount"], outcome, c.info["quality"], list(c.info["argv"])))


def test_a_block_runs_passes_until_nothing_only_checkpoints(conn):
    jid = spool(conn, parse(LOOP))
    b = Blade(conn, slots=1)
    runs = run_all(conn, b, {"render f1": [9, 9, 0]})
    assert [(t, r, o) for t, r, o, _, _ in runs] == [
        ("render f1", 0, "checkpoint"), ("script test1", 0, "done"), ("the loop", 0, "pass"),
        ("render f1", 1, "checkpoint"), ("the loop", 1, "pass"),
        ("render f1", 2, "done"), ("the loop", 2, "done"),
        ("the wait", 0, "done")]
    # %q: half the loop's subtasks were final in the first two passes, all in the last
    assert [q for t, _, _, q, _ in runs if t == "the loop"] == [0.5, 0.5, 1.0]
    # %r: the first pass fresh, the next ones resume from the checkpoint
    assert [a for t, _, _, _, a in runs if t == "render f1"] == [["render", "-recover", "%r"]] * 3
    recovers = [r["recover"] for r in conn.execute(
        "SELECT i.iid, t.recover FROM invocations i JOIN tasks t ON t.jid = i.jid AND t.tid = i.tid "
        "WHERE i.jid = %s AND t.title = 'render f1' ORDER BY i.iid", (jid,))]
    assert recovers[-1] is True
    job = conn.execute("SELECT phase, numdone, numtasks, numactive, numready, numblocked FROM jobs WHERE jid = %s",
                       (jid,)).fetchone()
    assert job == {"phase": "finished", "numdone": 4, "numtasks": 4, "numactive": 0, "numready": 0, "numblocked": 0}


def test_resumepin_keeps_every_pass_on_the_first_blade(conn):
    jid = spool(conn, parse(LOOP))
    b1, b2 = Blade(conn, name="b1", slots=1), Blade(conn, name="b2", slots=1)
    ((j, t),) = b1.claim()  # render f1, first pass, on b1
    b1.finish(j, t, 9)
    for _ in range(6):  # b2 takes everything else it may
        for jt in b2.claim():
            b2.finish(*jt)
    # render f1's second pass waits for b1
    state = conn.execute("SELECT state, resumecount FROM tasks WHERE jid = %s AND title = 'render f1'",
                         (jid,)).fetchone()
    assert state == {"state": "ready", "resumecount": 1}
    assert b2.claim() == []
    assert b1.claim() == [(jid, t)]


def test_a_checkpoint_outside_a_block_runs_the_command_again_at_once(conn):
    jid = spool(conn, parse("Job -subtasks { Task t -cmds { RemoteCmd {r} -resumewhile {exitcode 5} } }\n"))
    b = Blade(conn, slots=1)
    runs = run_all(conn, b, {"t": [5, 5, 0]})
    assert [(r, o) for _, r, o, _, _ in runs] == [(0, "resume"), (1, "resume"), (2, "done")]
    assert conn.execute("SELECT phase FROM jobs WHERE jid = %s", (jid,)).fetchone()["phase"] == "finished"


# --- the seed's example, verbatim, on real blades ----------------------------------------------------

SEED = """Job -title "checkpoint-resume iteration example" -service PixarRender -subtasks {
    Task {the wait} -subtasks {
        Task {the loop} -resumeblock 1 -subtasks {
            Task {render f1} -cmds {
                RemoteCmd {
                    prman -Progress -recover %r -checkpoint 0,15s /net/rib/rings.rib
                } -resumewhile {testcheckpoint exr /tmp/t.exr} -resumepin 1
            }
            Task {script test1} -cmds {
                RemoteCmd {echo otherApp --pass %R} -resumewhile {exitcode 123}
            }
        } -cmds {
            RemoteCmd "echo looping"
        }
    } -cmds {
        RemoteCmd "echo loop done"
    }
}
"""

PRMAN = """\
#!{python}
# A stand-in prman: each run appends its arguments to prman.runs beside it and writes /tmp/t.exr,
# a checkpoint image on the first two runs and a final image on the third.
import os, sys
here = os.path.dirname(os.path.abspath(__file__))
log = os.path.join(here, "prman.runs")
n = sum(1 for _ in open(log)) if os.path.exists(log) else 0
with open(log, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
sys.path.insert(0, {src!r})
from tractorcli.blade.exr import write_header
write_header("/tmp/t.exr", {{"checkpoint": 1 if n < 2 else 0, "renderman:pass": n}})
print("R90000 100%" if n >= 2 else "R90000 40%")
"""


def test_the_seeds_checkpoint_example_runs_verbatim(db_settings):
    from test_blade import Site

    import tractorcli

    s = Site(db_settings)
    try:
        bin_dir = s.root / "bin"
        bin_dir.mkdir()
        prman = bin_dir / "prman"
        prman.write_text(PRMAN.format(python=sys.executable,
                                      src=os.path.dirname(os.path.dirname(tractorcli.__file__))))
        prman.chmod(0o755)
        if os.path.exists("/tmp/t.exr"):
            os.unlink("/tmp/t.exr")
        from tractorcli.db.spool import spool_job
        from tractorcli.jobs.model import resolve
        from tractorcli.submit import default_host

        jid = spool_job(s.conn, resolve(parse(SEED)), owner="ann", spoolhost=default_host(),
                        spoolcwd=str(s.work))
        env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
        s.blade("--name", "bladeA", "--slots", "1", env=env)
        s.blade("--name", "bladeB", "--slots", "1", env=env)
        s.wait(lambda: s.one("SELECT phase FROM jobs WHERE jid = %s", jid)["phase"] == "finished", timeout=60,
               msg="the seed's job to finish")
        assert s.one("SELECT numdone, numtasks, numerror FROM jobs WHERE jid = %s", jid) == \
            {"numdone": 4, "numtasks": 4, "numerror": 0}
        # three passes of prman: fresh, then resumed from its checkpoint, on one blade (-resumepin)
        assert (bin_dir / "prman.runs").read_text().splitlines() == [
            "-Progress -recover 0 -checkpoint 0,15s /net/rib/rings.rib",
            "-Progress -recover 1 -checkpoint 0,15s /net/rib/rings.rib",
            "-Progress -recover 1 -checkpoint 0,15s /net/rib/rings.rib"]
        blades = s.all("SELECT DISTINCT i.bladename FROM invocations i JOIN tasks t ON t.jid = i.jid "
                       "AND t.tid = i.tid WHERE i.jid = %s AND t.title = 'render f1'", jid)
        assert len(blades) == 1
        tid = {r["title"]: r["tid"] for r in s.all("SELECT title, tid FROM tasks WHERE jid = %s", jid)}
        render_log = s.log(jid, tid["render f1"])
        assert render_log.count("testcheckpoint: /tmp/t.exr is a checkpoint image") == 2
        assert "testcheckpoint: /tmp/t.exr is a final image" in render_log
        # the other subtask finished for good in the first pass; the loop's command ran each pass
        assert s.log(jid, tid["script test1"]).splitlines().count("otherApp --pass 0") == 1
        assert s.log(jid, tid["the loop"]).splitlines().count("looping") == 3
        assert s.log(jid, tid["the wait"]).splitlines().count("loop done") == 1
        counts = {r["title"]: r["resumecount"] for r in s.all("SELECT title, resumecount FROM tasks WHERE jid = %s",
                                                             jid)}
        assert counts == {"render f1": 2, "the loop": 2, "script test1": 0, "the wait": 0}
    finally:
        s.close()
        if os.path.exists("/tmp/t.exr"):
            os.unlink("/tmp/t.exr")



def test_a_block_whose_root_has_no_commands_runs_its_passes_too(conn):
    # the root ends a pass when its last subtask does (no command of its own to finish)
    jid = spool(conn, parse("""
Job -title {bare loop} -subtasks {
    Task {the loop} -resumeblock 1 -subtasks {
        Task {render f1} -cmds { RemoteCmd {render %R} -resumewhile {exitcode 9} }
        Task {render f2} -cmds { RemoteCmd {render %R} }
    }
    Task {after} -cmds { RemoteCmd {after} }
} -serialsubtasks 1
"""))
    b = Blade(conn, slots=1)
    runs = run_all(conn, b, {"render f1": [9, 9, 0]})
    assert [(t, r, o) for t, r, o, _, _ in runs] == [
        ("render f1", 0, "checkpoint"), ("render f2", 0, "done"),  # the root's first pass ends
        ("render f1", 1, "checkpoint"),  # only what checkpointed runs again (render f2 was final)
        ("render f1", 2, "done"),
        ("after", 0, "done")]  # after the root, done at last
    check_counters(conn, jid)
    assert conn.execute("SELECT phase FROM jobs WHERE jid = %s", (jid,)).fetchone()["phase"] == "finished"
