"""Alfred job-script operators and options (no database)."""

from __future__ import annotations

import pytest

from tractorcli.jobs.alfred import parse
from tractorcli.jobs.model import Command, DirMap, Instance, JobError, Task, resolve


def job_of(body: str, head: str = "") -> "object":
    return parse(f"##AlfredToDo 3.0\nJob -title {{t}} {head} -subtasks {{\n{body}\n}}\n", "j.alf")


def test_every_job_option():
    job = parse(r"""
Job -title {All} -after {6 23 13:45} -afterjids {12 13} -atleast 2 -atmost 4 -maxactive 5 \
    -tags {a b} -projects {film lighting} -tier rush -service {PixarRender && linux} -avoid {slow old} \
    -envkey {{maya2024} {rman26}} -priority 7.5 -crews {lighting fx} -etalevel 2 -comment {#note} \
    -metadata {k=v} -editpolicy strict -dirmaps {{{/a} {/b} NFS} {{//srv} {/mnt} UNC}} \
    -serialsubtasks 1 -paused 1 -spoolcwd {/work/shot} -init { Assign a {1} } \
    -cleanup { Cmd {rm -f /tmp/x} } \
    -postscript { RemoteCmd {notify ok} -when done; Cmd {notify fail} -when error; Cmd {always} } \
    -subtasks { Task {T} }
""", "all.alf")
    assert job.title == "All" and (job.after.month, job.after.day, job.after.hour, job.after.minute) == (6, 23, 13, 45)
    assert job.afterjids == (12, 13) and (job.atleast, job.atmost, job.maxactive) == (2, 4, 5)
    assert job.tags == ("a", "b") and job.projects == ("film", "lighting") and job.tier == "rush"
    assert job.service == "PixarRender && linux" and job.avoid == ("slow", "old")
    assert job.envkey == ("maya2024", "rman26") and job.priority == 7.5 and job.crews == ("lighting", "fx")
    assert job.etalevel == 2 and job.comment == "#note" and job.metadata == "k=v" and job.editpolicy == "strict"
    assert job.dirmaps == (DirMap("/a", "/b", "NFS"), DirMap("//srv", "/mnt", "UNC"))
    assert job.serialsubtasks and job.paused and job.spoolcwd == "/work/shot" and job.assignments == (("a", "1"),)
    assert job.cleanup[0].runtype == "cleanup" and job.cleanup[0].local
    assert [c.runtype for c in job.postscript] == ["post_done", "post_error", "post_always"]
    assert job.warnings == []


def test_every_task_and_command_option():
    job = job_of(r"""
Task -title {T} -id t.1 -service {shared} -atleast 1 -atmost 3 -serialsubtasks 1 -resumeblock 1 \
     -metadata {m} -chaser {it "out.exr"} -preview {sho a.exr} -cmds {
  RemoteCmd {prman -recover %r f.rib} -service {PixarRender} -tags {prman big} -atleast 2 -atmost 8 \
     -samehost 1 -envkey {setenv A=1 B=2} -id c1 -refersto t.1 -expand 1 -msg {hello} -retryrc {3 4} \
     -minrunsecs 1.5 -maxrunsecs 600 -resumewhile {exitcode 123} -resumepin 1 -metrics {x} -metadata {y}
  Cmd {ls} -expand {tasks.alf}
} -cleanup { RemoteCmd {rm -rf /tmp/t} }
""")
    t = job.subtasks[0]
    assert (t.title, t.id, t.service, t.atleast, t.atmost) == ("T", "t.1", "shared", 1, 3)
    assert t.serialsubtasks and t.resumeblock and t.metadata == "m"
    assert t.chaser == ("it", "out.exr") and t.preview == ("sho", "a.exr")
    c, ls = t.cmds
    assert c == Command(("prman", "-recover", "%r", "f.rib"), service="PixarRender", tags=("prman", "big"),
                        atleast=2, atmost=8, samehost=True, envkey=("setenv A=1 B=2",), id="c1", refersto="t.1",
                        expand="", msg="hello", retryrc=(3, 4), minrunsecs=1.5, maxrunsecs=600.0,
                        resumewhile=("exitcode", "123"), resumepin=True, metrics="x", metadata="y")
    assert ls.local and ls.expand == "tasks.alf"
    assert t.cleanup[0].runtype == "cleanup"


