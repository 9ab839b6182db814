"""Jobs built from tractor-spool's command line (-c, --range, --rib ...)."""

from __future__ import annotations

import pytest

from tractorcli.errors import BadInput
from tractorcli.jobs.generate import CommandSpec, command_job, parse_range, parse_runtime_bounds, rib_job
from tractorcli.jobs.model import Command, resolve


@pytest.mark.parametrize("spec, values", [
    ("1-5", [1, 2, 3, 4, 5]), ("1-4,7,9,16-18", [1, 2, 3, 4, 7, 9, 16, 17, 18]),
    ("-14--12", [-14, -13, -12]), ("3-1", [3, 2, 1]), ("7", [7]),
])
def test_ranges(spec, values):
    assert parse_range(spec) == values


@pytest.mark.parametrize("bad", ["", "1-", "a-b", "1..5", "1-2-3"])
def test_bad_ranges(bad):
    with pytest.raises(BadInput, match="--range"):
        parse_range(bad)


def test_single_command_job():
    job = command_job(CommandSpec(["/usr/bin/prman", "-Progress", "a.rib"]))
    assert job.title == "prman" and len(job.subtasks) == 1
    t = job.subtasks[0]
    assert t.title == "prman" and t.cmds == (Command(("/usr/bin/prman", "-Progress", "a.rib"), service="PixarRender"),)
    local = command_job(CommandSpec(["ls"], local=True, title="listing"))
    assert local.title == "listing" and local.subtasks[0].cmds[0].local


def test_builtin_alias():
    job = command_job(CommandSpec(["=printenv"]))
    assert job.title == "printenv" and job.subtasks[0].cmds[0].argv == ("TractorBuiltIn", "printenv")


def test_range_substitution_styles():
    job = command_job(CommandSpec(["render", "-f", "RANGE", "out.{RANGE:0>4}.exr"], range_spec="9-11",
                                  cmdsvckey="host_RANGE", limit_tags="lic RANGE", task_title="Frame {RANGE:03d}"))
    cmds = [t.cmds[0] for t in job.subtasks]
    assert [c.argv for c in cmds] == [("render", "-f", str(n), f"out.{n:04d}.exr") for n in (9, 10, 11)]
    assert [c.service for c in cmds] == ["host_9", "host_10", "host_11"]
    assert cmds[0].tags == ("lic", "9")
    assert [t.title for t in job.subtasks] == ["Frame 009", "Frame 010", "Frame 011"]
    text_only = command_job(CommandSpec(["r", "RANGE", "{RANGE}"], range_spec="1", range_formatting="text"))
    assert text_only.subtasks[0].cmds[0].argv == ("r", "1", "{1}")
    sfmt = command_job(CommandSpec(["r", "RANGE", "{RANGE}"], range_spec="1", range_formatting="sfmt"))
    assert sfmt.subtasks[0].cmds[0].argv == ("r", "RANGE", "1")


def test_iterations(tmp_path):
    job = command_job(CommandSpec(["proc", "ITER"], itervalues="a,b c,d"))
    assert [t.cmds[0].argv for t in job.subtasks] == [("proc", "a"), ("proc", "b c"), ("proc", "d")]
    f = tmp_path / "shots.txt"
    f.write_text("sh010\n\n  sh020  \n")
    job = command_job(CommandSpec(["proc", "ITER"], iterfile=str(f)))
    assert [t.title for t in job.subtasks] == ["proc sh010", "proc sh020"]
    with pytest.raises(BadInput, match="only one of --range, --iterfile, and --itervalues"):
        command_job(CommandSpec(["x"], range_spec="1", itervalues="a"))
    with pytest.raises(BadInput, match="--iterfile"):
        command_job(CommandSpec(["x"], iterfile=str(tmp_path / "missing")))


def test_service_keys_and_bounds():
    job = command_job(CommandSpec(["x"], svckey="linux && !slow", runtime_bounds="10,600"))
    c = job.subtasks[0].cmds[0]
    assert job.service == "linux && !slow" and c.service == "" and (c.minrunsecs, c.maxrunsecs) == (10, 600)
    assert parse_runtime_bounds("60") == (None, 60) and parse_runtime_bounds("5-0") == (5, None)
    with pytest.raises(BadInput, match="runtime-bounds"):
        parse_runtime_bounds("9,3")


def test_rib_jobs():
    many = rib_job(["/r/a.rib", "/r/b.rib"], single=False)
    assert many.title == "a.rib ..." and [t.title for t in many.subtasks] == ["/r/a.rib", "/r/b.rib"]
    assert many.subtasks[0].cmds[0] == Command(("prman", "-Progress", "/r/a.rib"), service="PixarRender", tags=("prman",))
    one = rib_job(["/r/a.rib", "/r/b.rib"], single=True)
    assert len(one.subtasks) == 1 and one.subtasks[0].cmds[0].argv == ("prman", "-Progress", "/r/a.rib", "/r/b.rib")
    nrm = rib_job(["/r/a.rib"], single=True, nrm=True)
    assert nrm.subtasks[0].cmds[0].local and nrm.subtasks[0].cmds[0].argv[:2] == ("netrender", "%H")
    assert len(resolve(many).tasks) == 2
