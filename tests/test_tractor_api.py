"""The `tractor` package: Pixar's import paths, names and signatures, the shared engine client, the engine
address rule, and the rows and values `tractor.api.query` gives (against a real job database)."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import subprocess
import sys

import pytest
from test_blade import clean_env, program
from test_dispatch import Blade
from test_tq import TqSite

import tractor.api.author as author
import tractor.api.query as tq
from tractorcli.config import ENGINE_PORTS, at_engine, load_settings, split_engine
from tractorcli.errors import UsageError
from tractorcli.jobs import alfred
from tractorcli.jobs.jsonjob import from_json
from tractorcli.jobs.model import resolve

# --- names and signatures (reference section 7) ----------------------------------------------

EMPTY = inspect.Parameter.empty


def params_of(fn) -> list[tuple[str, object]]:
    """[(name, default)] of the named parameters (not *args/**kw)."""
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]


def starts_with(fn, expected: list[tuple[str, object]]) -> None:
    got = params_of(fn)[:len(expected)]
    assert got == expected, f"{fn.__qualname__}: {got} != {expected}"


def takes_keywords(fn) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def test_every_name_of_section_7_1_exists_with_tractors_signature():
    import tractor.api.author.author as author_author
    import tractor.api.author.base as base
    from tractor.api import author as from_api

    assert from_api is author
    for mod in (author, base, author_author):
        for name in ("Job", "Task", "Command", "Instance", "Iterate", "Assign", "DirMap", "AuthorError",
                     "RequiredValueError", "ParentExistsError", "SpoolError", "setEngineClientParam",
                     "closeEngineClient", "ModuleEngineClient"):
            assert hasattr(mod, name), (mod.__name__, name)
    # the same classes everywhere (isinstance holds whichever path made them)
    assert base.Job is author.Job is author_author.Job
    for err in ("RequiredValueError", "ParentExistsError", "SpoolError"):
        assert issubclass(getattr(author, err), author.AuthorError)
    assert issubclass(author.AttributeValueError, TypeError)
    assert issubclass(author.UnknownAttributeError, AttributeError)

    starts_with(author.setEngineClientParam,
                [("hostname", None), ("port", None), ("user", None), ("password", None), ("debug", None)])
    assert params_of(author.closeEngineClient) == []
    starts_with(author.Job.spool, [("block", False), ("owner", None), ("spoolfile", None), ("spoolhost", None),
                                   ("hostname", None), ("port", None)])
    starts_with(author.Job.newDirMap, [("src", EMPTY), ("dst", EMPTY), ("zone", EMPTY)])
    assert len(params_of(author.Job.newAssignment)) == 2
    starts_with(author.Task, [("argv", None)])
    starts_with(author.Command, [("local", False)])
    starts_with(author.Instance, [("title", None)])
    starts_with(author.Iterate, [("varname", None), ("frm", None), ("to", None), ("by", 1), ("template", None),
                                 ("subtasks", None)])
    starts_with(author.Assign, [("varname", None), ("value", None)])
    starts_with(author.DirMap, [("src", None), ("dst", None), ("zone", None)])
    for cls in (author.Job, author.Task, author.Command, author.Instance, author.Iterate):
        assert takes_keywords(cls.__init__), cls
    job_methods = ["newTask", "addChild", "newAssignment", "newDirMap", "newCleanup", "addCleanup",
                   "newPostscript", "addPostscript", "asTcl", "spool"]
    for m in job_methods:
        assert callable(getattr(author.Job, m)), m
    for m in ["addCommand", "newCommand", "newTask", "addChild", "newCleanup", "addCleanup", "spool", "asTcl"]:
        assert callable(getattr(author.Task, m)), m
    assert callable(author.Iterate.addToTemplate)
    for m in ("newTask", "newCommand", "newCleanup", "newPostscript"):
        fn = getattr(author.Job if m in job_methods else author.Task, m)
        assert takes_keywords(fn), m

    job_attrs = ("title tier spoolcwd projects crews maxactive paused after afterjids init atleast atmost etalevel "
                 "tags priority service envkey comment metadata editpolicy cleanup postscript dirmaps "
                 "serialsubtasks subtasks").split()
    task_attrs = ("title id service atleast atmost cmds chaser preview serialsubtasks resumeblock cleanup metadata "
                  "subtasks").split()
    cmd_attrs = ("argv msg tags service metrics id refersto expand atleast atmost minrunsecs maxrunsecs samehost "
                 "envkey retryrc when resumewhile resumepin metadata").split()
    for cls, names in ((author.Job, job_attrs), (author.Task, task_attrs), (author.Command, cmd_attrs),
                       (author.Iterate, ["varname", "frm", "to", "by", "template", "subtasks"])):
        assert set(names) <= set(cls.MEMBERS), (cls, set(names) - set(cls.MEMBERS))
        element = cls()
        for n in names:
            assert hasattr(element, n), (cls, n)


def test_every_name_of_section_7_2_exists_with_tractors_signature():
    from tractor.api import query as from_api

    assert from_api is tq
    starts_with(tq.setEngineClientParam, [("hostname", None), ("port", None), ("user", None), ("password", None),
                                          ("debug", None), ("sessionFilename", None), ("newSession", None)])
    assert params_of(tq.closeEngineClient) == [] and params_of(tq.needsPassword) == []
    for name in ("jobs", "tasks", "commands", "invocations", "blades", "params"):
        assert params_of(getattr(tq, name)) == [("search", ""), ("columns", []), ("sortby", []), ("limit", None),
                                                 ("archive", False)], name
    keywords = {"chcrews": ["crews"], "chpri": ["priority"], "jattr": ["key", "value"], "lock": ["note"],
                "delay": ["aftertime"], "cattr": ["key", "value"], "chkeys": ["keystr"], "nimby": ["allow"]}
    plain = ("pause unpause unlock interrupt restart retryactive retryerrors skiperrors undelay delete undelete "
             "jobdump retry resume kill skip log unnimby eject delist trace").split()
    for name in [*keywords, *plain]:
        names = [n for n, _ in params_of(getattr(tq, name))]
        assert names[1:] == keywords.get(name, []), (name, names)
    for err in ("PasswordRequired", "InvalidValue", "MissingSearchClause", "MissingParameter", "MissingTargetKey",
                "SortNotAllowed"):
        assert issubclass(getattr(tq, err), tq.TractorQueryError)


def test_tractor_base_engine_client_names():
    import tractor.base.EngineClient as EngineClient

    assert EngineClient.TheEngineClient is author.ModuleEngineClient is tq.ModuleEngineClient
    assert issubclass(EngineClient.TransactionError, EngineClient.EngineClientError)
    other = EngineClient.EngineClient()
    assert other is not EngineClient.TheEngineClient
    other.setParam(hostname="farmdb", port=5432, user="ann")
    assert (other.hostname, other.port, other.user) == ("farmdb", 5432, "ann")
    assert author.ModuleEngineClient.user is None  # the shared one did not change


def test_import_of_author_stays_cheap():
    # pipeline code imports it in every DCC session: no database driver, no rich, no click
    code = ("import sys, tractor.api.author, tractor.api.query; "
            "print(sorted(m for m in ('psycopg', 'rich', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the engine address rule -------------------------------------------------------------------


def test_engine_addresses_name_the_sites_database(tmp_path):
    (tmp_path / "db.toml").write_text('port = 7000\nhost = "farmdb.example"\n')
    site = load_settings(tmp_path)
    assert split_engine("tractor-engine:80") == ("tractor-engine", 80)
    assert split_engine("h") == ("h", None) and split_engine("[::1]:5432") == ("::1", 5432)
    for bad in ("h:x", "h:0", ":80", "[::1"):
        with pytest.raises(UsageError):
            split_engine(bad)
    # Tractor's engine name and engine ports: the site's own database as configured here
    for port in (None, *ENGINE_PORTS):
        db = at_engine(site, "tractor-engine", port).db
        assert (db.host, db.port) == ("farmdb.example", 7000)
    # any other host or port is the database server's own
    assert (at_engine(site, "10.0.0.5", 80).db.host, at_engine(site, "10.0.0.5", 80).db.port) == ("10.0.0.5", 7000)
    assert at_engine(site, "tractor-engine", 5433).db.port == 5433
    assert at_engine(site, None, None) is site
    # a site may call its engine something else, on other ports
    (tmp_path / "tractor.toml").write_text('engine_name = "farm"\nengine_ports = [8000]\n')
    site = load_settings(tmp_path)
    assert at_engine(site, "farm", 8000).db.host == "farmdb.example"
    assert at_engine(site, "tractor-engine", 80).db.host == "tractor-engine"
    assert at_engine(site, "tractor-engine", 80).db.port == 80


def test_tractor_spool_engine_follows_the_rule(db_settings, tmp_path):
    site = TqSite(db_settings)
    try:
        alf = tmp_path / "j.alf"
        alf.write_text("Job -title {engine rule} -subtasks { Task t -cmds { RemoteCmd {true} } }\n")
        env = dict(clean_env(), TRACTOR_ENGINE="tractor-engine:80")
        r = subprocess.run([program("tractor-spool"), "--configdir", str(site.cfg), str(alf)],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        jid = int(r.stdout.split()[-1])
        r = subprocess.run([program("tractor-spool"), "--configdir", str(site.cfg), "--engine", "tractor-engine:5600",
                            str(alf)], capture_output=True, text=True, env=clean_env(), timeout=60)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.split()[-1]) == jid + 1
        assert site.one("SELECT count(*) AS n FROM jobs WHERE title = 'engine rule'")["n"] == 2
        r = subprocess.run([program("tractor-spool"), "--configdir", str(site.cfg), "--engine", "h:x", str(alf)],
                           capture_output=True, text=True, env=clean_env(), timeout=60)
        assert r.returncode == 2 and "--engine 'h:x'" in r.stderr and "Traceback" not in r.stderr
    finally:
        site.close()


# --- the one engine client --------------------------------------------------------------------


@pytest.fixture
def site(db_settings, monkeypatch):
    for name in ("TRACTOR_ENGINE", "TRACTOR_USER", "TRACTOR_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    s = TqSite(db_settings)
    monkeypatch.setenv("TRACTOR_CONFIGDIR", str(s.cfg))
    yield s
    s.close()


def small_job(title: str = "j", n: int = 2) -> author.Job:
    job = author.Job(title=title)
    for i in range(1, n + 1):
        job.newTask(title=f"t{i}", argv=["echo", i])
    return job


def test_a_user_set_through_author_is_what_query_uses_and_back(site):
    author.setEngineClientParam(hostname="tractor-engine", port=80, user="ann")
    jid = small_job().spool()
    assert isinstance(jid, int)
    assert site.jobrow(jid)["owner"] == "ann"
    assert [r["jid"] for r in tq.jobs("mine")] == [jid]  # "mine" is author's user
    tq.setEngineClientParam(user="bob")
    jid2 = small_job().spool(block=False)
    assert site.jobrow(jid2)["owner"] == "bob"  # and the other way round
    assert [r["jid"] for r in tq.jobs("mine")] == [jid2]
    with pytest.raises(author.InvalidParamError, match="unknown parameter"):
        author.setEngineClientParam(engine="x")
    with pytest.raises(tq.InvalidParamError):
        tq.setEngineClientParam(port="eighty")


def test_environment_and_sessions(site, monkeypatch):
    monkeypatch.setenv("TRACTOR_USER", "carol")
    monkeypatch.setenv("TRACTOR_ENGINE", "tractor-engine:8080")
    jid = small_job().spool()
    assert site.jobrow(jid)["owner"] == "carol"
    assert tq.jobs("mine", columns=["jid"])[0]["jid"] == jid
    client = author.ModuleEngineClient
    assert client.tsid is not None  # a session (connection) is open
    client.tsid = None  # how pipeline code drops a session
    assert client.tsid is None
    assert tq.jobs(f"jid={jid}")[0]["owner"] == "carol"  # a new one is opened
    tq.closeEngineClient()
    assert client.tsid is None
    assert tq.needsPassword() is False
    # an engine address that reaches no database: the project's error, as a SpoolError with the reason
    monkeypatch.setenv("TRACTOR_ENGINE", "127.0.0.1:1")
    client.reset()
    with pytest.raises(author.SpoolError, match="cannot reach"):
        small_job().spool()


# --- authoring: what real pipeline code passes -------------------------------------------------


def test_loose_values_are_taken_as_tractor_takes_them(site):
    job = author.Job(title="loose", priority=150.5, serialsubtasks=True, metadata='{"shot": "010"}',
                     envkey=["prman-24", "setenv SHOT=010 SEQ=a"], projects="", tags="fx lighting")
    t = job.newTask(title="render", argv="prman -Progress scene.rib")
    c = t.newCommand(argv=["sleep", 1, 2.5, True], retryrc=range(0, 11))
    assert c.argv == ["sleep", "1", "2.5", "True"]
    t2 = author.Task({}, title="serial", id="s1", serialsubtasks=True)  # a positional dict (jobtronaut)
    job.addChild(t2)
    jid = job.spool(port="80", hostname="tractor-engine")
    row = site.jobrow(jid)
    assert (row["priority"], row["serialsubtasks"], row["metadata"], row["envkey"], row["projects"], row["tags"]) == (
        150.5, True, '{"shot": "010"}', ["prman-24", "setenv SHOT=010 SEQ=a"], ["default"], ["fx", "lighting"])
    argvs = [r["argv"] for r in site.all("SELECT argv FROM commands WHERE jid = %s ORDER BY cid", jid)]
    assert argvs == [["prman", "-Progress", "scene.rib"], ["sleep", "1", "2.5", "True"]]
    codes = site.one("SELECT retryrcodes FROM commands WHERE jid = %s AND cid = 2", jid)["retryrcodes"]
    assert codes == list(range(0, 11))


def test_the_object_model_reads_back_as_tractors(site):
    job = author.Job(title="model", envkey=["k"])
    a = job.newTask(title="a", argv="echo a", service="linux")
    assert job.subtasks == [a] and a.cmds[0].argv == ["echo", "a"] and a.cmds[0].service == "linux"
    assert job.envkey == ["k"] and str(job) == "Job model"
    assert "title" in author.Task.MEMBERS and "cmds" in author.Task.MEMBERS
    assert job.attributeByName["title"].value == "model"
    job.attributeByName["title"].value = "renamed"
    assert job.title == "renamed"
    b = author.Task(title="b")
    b.attributeByName["cmds"].addElement(author.Command(argv="echo b"))
    assert [c.argv for c in b.attributeByName.get("cmds", [])] == [["echo", "b"]]
    assert super(author.Task, a).__getattr__("title") == "a"  # as jobtronaut calls it

    class ShotJob(author.Job):  # subclasses carry members of their own
        MEMBERS = author.Job.MEMBERS + ["shot"]

    s = ShotJob(title="s", shot="sh010")
    assert s.shot == "sh010" and ShotJob(title="t").shot is None
    with pytest.raises(author.UnknownAttributeError):
        author.Job(title="x", shot="sh010")

    # the same Task added again: an Instance naming its -id (made up when it has none)
    comp = job.newTask(title="comp")
    inst = comp.addChild(a)
    assert isinstance(inst, author.Instance) and inst.title == a.id and a.id
    with pytest.raises(author.ParentExistsError):
        job.addChild(inst)
    text = job.asTcl()
    assert text.startswith("Job -title {renamed}")
    assert f"Instance {{{a.id}}}" in text
    with pytest.raises(author.RequiredValueError):
        author.Job(title="empty").spool()
    with pytest.raises(author.AuthorError):
        author.Job(title="x", priority="high")


def test_instances_name_a_task_id_before_a_title():
    # titles repeat across layers; ids do not: an Instance names the task whose -id it is, else the
    # first task so titled, in .alf, JSON and the author API alike
    script = """Job -title {layers} -subtasks {
      Task {render} -id {bg.render} -cmds { RemoteCmd {echo bg} }
      Task {render} -id {fg.render} -cmds { RemoteCmd {echo fg} }
      Task {comp} -subtasks {
        Instance {fg.render}
        Instance {render}
      } -cmds { RemoteCmd {echo comp} }
    }"""
    r = resolve(alfred.parse(script))
    by_tid = {t.tid: t.task.id for t in r.tasks}
    assert [(by_tid[target], kind) for _, target, kind in r.edges] == [("fg.render", "instance"),
                                                                       ("bg.render", "instance")]
    data = {"TractorJob": "2.0", "data": {"title": "layers"}, "children": [
        {"data": {"title": "render", "id": "bg.render"}},
        {"data": {"title": "render", "id": "fg.render"}},
        {"data": {"title": "comp", "ants": ["fg.render"]}}]}
    r = resolve(from_json(json.dumps(data)))
    by_tid = {t.tid: t.task.id for t in r.tasks}
    assert [by_tid[target] for _, target, _ in r.edges] == ["fg.render"]
    job = author.Job(title="layers")
    job.newTask(title="render", id="bg.render")
    job.newTask(title="render", id="fg.render")
    job.newTask(title="comp").addChild(author.Instance(title="fg.render"))
    r = resolve(job.to_model())
    by_tid = {t.tid: t.task.id for t in r.tasks}
    assert [by_tid[target] for _, target, _ in r.edges] == ["fg.render"]


# --- querying: rows and values as Tractor's -----------------------------------------------------


def test_rows_hold_the_entitys_attributes_and_the_joined_columns(site):
    author.setEngineClientParam(user="ann")
    jid = small_job("rows", 2).spool()
    b = Blade(site.conn, name="b1", slots=2)
    (j, t1), (_, t2) = b.claim()
    b.finish(j, t1, rcode=3)  # t2 stays running

    rows = tq.tasks(f"jid={jid}", columns=["Job.owner", "Job.title"], sortby=["tid"])
    assert [r["tid"] for r in rows] == [1, 2]
    r = rows[0]
    assert r["Job.owner"] == "ann" and r["Job.title"] == "rows" and r["state"] == "error"
    assert {"jid", "tid", "title", "cids", "ptids", "statetime", "retrycount"} <= set(r)
    assert "owner" not in r  # joined columns keep their qualified names
    tq.retry(rows[:1])  # result dicts straight back as targets
    assert site.states(jid)[0] == "ready"

    invos = tq.invocations(f"jid={jid}", columns=["Blade.name", "Blade.numslots", "Job.title"],
                           sortby=[["tid", 1]])
    assert [(i["tid"], i["rcode"], i["Blade.name"], i["Blade.numslots"], i["Job.title"]) for i in invos] == [
        (1, 3, "b1", 2, "rows"), (2, None, "b1", 2, "rows")]  # rcode None while running
    started = invos[0]["starttime"]
    assert isinstance(started, str)
    parsed = dt.datetime.strptime(started.split(".")[0], "%Y-%m-%d %H:%M:%S")
    db_start = site.one("SELECT starttime FROM invocations WHERE jid = %s AND tid = 1", jid)["starttime"]
    assert parsed == db_start.astimezone().replace(tzinfo=None, microsecond=0)
    assert dt.datetime.strptime(started, "%Y-%m-%d %H:%M:%S.%f") == db_start.astimezone().replace(tzinfo=None)
    assert isinstance(invos[0]["elapsedreal"], float)

    job = tq.jobs(f"jid={jid}")[0]
    assert isinstance(job["jid"], int) and isinstance(job["projects"], list) and isinstance(job["afterjids"], list)
    assert isinstance(job["metadata"], str) and isinstance(job["elapsedsecs"], (int, float))
    assert isinstance(job["spooltime"], str) and job["pausetime"] is None

    blades = tq.blades("name=b1", columns=["slotsinuse", "BladeUse.taskcount"])
    assert blades[0]["BladeUse.slotsinuse"] == 1 and blades[0]["BladeUse.taskcount"] == 1
    assert "slotsinuse" not in blades[0] and blades[0]["numslots"] == 2
    assert isinstance(blades[0]["bladeid"], str)
    assert "slotsinuse" not in tq.blades("name=b1")[0]


def test_listing_arguments(site):
    author.setEngineClientParam(user="ann")
    jids = [small_job(f"j{i}", 1).spool() for i in range(3)]
    tq.chpri(f"jid={jids[1]}", priority=5)
    assert [r["jid"] for r in tq.jobs("jid>0", sortby=["-priority", "spooltime"])] == [jids[1], jids[0], jids[2]]
    assert [r["jid"] for r in tq.jobs("jid>0", sortby=[["spooltime", -1]])] == jids[::-1]
    assert len(tq.jobs("jid>0", limit=0)) == 3 and len(tq.jobs("jid>0", limit=2)) == 2
    assert [r["jid"] for r in tq.jobs({"jid": jids[2]}, limit=1)] == [jids[2]]
    assert [r["tid"] for r in tq.tasks([{"jid": jids[0], "tid": 1}])] == [1]
    with pytest.raises(tq.MissingSearchClause):
        tq.jobs()
    with pytest.raises(tq.MissingSearchClause):
        tq.tasks("  ")
    with pytest.raises(tq.InvalidValue, match="sortby"):
        tq.jobs("jid>0", sortby=[["spooltime", 2]])
    with pytest.raises(tq.InvalidValue):
        tq.jobs("jid>0", columns=["nosuch"])
    with pytest.raises(tq.MissingTargetKey):
        tq.tasks({"tid": 1})
    # blades: registered ones, unless archive
    Blade(site.conn, name="old")
    site.conn.execute("UPDATE blades SET cleartime = now() + interval '1 minute' WHERE name = 'old'")
    assert tq.blades("name=old") == [] and [b["name"] for b in tq.blades("name=old", archive=True)] == ["old"]


def test_operations_return_what_tractors_return(site):
    author.setEngineClientParam(user="ann")
    jid = small_job("ops", 2).spool()
    assert tq.pause(f"jid={jid}") is None and site.jobrow(jid)["pausetime"] is not None
    assert tq.unpause({"jid": jid}) is None and site.jobrow(jid)["pausetime"] is None
    assert tq.skip({"jid": jid, "tid": 1}) is None and site.states(jid)[0] == "done"
    assert tq.retry([{"jid": jid, "tid": 1}]) is None and site.states(jid)[0] == "ready"
    assert tq.chpri(f"jid={jid}", priority=7.5) is None and site.jobrow(jid)["priority"] == 7.5
    assert tq.jattr(f"jid={jid}", key="comment", value="hi") is None and site.jobrow(jid)["comment"] == "hi"
    assert tq.delay(f"jid={jid}", aftertime="2030-01-02 03:04:05") is None
    assert site.jobrow(jid)["aftertime"].astimezone().replace(tzinfo=None) == dt.datetime(2030, 1, 2, 3, 4, 5)
    assert tq.undelay(f"jid={jid}") is None and site.jobrow(jid)["aftertime"] is None
    assert tq.chkeys({"jid": jid, "cid": 1}, keystr="linux") is None
    assert site.one("SELECT service FROM commands WHERE jid = %s AND cid = 1", jid)["service"] == "linux"
    assert tq.cattr({"jid": jid, "cid": 2}, key="argv", value=["echo", "two"]) is None
    dump = tq.jobdump(f"jid={jid}")
    assert list(dump) == [jid] and dump[jid].startswith("Job -title {ops}")
    with pytest.raises(tq.MissingParameter):
        tq.chpri(f"jid={jid}")
    with pytest.raises(tq.MissingTargetKey):
        tq.retry({"jid": jid})
    # another user's job: refused, nothing changes
    tq.setEngineClientParam(user="bob")
    with pytest.raises(tq.TractorQueryError, match="not job owner"):
        tq.pause(f"jid={jid}")
    assert site.jobrow(jid)["pausetime"] is None
    tq.setEngineClientParam(user="ann")
    assert tq.delete(tq.jobs(f"jid={jid}")) is None and site.jobrow(jid)["deletetime"] is not None
    assert tq.jobs(f"jid={jid}") == [] and len(tq.jobs(f"jid={jid}", archive=True)) == 1
    assert tq.undelete(f"jid={jid}") is None and site.jobrow(jid)["deletetime"] is None


def test_a_submitter_runs_as_its_own_process_with_tractors_engine_address(site, tmp_path):
    submitter = tmp_path / "submit.py"
    submitter.write_text(
        "import tractor.api.author as author\n"
        "job = author.Job(title='proc', priority=10.0)\n"
        "job.newTask(title='one', argv='echo one')\n"
        "print('Submitted job %d.' % job.spool(owner='dana'))\n")
    env = dict(clean_env(), TRACTOR_CONFIGDIR=str(site.cfg), TRACTOR_ENGINE="tractor-engine:80")
    r = subprocess.run([sys.executable, str(submitter)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    jid = int(r.stdout.split()[-1].rstrip("."))
    assert site.jobrow(jid)["owner"] == "dana"