def test_task_title_forms_and_body_less_tasks():
    job = job_of("Task {A}\nTask -title {B} -serialsubtasks 0\nTask {C} -cmds {}")
    assert [t.title for t in job.subtasks] == ["A", "B", "C"]
    assert all(not t.cmds for t in job.subtasks)


def test_serial_order_without_a_loop_is_accepted():
    # a later sibling may wait on an earlier one's subtree: that is the serial order anyway
    job = job_of("Task {S} -serialsubtasks 1 -subtasks {\n Task {A} -subtasks { Task {A1} }\n"
                 " Task {B} -subtasks { Instance {A1} }\n}")
    assert [(p, c) for p, c, _ in resolve(job).edges] == [(4, 3)]
    # the same Instance under a job that is not serial is fine both ways
    job_of("Task {S} -subtasks {\n Task {A} -subtasks { Instance {B1} }\n Task {B} -subtasks { Task {B1} }\n}")


def test_instances_resolve_by_title_and_id_with_forward_references():
    job = job_of("Task {A} -subtasks { Instance {B}; Instance {cid} }\nTask {B}\nTask {C} -id cid")
    r = resolve(job)
    assert r.edges == [(1, 2, "instance"), (1, 3, "instance")]
    assert job.subtasks[0].subtasks == (Instance("B"), Instance("cid"))


@pytest.mark.parametrize("body, message, line, also", [
    ("Task {A} -subtasks { Instance {Nope} }", "Instance 'Nope' refers to no task", 3, None),
    ("Task {A} -id x\nTask {B} -id x", "duplicate task -id 'x'", 4, 3),
    ("Task {A} -subtasks {\n Task {B} -subtasks { Instance {A} }\n}", "dependency cycle", 4, 3),
    ("Task {A} -cmds { RemoteCmd {x} -refersto ghost }", "-refersto 'ghost' names no task or command -id", 3, None),
    # serial order: B's turn comes after A's, but A waits on B's child
    ("Task {S} -serialsubtasks 1 -subtasks {\n Task {A} -subtasks { Instance {B1} }\n"
     " Task {B} -subtasks { Task {B1} }\n}", "dependency cycle", 5, 4),
])
def test_reference_errors_name_both_places(body, message, line, also):
    with pytest.raises(JobError) as e:
        job_of(body)
    assert message in str(e.value)
    assert e.value.where.line == line
    if also:
        assert f"(see j.alf:{also}:" in str(e.value)


@pytest.mark.parametrize("script, message, line, col", [
    ("Job -title", "Job: option -title needs a value on the same line", 1, 5),
    ("Job -title {x} -subtasks { RemoteCmd {ls} }", "RemoteCmd is not allowed in -subtasks", 1, 28),
    ("Job -title {x} -subtasks { Task {a} -cmds { Task {b} } }", "Task is not allowed in a command list", 1, 45),
    ("Task {a}", "Task is not allowed at the top level of the script", 1, 1),
    ("Job -title {x} -maxactive many", "Job: -maxactive: expected an integer, got 'many'", 1, 27),
    ("Job -title {x} -subtasks { Task {a} -cmds { RemoteCmd {} } }", "RemoteCmd: empty launch expression", 1, 55),
    ("Job -title {x} -postscript { Cmd {a} -when sometimes }", "-when: expected done, error or always", 1, 44),
    ("Job -title {x}\nJob -title {y}", "a script holds one Job", 2, 1),
    ("", "no Job in this script", 1, 1),
    ("Job -title {x} -subtasks { Task {a} -cmds { RemoteCmd {ls} -when done } }", "-when belongs only to Job -postscript", 1, 45),
])
def test_operator_errors(script, message, line, col):
    with pytest.raises(JobError) as e:
        parse(script, "e.alf")
    assert message in str(e.value)
    assert (e.value.where.line, e.value.where.col) == (line, col), str(e.value)


def test_unknown_options_warn_or_refuse_under_strict():
    text = "Job -title {x} -memory 2G -subtasks { Task {a} -cmds { RemoteCmd {ls} -memlimit 100G } }"
    job = parse(text, "u.alf")
    assert job.warnings == ["u.alf:1:16: Job: unknown option -memory (ignored)",
                            "u.alf:1:71: RemoteCmd: unknown option -memlimit (ignored)"]
    with pytest.raises(JobError, match=r"u.alf:1:16: Job: unknown option -memory \(ignored\) \(refused by --strict\)"):
        parse(text, "u.alf", strict=True)


