"""The Python authoring API (jobs/author.py): builders, checks, round trips through the parser, spooling."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tractorcli.errors import (
    BadInput,
    ConfigError,
    DatabaseUnavailable,
    ExitStatus,
    TractorError,
)
from tractorcli.jobs import alfred, author, model
from tractorcli.jobs.author import (
    Assign,
    AttributeValueError,
    AuthorError,
    Command,
    DirMap,
    Instance,
    Iterate,
    Job,
    ParentExistsError,
    RequiredValueError,
    SpoolError,
    Task,
    UnknownAttributeError,
)
from tractorcli.jobs.jsonjob import from_json
from tractorcli.jobs.model import JobError, resolve

M = model


def round_trip(job: Job) -> model.Job:
    """parse(asTcl()) == to_model(), and the model passes resolve(); returns the model."""
    mj = job.to_model()
    text = job.asTcl()
    assert text.startswith("Job -title ")
    assert alfred.parse(text, "<author>") == mj
    resolve(mj)
    return mj


@pytest.fixture(autouse=True)
def _no_client_defaults(monkeypatch):
    """Each test starts without setEngineClientParam defaults or TRACTOR_ENGINE."""
    for name in ("TRACTOR_ENGINE", "TRACTOR_USER", "TRACTOR_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


# --- the job using every option -------------------------------------------------------------


def every_option_job() -> Job:
    after = dt.datetime.now().replace(month=12, day=24, hour=18, minute=30, second=0, microsecond=0)
    job = Job(title="every {option}", tier="rush", spoolcwd="/shots/010", projects=["fx", "lighting"],
              crews=["a crew", "b"], maxactive=4, paused=True, after=after, afterjids=[7, 9], atleast=2,
              atmost=8, etalevel=3, tags="prman nuke", priority=150.5, service="linux && !slow",
              avoid=["old"], envkey=["rman-24", "setenv A=1 B=2"], comment="a $comment [with] \\brackets",
              metadata='{"shot": "010"}', editpolicy="strict", serialsubtasks=True)
    job.newAssignment("SHOT", "010")
    job.newDirMap("/mnt/a", "//srv/a", "UNC")
    job.newDirMap("/proj dir", "Z:/proj", "NFS")

    setup = job.newTask(title="setup", id="setup.1", service="sharedsrv", atleast=1, atmost=2,
                        chaser=["it", "/out/$SHOT.exr"], preview=["sho", "a b"], serialsubtasks=True,
                        resumeblock=True, metadata="tm")
    setup.newCommand(argv=["mkdir", "-p", "/out/$SHOT"], service="fileserver", tags=["io"], envkey="setenv X=1",
                     id="mk", retryrc=[1, 2], local=True, msg="y\n", expand=True, atleast=1, atmost=1,
                     samehost=True, minrunsecs=0.5, maxrunsecs=3600, resumewhile="exitcode 123", resumepin=True,
                     metadata="cm", metrics="mem")
    setup.newCommand(argv="checker ${SHOT}", refersto="mk", expand="/tmp/more tasks.alf")
    setup.newCleanup(argv=["rm", "-rf", "/tmp/setup"])

    job.newTask(title="outside", argv="echo outside")
    render = job.newTask(title="render")
    it = Iterate("f", 1, 5, 2, template=[Task(title="frame $f", argv=["prman", "-f", "${f}", "$SHOT"],
                                              service="PixarRender")])
    render.addChild(it)
    render.addChild(setup)  # already placed: an Instance of it
    render.addChild(Instance("outside"))

    job.newCleanup(argv="rm -rf /tmp/job", local=True)
    job.newPostscript(argv=["mail", "-s", "done $SHOT"], when="done")
    job.newPostscript(argv=["mail", "-s", "error"], when="error")
    job.addPostscript(Command(argv="always"))
    return job


def test_a_job_with_every_option_round_trips():
    job = every_option_job()
    mj = round_trip(job)
    assert from_json(job.asJSON()) == mj
    assert from_json(job.asJSON(indent=2)) == mj
    assert json.loads(job.asJSON())["data"]["title"] == "every {option}"

    # every field of the model was set to something other than its default
    defaults = M.Job()
    for f in ("title", "cleanup", "postscript", "after", "afterjids", "atleast", "atmost", "maxactive", "tags",
              "projects", "tier", "service", "avoid", "envkey", "priority", "crews", "etalevel", "comment",
              "metadata", "editpolicy", "dirmaps", "assignments", "serialsubtasks", "paused", "spoolcwd",
              "subtasks"):
        assert getattr(mj, f) != getattr(defaults, f), f
    setup = mj.subtasks[0]
    for f in ("id", "service", "atleast", "atmost", "serialsubtasks", "resumeblock", "chaser", "preview",
              "metadata", "cmds", "cleanup"):
        assert getattr(setup, f) != getattr(M.Task("x"), f), f
    c = setup.cmds[0]
    for f in ("local", "service", "tags", "envkey", "atleast", "atmost", "samehost", "id", "expand", "msg",
              "retryrc", "minrunsecs", "maxrunsecs", "resumewhile", "resumepin", "metadata", "metrics"):
        assert getattr(c, f) != getattr(M.Command(("x",)), f), f
    assert setup.cmds[1].refersto == "mk" and setup.cmds[1].expand == "/tmp/more tasks.alf"

    # the values the model got
    assert mj.priority == 150.5 and mj.tags == ("prman", "nuke") and mj.envkey == ("rman-24", "setenv A=1 B=2")
    assert mj.dirmaps == (M.DirMap("/mnt/a", "//srv/a", "UNC"), M.DirMap("/proj dir", "Z:/proj", "NFS"))
    assert mj.assignments == (("SHOT", "010"),)
    assert c.argv == ("mkdir", "-p", "/out/010")  # Assign variables replaced, as the parser does
    assert setup.cmds[1].argv == ("checker", "010")
    assert setup.chaser == ("it", "/out/$SHOT.exr")  # ... in launch expressions of commands only
    assert setup.preview == ("sho", "a b")
    assert c.resumewhile == ("exitcode", "123") and c.envkey == ("setenv X=1",) and c.msg == "y\n"
    render = mj.subtasks[2]
    # an Instance made by adding a task again names its -id
    assert [n.title for n in render.subtasks] == ["frame 1", "frame 3", "frame 5", "setup.1", "outside"]
    assert [type(n).__name__ for n in render.subtasks] == ["Task"] * 3 + ["Instance"] * 2
    assert render.subtasks[1].cmds[0].argv == ("prman", "-f", "3", "010")
    assert render.subtasks[1].cmds[0].service == "PixarRender"
    assert [c.runtype for c in mj.postscript] == ["post_done", "post_error", "post_always"]
    assert mj.cleanup[0].runtype == "cleanup" and mj.cleanup[0].local
    assert setup.cleanup[0].runtype == "cleanup"
    # the script keeps $SHOT and the -init block
    text = job.asTcl()
    assert "$SHOT" in text and "-init {\n  Assign {SHOT} {010}\n}" in text


def test_every_job_task_and_command_attribute_is_known():
    """The builders cover the model: every model field has a builder attribute (or a documented stand-in)."""
    import dataclasses

    stand_in = {"Job": {"assignments": "init", "warnings": None, "where": None},
                "Task": {"where": None},
                "Command": {"runtype": "when", "where": None}}
    for builder, mcls in ((Job, M.Job), (Task, M.Task), (Command, M.Command)):
        names = set(builder._ATTRS) | set(builder._OBJECTS)
        for f in dataclasses.fields(mcls):
            other = stand_in[builder.__name__].get(f.name, f.name)
            assert other is None or other in names, (builder.__name__, f.name)


# --- Job ------------------------------------------------------------------------------------


def test_job_keywords_and_attributes():
    job = Job(title="t", priority=5)
    job.service = "linux"
    job.tags = ["a"]
    job.tags.append("b")  # lists can be changed in place
    job.projects = "p1 p2"
    assert job.projects == ["p1", "p2"]
    mj = job.to_model()
    assert (mj.title, mj.priority, mj.service, mj.tags, mj.projects) == ("t", 5.0, "linux", ("a", "b"), ("p1", "p2"))
    assert str(job) == "Job t"
    assert "title='t'" in repr(job)
    assert Job(title="d").to_model() == M.Job(title="d")  # defaults are the model's


def test_job_needs_a_title():
    with pytest.raises(RequiredValueError, match="Job.title is required"):
        Job().to_model()
    with pytest.raises(RequiredValueError):
        Job(title="").asTcl()


def test_job_new_task_add_child_and_returns():
    job = Job(title="j")
    t = job.newTask(title="a", argv=["echo", "a"], service="linux")
    assert isinstance(t, Task) and job.subtasks == [t]
    # argv makes one RemoteCmd, which takes the service (Tractor's shortcut)
    assert t.service is None and len(t.cmds) == 1 and t.cmds[0].service == "linux"
    assert t.cmds[0].argv == ["echo", "a"] and t.cmds[0].local is False
    b = Task(title="b")
    assert job.addChild(b) is b
    again = job.addChild(b)  # already has a parent: an Instance
    # named by the task's -id, made up as it had none (titles may repeat)
    assert isinstance(again, Instance) and again.title == b.id and b.id.startswith("_auto")
    assert [type(n).__name__ for n in job.subtasks] == ["Task", "Task", "Instance"]
    round_trip(job)


def test_job_cleanup_postscript_dirmap_assignment():
    job = Job(title="j")
    c = job.newCleanup(argv="rm x")
    assert job.addCleanup(Command(argv="rm y")) is job.cleanup[1] and job.cleanup[0] is c
    p = job.newPostscript(argv="mail", when="error")
    assert p.when == "error" and job.postscript == [p]
    d = job.newDirMap("/a", "/b", "NFS")
    assert isinstance(d, DirMap) and job.dirmaps == [d]
    a = job.newAssignment("N", 3)
    assert isinstance(a, Assign) and a.value == "3" and job.init == [a]
    job.dirmaps.append(("/c", "/d", "UNC"))  # a plain tuple is not a DirMap
    with pytest.raises(AttributeValueError, match=r"Job.dirmaps: expected DirMap"):
        job.to_model()
    job.dirmaps = [DirMap("/c", "/d", "UNC")]
    job.init = [Assign("A", "1"), Assign("B", "2")]
    with pytest.raises(RequiredValueError, match="subtasks are required"):  # as Tractor's
        job.asTcl()
    job.newTask(title="t")
    mj = round_trip(job)
    assert [c.runtype for c in mj.cleanup] == ["cleanup", "cleanup"]
    assert mj.postscript[0].runtype == "post_error"
    assert mj.assignments == (("A", "1"), ("B", "2")) and mj.dirmaps == (M.DirMap("/c", "/d", "UNC"),)


def test_after_is_kept_to_the_minute_in_local_time():
    now = dt.datetime.now()
    # within the half year the year-less -after syntax reads back exactly
    soon = now + dt.timedelta(days=40)
    naive = soon.replace(hour=5, minute=6, second=59, microsecond=7)
    job = Job(title="a", after=naive)
    job.newTask(title="t")
    assert job.after is naive
    mj = round_trip(job)
    assert mj.after == naive.replace(second=0, microsecond=0).astimezone()
    assert mj.after.tzinfo is not None
    assert f"-after {{{soon.month:02d} {soon.day:02d} 05:06}}" in job.asTcl()
    aware = dt.datetime(now.year, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert Job(title="a", after=aware).to_model().after == aware
    with pytest.raises(AttributeValueError, match="Job.after: expected a datetime"):
        Job(title="a", after="12:00")


# --- Task -----------------------------------------------------------------------------------


def test_task_methods():
    t = Task(title="t", id="t1", serialsubtasks=1, resumeblock=True, metadata="m", preview=["a", "b"],
             chaser="c d")
    c = t.newCommand(argv="x", tags="a b", retryrc=3, local=True)
    assert c.retryrc == [3] and c.local and t.cmds == [c]
    d = Command(argv="y")
    assert t.addCommand(d) is d
    cl = t.newCleanup(argv="z")
    assert t.addCleanup(Command(argv="w")) is t.cleanup[1] and t.cleanup[0] is cl
    sub = t.newTask(title="sub", argv="s")
    assert t.subtasks == [sub]
    assert isinstance(t.addChild(Task(title="sub2")), Task)
    mt = t.to_model()
    assert isinstance(mt, M.Task) and mt.id == "t1" and mt.serialsubtasks and mt.chaser == ("c", "d")
    assert [c.argv for c in mt.cmds] == [("x",), ("y",)] and [c.runtype for c in mt.cleanup] == ["cleanup"] * 2
    assert [s.title for s in mt.subtasks] == ["sub", "sub2"]
    assert t.asTcl() == (
        "Task {t} -id {t1} -serialsubtasks 1 -resumeblock 1 -chaser {{c} {d}} -preview {{a} {b}} -metadata {m}"
        " -subtasks {\n"
        "  Task {sub} -cmds {\n"
        "    RemoteCmd {{s}}\n"
        "  }\n"
        "  Task {sub2}\n"
        "} -cmds {\n"
        "  Cmd {{x}} -tags {{a} {b}} -retryrc {3}\n"
        "  RemoteCmd {{y}}\n"
        "} -cleanup {\n"
        "  RemoteCmd {{z}}\n"
        "  RemoteCmd {{w}}\n"
        "}\n")
    job = Job(title="j")
    job.addChild(t)
    round_trip(job)


def test_task_needs_a_title_and_first_positional_is_argv():
    with pytest.raises(RequiredValueError, match="Task.title is required"):
        Task(argv="x").to_model()
    t = Task(["render", "-f", 1], title="r")
    assert t.cmds[0].argv == ["render", "-f", "1"] and t.to_model().cmds[0].argv == ("render", "-f", "1")


def test_instance_replaces_a_task_added_twice_and_instances_cannot_move():
    job = Job(title="j")
    a = job.newTask(title="a")
    b = job.newTask(title="b")
    inst = b.addChild(a)
    assert isinstance(inst, Instance) and inst.title == a.id and inst._parent is b
    with pytest.raises(ParentExistsError, match=rf"Instance '{a.id}' already has a parent"):
        job.addChild(inst)
    own = Instance(title="b")
    job.newTask(title="c").addChild(own)
    with pytest.raises(ParentExistsError):
        a.addChild(own)
    assert Instance("x").asTcl() == "Instance {x}\n"
    assert Instance("x").to_model() == M.Instance("x")
    with pytest.raises(RequiredValueError, match="Instance.title"):
        Instance().to_model()
    mj = round_trip(job)
    assert mj.subtasks[1].subtasks == (M.Instance(a.id),)


def test_a_task_cannot_contain_itself():
    t = Task(title="t")
    with pytest.raises(AuthorError, match="under itself"):
        t.addChild(t)
    child = Task(title="c")
    grandchild = child.newTask(title="g")
    with pytest.raises(AuthorError, match="under itself"):
        grandchild.addChild(child)
    # a loop made behind the API's back is found when converting
    grandchild.subtasks.append(child)
    with pytest.raises(AuthorError, match="contains itself"):
        child.to_model()


def test_subtasks_assignment_adopts_and_releases():
    t1, t2 = Task(title="1"), Task(title="2")
    job = Job(title="j", subtasks=[t1, t2])
    assert t1._parent is job and job.subtasks == [t1, t2]
    job.subtasks = [t2]
    assert t1._parent is None and t2._parent is job
    other = Job(title="o")
    assert other.addChild(t1) is t1  # free again: added as itself
    with pytest.raises(AttributeValueError, match=r"Job.subtasks: expected a list"):
        Job(title="j", subtasks=t1)
    with pytest.raises(AttributeValueError, match=r"Task.cmds: expected Command, got 'ls'"):
        Task(title="t", cmds=["ls"])


def test_deep_trees_do_not_hit_the_recursion_limit():
    job = Job(title="deep")
    t = job.newTask(title="0")
    for i in range(1, 3000):
        t = t.newTask(title=str(i), argv=["echo", i])
    mj = job.to_model()
    assert len(resolve(mj).tasks) == 3000


# --- Command ------------------------------------------------------------------------------


def test_a_string_argv_is_split_at_white_space_as_tractors_api_splits_it():
    # nothing quotes: braces, quotes and backslashes (Windows paths) stay in the words
    for text, words in (("a b  c", ["a", "b", "c"]), ('nuke -x "my comp.nk"', ["nuke", "-x", '"my', 'comp.nk"']),
                        ("C:\\app\\render.exe -f {1}", ["C:\\app\\render.exe", "-f", "{1}"]),
                        ("a {b", ["a", "{b"]), ("\tx\n y ", ["x", "y"])):
        cmd = Command(argv=text)
        assert cmd.argv == words and cmd.to_model().argv == tuple(words)
        # and the script says the same words
        job = Job(title="t")
        job.newTask(title="t").addCommand(cmd)
        assert alfred.parse(job.asTcl()).subtasks[0].cmds[0].argv == tuple(words)
    assert Task(title="t", preview="it img1 img2").preview == ["it", "img1", "img2"]
    with pytest.raises(RequiredValueError, match="Command.argv is required"):
        Command().to_model()
    with pytest.raises(RequiredValueError):
        Command(argv="   ").asTcl()
    with pytest.raises(AttributeValueError, match=r"Command.argv\[1\]: expected a string \(or a number\), got None"):
        Command(argv=["a", None])


def test_command_as_tcl_and_model():
    c = Command(True, argv=["ls", "-l", "my dir"], service="linux", id="", expand=0, samehost=1)
    assert c.asTcl() == "Cmd {{ls} {-l} {my dir}} -service {linux} -samehost 1\n"
    mc = c.to_model()
    assert mc.local and mc.id is None and mc.expand is None and mc.samehost is True
    p = Command(argv="mail", when="done")
    assert p.to_model().runtype == "post_done" and p.asTcl() == "RemoteCmd {{mail}} -when done\n"
    assert Command(argv="x", expand=" 1 ").to_model().expand == ""
    assert Command(argv="x", expand=" out.alf ").to_model().expand == "out.alf"
    assert "local=True" in repr(c)


def test_when_belongs_to_postscripts_only():
    job = Job(title="j")
    job.newTask(title="t").newCommand(argv="x", when="done")
    with pytest.raises(AuthorError, match="Command.when: 'done' belongs only to Job postscript"):
        job.to_model()
    job = Job(title="j")
    job.newCleanup(argv="x", when="error")
    with pytest.raises(AuthorError, match="postscript"):
        job.asTcl()


# --- bad values name the attribute ------------------------------------------------------


@pytest.mark.parametrize("cls, attr, value, expected", [
    (Job, "title", 3, "a string"),
    (Job, "priority", "high", "a finite number"),
    (Job, "priority", float("nan"), "a finite number"),
    (Job, "priority", True, "a finite number"),
    (Job, "maxactive", -1, "a non-negative integer"),
    (Job, "maxactive", 2**31, "a non-negative integer"),
    (Job, "atleast", 1.5, "a non-negative integer"),
    (Job, "etalevel", "2", "a non-negative integer"),
    (Job, "paused", 2, "a bool"),
    (Job, "paused", "yes", "a bool"),
    (Job, "tags", 5, "a list of strings"),
    (Job, "tags", ["a", 5], "a string"),
    (Job, "projects", {"a": 1}, "a list of strings"),
    (Job, "crews", b"x", "a list of strings"),
    (Job, "envkey", [None], "a string"),
    (Job, "afterjids", [0], "positive job id"),
    (Job, "afterjids", "12", "a list of positive job ids"),
    (Job, "afterjids", [True], "positive job id"),
    (Job, "after", 1234567890, "a datetime"),
    (Job, "service", ["a"], "a string"),
    (Job, "comment", "nul\x00char", "NUL characters are not allowed"),
    (Job, "cleanup", [Task(title="t")], "Command"),
    (Job, "init", [("A", "1")], "Assign"),
    (Task, "title", 1.0, "a string"),
    (Task, "id", 7, "a string"),
    (Task, "service", 1, "a string"),
    (Task, "atmost", -2, "a non-negative integer"),
    (Task, "serialsubtasks", "1", "a bool"),
    (Task, "chaser", 3, "a list of strings"),
    (Task, "preview", [None], "a string"),
    (Task, "subtasks", [Command(argv="x")], "Task or Instance or Iterate"),
    (Command, "argv", 5, "a list of strings"),
    (Command, "retryrc", ["1"], "32-bit integer"),
    (Command, "retryrc", [2**40], "32-bit integer"),
    (Command, "minrunsecs", -1, "a non-negative number of seconds"),
    (Command, "maxrunsecs", float("inf"), "a non-negative number of seconds"),
    (Command, "expand", 2, "True/False or a file name"),
    (Command, "when", "later", "'done', 'error' or 'always'"),
    (Command, "when", ["done"], "'done', 'error' or 'always'"),
    (Command, "local", "no", "a bool"),
    (Command, "resumepin", 3, "a bool"),
    (Command, "samehost", 2, "a bool"),
    (Command, "msg", 5, "a string"),
    (Command, "refersto", ["x"], "a string"),
    (Command, "resumewhile", 123, "a list of strings"),
    (Iterate, "by", 0, "a positive integer or 'binary'"),
    (Iterate, "by", "2", "a positive integer or 'binary'"),
    (Iterate, "frm", "1", "an integer"),
    (Iterate, "template", [Command(argv="x")], "Task or Instance or Iterate"),
    (DirMap, "zone", 1, "a string"),
    (Assign, "varname", 1, "a string"),
])
def test_bad_values_raise_naming_the_attribute(cls, attr, value, expected):
    obj = cls(argv="x") if cls is Command else cls()
    with pytest.raises(AttributeValueError) as info:
        setattr(obj, attr, value)
    err = info.value
    assert str(err).startswith(f"{cls.__name__}.{attr}") and expected in str(err)
    # one of ours (exit status 11), and the TypeError Tractor's API raises
    assert isinstance(err, (JobError, BadInput, TractorError, TypeError)) and err.status == ExitStatus.BAD_INPUT
    with pytest.raises(AttributeValueError):  # keywords are checked the same way
        cls(**{attr: value, **({"argv": "x"} if cls is Command and attr != "argv" else {})})


def test_values_changed_in_place_are_checked_again():
    job = Job(title="j", tags=["a"])
    job.tags.append(5)
    with pytest.raises(AttributeValueError, match=r"Job.tags\[1\]: expected a string, got 5"):
        job.to_model()
    c = Command(argv=["a"])
    c.argv.append(None)
    with pytest.raises(AttributeValueError, match=r"Command.argv\[1\]"):
        c.to_model()


def test_unknown_attributes():
    with pytest.raises(UnknownAttributeError, match="Task has no attribute 'titel'") as info:
        Task(titel="x")
    assert isinstance(info.value, AttributeError) and isinstance(info.value, BadInput)
    assert "title" in info.value.hint
    job = Job(title="j")
    with pytest.raises(UnknownAttributeError, match="Job has no attribute 'pbias'"):
        job.pbias = 3
    with pytest.raises(UnknownAttributeError):
        Command(argv="x", flags=1)
    job._private = 1  # underscore names are free (for subclasses and the builders' own state)


def test_resolve_errors_come_from_to_model():
    job = Job(title="j")
    job.newTask(title="a").addChild(Instance("nobody"))
    with pytest.raises(JobError, match="Instance 'nobody' refers to no task"):
        job.to_model()
    assert job.to_model(check=False).subtasks[0].subtasks == (M.Instance("nobody"),)
    assert "Instance {nobody}" in job.asTcl()  # asTcl writes what it is given, as Tractor's does
    job = Job(title="j")
    job.newTask(title="a", id="x")
    job.newTask(title="b", id="x")
    with pytest.raises(JobError, match="duplicate task -id 'x'"):
        job.to_model()


# --- Iterate and Assign -------------------------------------------------------------------


ITERATE_SCRIPT = """
Job -title {it} -subtasks {
  Iterate i -from %s -to %s -by %s -template {
    Task {frame $i} -id {f${i}} -cmds { RemoteCmd {render -f $i ${i}x $ii} -tags {t$i} }
    Instance {frame ${i}}
  } -subtasks { Task {after} }
}
"""


@pytest.mark.parametrize("frm, to, by", [(1, 5, 1), (1, 10, 3), (5, 1, 2), (1, 9, "binary"), (3, 3, 1)])
def test_iterate_expands_as_the_parser_does(frm, to, by):
    it = Iterate("i", frm, to, by)
    t = Task(title="frame $i", id="f${i}")
    t.newCommand(argv="render -f $i ${i}x $ii", tags="t$i")
    assert it.addToTemplate(t) is t
    it.addToTemplate(Instance("frame ${i}"))
    it.addChild(Task(title="after"))
    job = Job(title="it")
    job.addChild(it)
    mj = round_trip(job)
    parsed = alfred.parse(ITERATE_SCRIPT % (frm, to, by))
    assert mj == parsed
    assert "Iterate" not in job.asTcl()
    assert it.to_model() == parsed.subtasks
    assert it.asTcl().startswith("Task {frame %s} -id {f%s}" % (frm, frm))


def test_nested_iterates_and_from_keyword():
    inner = Iterate("y", 1, 2, template=[Task(title="tile $x,$y", argv="tile $x $y")])
    outer = Iterate(varname="x", to=2, template=[inner], **{"from": 1})
    job = Job(title="grid")
    job.addChild(outer)
    mj = round_trip(job)
    assert [t.title for t in mj.subtasks] == ["tile 1,1", "tile 1,2", "tile 2,1", "tile 2,2"]
    assert mj.subtasks[3].cmds[0].argv == ("tile", "2", "2")
    with pytest.raises(ParentExistsError, match="Iterate 'y' already has a parent"):
        Job(title="o").addChild(inner)


def test_iterate_requirements():
    with pytest.raises(RequiredValueError, match="Iterate.varname"):
        Iterate(frm=1, to=2, template=[Task(title="t")]).to_model()
    with pytest.raises(RequiredValueError, match="frm and to are required"):
        Iterate("i", template=[Task(title="t")]).to_model()
    with pytest.raises(RequiredValueError, match="template is empty"):
        Iterate("i", 1, 2).to_model()
    with pytest.raises(AttributeValueError, match="more than 10,000,000"):
        Iterate("i", 0, 2**60, template=[Task(title="t")]).to_model()
    it = Iterate("i", 1, 2)
    with pytest.raises(AuthorError, match="under itself"):
        it.addToTemplate(it)


def test_assignments_are_replaced_in_the_model_and_kept_in_the_script():
    job = Job(title="a")
    job.newAssignment("OUT", "/render/out")
    job.newAssignment("N", "1")
    job.newAssignment("N", "2")  # a later Assign wins
    t = job.newTask(title="$OUT", argv="copy ${OUT}/a.exr $N $NOPE")
    t.cmds[0].msg = "to $OUT"
    mj = round_trip(job)
    c = mj.subtasks[0].cmds[0]
    assert c.argv == ("copy", "/render/out/a.exr", "2", "$NOPE") and c.msg == "to /render/out"
    assert mj.subtasks[0].title == "$OUT"  # only launch expressions and -msg, as the parser does
    assert "{${OUT}/a.exr}" in job.asTcl()
    with pytest.raises(RequiredValueError, match="Assign.varname"):
        Job(title="a", init=[Assign(value="x")]).to_model()
    assert Assign("A", 1.5).to_model() == ("A", "1.5")


def test_dirmap():
    d = DirMap("/a", "/b", "NFS")
    assert d.to_model() == M.DirMap("/a", "/b", "NFS")
    with pytest.raises(RequiredValueError, match="DirMap.zone"):
        DirMap("/a", "/b").to_model()
    assert "src='/a'" in repr(d)


# --- quoting: whatever the strings hold, the script reads back the same -----------------------


def test_awkward_strings_round_trip():
    awkward = ["a}b", "{", "x\\", "$v [cmd]", "tab\there", "new\nline", "cr\r", "#hash", "\u00e9\u4e2d",
               "quote\"s", "semi;colon", "", " lead", "back\\\nslash"]
    job = Job(title="}{", comment=awkward[3], metadata=awkward[6], service=awkward[0])
    for i, s in enumerate(awkward):
        t = job.newTask(title=f"t{i} {s}", argv=["echo", s or "empty", s], metadata=s)
        t.cmds[0].msg = s
        t.cmds[0].tags = [s or "x"]
    job.newDirMap(awkward[0], awkward[2], "z one")
    round_trip(job)


# --- spooling into a real job database ---------------------------------------------------------


def row(settings, sql, *params):
    from tractorcli.db.connection import connect

    with connect(settings, autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()


def spool_demo() -> Job:
    job = Job(title="authored", priority=10, tags=["demo"], projects=["fx"])
    job.newAssignment("MSG", "hello")
    a = job.newTask(title="a", argv=["echo", "$MSG"])
    b = job.newTask(title="b", argv="echo b")
    b.addChild(a)
    job.newPostscript(argv="echo done", when="done")
    return job


def test_spool_into_a_real_database(db_settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = spool_demo()
    jid = job.spool(settings=db_settings, owner="alice", spoolhost="ws7", spoolfile="/scripts/make.py")
    assert isinstance(jid, int) and jid > 0
    r = row(db_settings, "SELECT * FROM jobs WHERE jid = %s", jid)
    assert (r["title"], r["owner"], r["spoolhost"], r["spoolfile"], r["spoolcwd"]) == (
        "authored", "alice", "ws7", "/scripts/make.py", str(tmp_path))
    assert (r["priority"], r["tags"], r["projects"], r["numtasks"], r["numready"]) == (10.0, ["demo"], ["fx"], 2, 1)
    assert r["script"] == job.asTcl() and r["scriptformat"] == "alfred"
    assert r["assignments"] == {"MSG": "hello"}
    cmds = row(db_settings, "SELECT array_agg(array_to_string(argv, ' ') ORDER BY cid) AS a, "
               "array_agg(runtype ORDER BY cid) AS r FROM commands WHERE jid = %s", jid)
    assert cmds["a"] == ["echo hello", "echo b", "echo done"]
    assert cmds["r"] == ["regular", "regular", "post_done"]
    edges = row(db_settings, "SELECT array_agg(kind) AS k FROM task_edges WHERE jid = %s", jid)["k"]
    assert edges == ["instance"]

    # the defaults: the login name, this host, the current directory
    jid2 = Task(title="solo", argv="echo solo").spool(settings=db_settings)
    r2 = row(db_settings, "SELECT title, owner, spoolhost, numtasks FROM jobs WHERE jid = %s", jid2)
    from tractorcli import submit

    assert jid2 > jid
    assert (r2["title"], r2["owner"], r2["spoolhost"], r2["numtasks"]) == (
        "solo", submit.default_owner(), submit.default_host(), 1)


def test_spool_by_configdir_and_over_tcp(shared_site):
    cfg, settings = shared_site
    jid = spool_demo().spool(configdir=str(cfg), owner="bob", block=True)
    assert row(settings, "SELECT owner FROM jobs WHERE jid = %s", jid)["owner"] == "bob"
    # hostname/port reach the server over TCP, as tractor-spool --engine does
    jid2 = spool_demo().spool(configdir=str(cfg), hostname="127.0.0.1", port=settings.db.port)
    jid3 = spool_demo().spool(configdir=str(cfg), hostname=f"127.0.0.1:{settings.db.port}")
    author.setEngineClientParam(hostname="127.0.0.1", port=settings.db.port, user="carol")
    jid4 = spool_demo().spool(configdir=str(cfg))
    author.closeEngineClient()
    assert jid < jid2 < jid3 < jid4
    assert row(settings, "SELECT owner FROM jobs WHERE jid = %s", jid4)["owner"] == "carol"


def test_spool_errors_are_the_projects_own(shared_site, tmp_path, monkeypatch):
    from conftest import free_port

    cfg, settings = shared_site
    # a SpoolError (as Tractor's) with the reason, keeping the project's own error and exit status
    with pytest.raises(SpoolError, match="cannot reach") as info:
        spool_demo().spool(configdir=str(cfg), hostname="127.0.0.1", port=free_port())
    assert isinstance(info.value.__cause__, DatabaseUnavailable)
    assert info.value.status == ExitStatus.UNAVAILABLE
    monkeypatch.setenv("TRACTOR_ENGINE", f"127.0.0.1:{free_port()}")
    with pytest.raises(SpoolError, match="cannot reach"):  # TRACTOR_ENGINE is honoured, as by tractor-spool
        spool_demo().spool(configdir=str(cfg))
    with pytest.raises(SpoolError, match="does not exist") as info:
        spool_demo().spool(configdir=str(tmp_path / "nowhere"))
    assert isinstance(info.value.__cause__, ConfigError)
    with pytest.raises(AttributeValueError, match="spool.port"):
        spool_demo().spool(settings=settings, hostname="h", port=70000)
    with pytest.raises(author.InvalidParamError, match="port must be a TCP port"):
        author.setEngineClientParam(port="x")
    with pytest.raises(author.InvalidParamError, match="unknown parameter hostnme"):
        author.setEngineClientParam(hostnme="x")
    with pytest.raises(RequiredValueError):  # checked before anything is sent
        Job().spool(settings=settings)