def test_pbias_is_priority_and_legacy_when_commands():
    job = parse("Job -title {x} -pbias 3 -whendone {mail -s done me} -whenerror {} -subtasks {}", "l.alf")
    assert job.priority == 3.0
    assert job.postscript == (Command(("/bin/sh", "-c", "mail -s done me"), local=True, runtype="post_done"),)
    remote = parse("Job -title {x} -whenerror {cleanup.sh}", "l.alf", remotecleankey="cleaner")
    assert remote.postscript == (Command(("/bin/sh", "-c", "cleanup.sh"), runtype="post_error", service="cleaner"),)


def test_argv_in_several_words_is_joined_with_a_warning():
    job = job_of('Task {a} -cmds { RemoteCmd {app} {"-f"} {out dir} -service {x} }')
    assert job.subtasks[0].cmds[0].argv == ("app", "-f", "out", "dir")
    assert "launch expression is written as 3 words" in job.warnings[0]


def test_cmd_with_options_before_the_launch_expression():
    job = job_of("Task {a} -cmds { Cmd -service {BlenderRender} {blender -b f.blend} }")
    c = job.subtasks[0].cmds[0]
    assert c.argv == ("blender", "-b", "f.blend") and c.service == "BlenderRender" and c.local


def test_iterate_forms():
    job = job_of("Iterate f -from 1 -to 7 -by 3 -template { Task {F$f} -cmds { RemoteCmd {r -f ${f}} } }")
    assert [t.title for t in job.subtasks] == ["F1", "F4", "F7"]
    assert job.subtasks[1].cmds[0].argv == ("r", "-f", "4")
    down = job_of("Iterate i -from 3 -to 1 -template { Task {T$i} }")
    assert [t.title for t in down.subtasks] == ["T3", "T2", "T1"]
    binary = job_of("Iterate i -from 1 -to 9 -by binary -template { Task {$i} }")
    assert [t.title for t in binary.subtasks] == ["1", "9", "5", "3", "7", "2", "4", "6", "8"]
    after = job_of("Iterate i -from 1 -to 2 -template { Task {T$i} } -subtasks { Task {after} }\nTask {last}")
    assert [t.title for t in after.subtasks] == ["T1", "T2", "after", "last"]
    with pytest.raises(JobError, match="Iterate: -to is required"):
        job_of("Iterate i -from 1 -template {}")


def test_assign_variables_reach_quoted_and_braced_launch_expressions():
    job = parse(r'''Job -title {x} -init { Assign dir {/proj/a} } -subtasks {
  Task {a} -cmds {
    RemoteCmd "mkdir -p $dir/out"
    RemoteCmd {{render} {$dir/scene.ma} {${dir}2} {$other}} -msg {cd $dir}
  }
}''', "a.alf")
    quoted, braced = job.subtasks[0].cmds
    assert quoted.argv == ("mkdir", "-p", "/proj/a/out")
    assert braced.argv == ("render", "/proj/a/scene.ma", "/proj/a2", "$other")
    assert braced.msg == "cd /proj/a"


def test_tcl_computes_values_in_job_scripts():
    job = job_of('set n 2\nforeach f {1 2} { Task "F[format %03d $f]" -cmds { RemoteCmd "r -n [expr $n*2]" } }')
    assert [t.title for t in job.subtasks] == ["F001", "F002"]
    assert job.subtasks[0].cmds[0].argv == ("r", "-n", "4")


def test_positions_of_tasks_and_commands():
    job = parse("Job -title {x} -subtasks {\n  Task {a} -cmds {\n    RemoteCmd {ls}\n  }\n}", "p.alf")
    t = job.subtasks[0]
    assert str(t.where) == "p.alf:2:3" and str(t.cmds[0].where) == "p.alf:3:5"


def test_equality_ignores_positions():
    a = job_of("Task {a} -cmds { RemoteCmd {ls} }")
    b = parse("Job -title {t}\\\n  -subtasks {\n\n\n Task {a} -cmds {RemoteCmd {ls}}}", "other.alf")
    assert a == b
    assert a.subtasks[0] == Task("a", cmds=(Command(("ls",)),))


EXAMPLES = sorted((__import__("pathlib").Path(__file__).resolve().parents[1] / "examples").glob("*.alf"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_strictly(path):
    job = parse(path.read_text(), str(path), strict=True)
    r = resolve(job)
    assert r.tasks and job.warnings == []


def test_examples_are_there():
    assert {p.name for p in EXAMPLES} >= {"frames.alf", "dependencies.alf", "checkpoint.alf"}
