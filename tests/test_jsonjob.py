"""Tractor JSON jobs: lossless round trips, Tractor's own form, errors with places, no bare exceptions."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from strategies import commands, jobs
from tractorcli.jobs import jsonjob
from tractorcli.jobs.jsonjob import dumps, from_json, to_json
from tractorcli.jobs.model import Command, DirMap, Instance, Job, JobError, Location, Task, iter_tasks

SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- lossless ------------------------------------------------------------------------------


@given(jobs())
@SLOW
def test_round_trip_dict_text_and_bytes(job):
    assert from_json(to_json(job)) == job
    text = dumps(job)
    assert from_json(text) == job
    assert from_json(text.encode("utf-8")) == job
    assert from_json(dumps(job, indent=2), "pretty.json") == job
    json.loads(text)  # strict JSON: the standard library reads it back


@given(jobs())
@settings(SLOW, max_examples=30)
def test_emitted_json_is_tractor_shaped(job):
    doc = json.loads(dumps(job))
    assert doc["TractorJob"] == "2.0"
    assert doc["data"]["title"] == job.title
    codes = [c["type"] for c in doc["data"].get("commands", [])]
    assert all(c[0] in "RL" and c[1] in "DP" for c in codes)


@given(st.lists(commands(), min_size=1, max_size=4), st.lists(commands(), max_size=3),
       st.lists(commands("post"), max_size=3), st.lists(commands("cleanup"), max_size=3))
def test_commands_keep_runtype_even_out_of_place(cmds, more, post, cleanup):
    for c in cmds:
        c.runtype = "post_error"  # nonsense in a task, but a model value all the same
    job = Job(subtasks=(Task("t", cmds=tuple(cmds + more), cleanup=tuple(post)),), cleanup=tuple(cmds),
              postscript=tuple(cleanup))
    assert from_json(dumps(job)) == job


def test_every_model_field_has_a_key():
    for cls, table in ((Job, jsonjob.JOB_KEYS), (Task, jsonjob.TASK_KEYS), (Command, jsonjob.COMMAND_KEYS)):
        fields = {f.name for f in dataclasses.fields(cls) if f.compare}
        assert fields == set(table), cls.__name__


def test_unresolvable_models_survive_without_check():
    job = Job(subtasks=(Task("a", subtasks=(Instance("nowhere"),)), Instance("a")),
              cleanup=(Command((), refersto="x"),))
    assert from_json(dumps(job), check=False) == job
    with pytest.raises(JobError, match="nowhere"):
        from_json(dumps(job))


def test_instances_keep_their_place_and_are_listed_as_ants():
    job = Job(subtasks=(Task("x"), Task("a", subtasks=(Instance("x"), Task("b"), Instance("y"))), Task("y"),
                        Instance("x")))
    doc = to_json(job)
    a = doc["children"][1]
    assert a["data"]["ants"] == ["x", "y"]
    assert [c.get("instance") for c in a["children"]] == ["x", None, "y"]
    assert doc["children"][3] == {"instance": "x"}
    assert from_json(doc) == job


def test_negative_priority_is_kept_when_paused_is_written():
    job = Job(title="j", priority=-5.0)
    assert to_json(job)["data"]["paused"] is False
    assert from_json(dumps(job)) == job


def test_after_times():
    naive = dt.datetime(2031, 5, 6, 7, 8, 9, 123456)
    aware = dt.datetime(2031, 5, 6, 7, 8, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    for t in (naive, aware):
        data = to_json(Job(after=t))["data"]
        assert data["aftertime"] == t.timestamp()
        assert dt.datetime.fromisoformat(data["after"]) == t
        assert from_json(to_json(Job(after=t))).after == t
    # Tractor writes epoch seconds only: an aware local time
    job = from_json({"TractorJob": "2.0", "data": {"aftertime": 1900000000}})
    assert job.after == dt.datetime.fromtimestamp(1900000000, dt.timezone.utc)
    assert job.after.tzinfo is not None
    assert from_json({"TractorJob": "2.0", "data": {"aftertime": 0}}).after is None


def test_big_jobs_and_deep_trees():
    wide = Job(title="wide", subtasks=tuple(
        Task(f"t{i}", cmds=(Command(("render", f"{i}.rib"), service="pixar", tags=("prman",)),))
        for i in range(20000)))
    assert from_json(dumps(wide)) == wide
    node = Task("leaf")
    for i in range(3000):
        node = Task(f"level {i}", subtasks=(node,))
    deep = Job(subtasks=(node,))
    doc = to_json(deep)  # no recursion on the way out...
    back = from_json(doc, check=False)  # ...nor on the way in
    # (dataclass equality itself recurses, so compare the tasks one by one)
    assert [t.title for t in iter_tasks(back.subtasks)] == [t.title for t in iter_tasks(deep.subtasks)]
    with pytest.raises(JobError, match="too deeply"):
        dumps(deep)  # the json module itself recurses


# --- Tractor's form ------------------------------------------------------------------------------

TRACTOR = """#!/usr/bin/env tractor-spool -J
{
  "TractorJob": "1.0",
  "data": {
    "title": "Tractor wrote me", "owner": "ann", "spoolhost": "ws1", "spoolfile": "/s/j.json",
    "spooldate": "2020-01-01", "spooltime": 1577836800, "priority": -101,
    "tags": "prman  batch", "crews": ["lighting"], "envkey": ["rman-22"], "serialsubtasks": 1,
    "minslots": 1, "maxslots": 4, "dirmaps": [["/mnt", "Z:\\\\", "UNC"]], "afterjids": [3, 4],
    "commands": [
      {"type": "LD", "argv": ["/bin/rm", "-rf", "/tmp/x"]},
      {"type": "RPD", "argv": ["mail", "done"], "service": "mailer"},
      {"type": "LPE", "argv": ["mail", "error"]},
      {"type": "RP", "argv": ["log"]}
    ]
  },
  "children": [
    {"data": {"title": "Shared"}},
    {"data": {"title": "Frame 1", "id": "f1", "resumeblock": 1,
              "commands": [
                {"type": "RC", "argv": ["prman", "1.rib"], "tags": "prman", "retryrc": [1, 2],
                 "resumewhile": ["exitcode", "5"], "resumepin": 1, "minslots": 2},
                {"type": "RCX", "argv": ["gen"], "expandfile": "more.alf"},
                {"argv": ["plain"]},
                {"type": "LD", "argv": ["cleanup"]}
              ],
              "ants": ["Shared", 1]},
     "children": [{"data": {"title": "Pre", "serialsubtasks": true}}]}
  ]
}
"""


def test_tractor_written_job():
    job = from_json(TRACTOR, "tractor.json")
    assert job.title == "Tractor wrote me"
    assert job.paused is True and job.priority == 100.0
    assert job.tags == ("prman", "batch")
    assert job.serialsubtasks is True and job.atleast == 1 and job.atmost == 4
    assert job.dirmaps == (DirMap("/mnt", "Z:\\", "UNC"),)
    assert job.afterjids == (3, 4)
    assert job.warnings == []  # Tractor's spool bookkeeping is known, not "unknown"
    assert [c.argv[0] for c in job.cleanup] == ["/bin/rm"]
    assert job.cleanup[0].local and job.cleanup[0].runtype == "cleanup"
    assert [(c.argv[1:], c.local, c.runtype) for c in job.postscript[:2]] == [
        (("done",), False, "post_done"), (("error",), True, "post_error")]
    assert job.postscript[2].runtype == "post_always"
    f1 = job.subtasks[1]  # after "Shared": the job is serial, so Frame 1 may wait on it
    assert f1.id == "f1" and f1.resumeblock
    assert [c.argv[0] for c in f1.cmds] == ["prman", "gen", "plain"]
    prman, gen, plain = f1.cmds
    assert prman.tags == ("prman",) and prman.retryrc == (1, 2) and prman.atleast == 2 and prman.resumepin
    assert prman.expand is None and gen.expand == "more.alf" and plain.runtype == "regular"
    assert f1.cleanup == (Command(("cleanup",), local=True, runtype="cleanup"),)
    # ants become Instances after the task's own subtasks; a number is a tid (1 = "Shared")
    assert f1.subtasks == (Task("Pre", serialsubtasks=True), Instance("Shared"), Instance("Shared"))


@pytest.mark.parametrize("code, local, runtype, expand", [
    ("RC", False, "regular", None), ("LC", True, "regular", None), ("RCX", False, "regular", ""),
    ("RD", False, "cleanup", None), ("LDX", True, "cleanup", ""),
])
def test_task_command_type_codes(code, local, runtype, expand):
    job = from_json({"TractorJob": "2.0", "children": [{"data": {"commands": [{"type": code, "argv": ["a"]}]}}]})
    t = job.subtasks[0]
    (c,) = t.cmds + t.cleanup
    assert (c.local, c.runtype, c.expand) == (local, runtype, expand)
    assert (c in t.cleanup) == (runtype == "cleanup")


@pytest.mark.parametrize("code, runtype", [("RP", "post_always"), ("RPD", "post_done"), ("LPE", "post_error"),
                                           ("RPDX", "post_done"), ("LD", "cleanup")])
def test_job_command_type_codes(code, runtype):
    job = from_json({"TractorJob": "2.0", "data": {"commands": [{"type": code, "argv": ["a"]}]}})
    (c,) = job.cleanup + job.postscript
    assert c.runtype == runtype and c.local == (code[0] == "L") and (c.expand == "") == code.endswith("X")


@pytest.mark.parametrize("where, code, message", [
    ("task", "RP", "belong to the job"), ("job", "RC", "cleanup .* or postscript"),
    ("task", "XC", "unrecognized command type"), ("task", "RCD", "unrecognized command type"),
    ("task", 5, "unrecognized command type"),
])
def test_misplaced_and_bad_type_codes(where, code, message):
    cmd = {"type": code, "argv": ["a"]}
    doc = ({"TractorJob": "2.0", "children": [{"data": {"commands": [cmd]}}]} if where == "task"
           else {"TractorJob": "2.0", "data": {"commands": [cmd]}})
    with pytest.raises(JobError, match=message):
        from_json(doc)


def test_children_instances_win_over_ants():
    doc = {"TractorJob": "2.0", "children": [
        {"data": {"title": "a", "ants": ["b", "b"]}, "children": [{"instance": "b"}]}, {"data": {"title": "b"}}]}
    assert from_json(doc).subtasks[0].subtasks == (Instance("b"),)


@pytest.mark.parametrize("version", ["2.0", "1.0", "2", "1.9.9", 2, 2.0, 1, "2.0.0", " 2.0 "])
def test_versions_read(version):
    assert from_json({"TractorJob": version, "data": {"title": "x"}}).title == "x"


@pytest.mark.parametrize("version", ["2.1", "3.0", 2.5, 3, "2.0.1", "abc", "", None, True, [2]])
def test_versions_refused(version):
    with pytest.raises(JobError, match="unrecognized JSON job format"):
        from_json({"TractorJob": version})


def test_version_key_is_required():
    with pytest.raises(JobError, match="no \"TractorJob\""):
        from_json('{"data": {}}')


def test_paused_key_overrides_the_negative_priority_convention():
    assert from_json({"TractorJob": "2.0", "data": {"priority": -1}}).paused is True
    assert from_json({"TractorJob": "2.0", "data": {"priority": -1}}).priority == 0.0
    j = from_json({"TractorJob": "2.0", "data": {"priority": -1, "paused": False}})
    assert (j.paused, j.priority) == (False, -1.0)


def test_tags_forms():
    assert to_json(Job(tags=("a", "b")))["data"]["tags"] == "a b"
    assert to_json(Job(tags=("a b", "c")))["data"]["tags"] == ["a b", "c"]
    assert to_json(Job(tags=("",)))["data"]["tags"] == [""]
    for form in ("a b", ["a", "b"], " a\tb "):
        assert from_json({"TractorJob": "2.0", "data": {"tags": form}}).tags == ("a", "b")


def test_lenient_forms():
    doc = {"TractorJob": "2.0", "data": {"crews": "a b", "envkey": "setenv A=1 B=2", "serialsubtasks": 0,
                                         "assignments": {"x": "1", "y": "2"}, "afterjids": "4 5",
                                         "dirmaps": [{"src": "/a", "dst": "/b", "zone": "NFS"}],
                                         "atleast": 2, "title": None},
           "children": [{"data": {"commands": [{"argv": "prman -p f.rib", "retryrc": "1 2",
                                                "maxslots": 3.0}]}}]}
    job = from_json(doc)
    assert job.crews == ("a", "b") and job.envkey == ("setenv A=1 B=2",) and not job.serialsubtasks
    assert job.assignments == (("x", "1"), ("y", "2")) and job.afterjids == (4, 5)
    assert job.dirmaps == (DirMap("/a", "/b", "NFS"),) and job.atleast == 2 and job.title == ""
    c = job.subtasks[0].cmds[0]
    assert c.argv == ("prman", "-p", "f.rib") and c.retryrc == (1, 2) and c.atmost == 3


def test_unknown_keys_warn_once_per_key():
    doc = {"TractorJob": "2.0", "extra": 1, "data": {"colour": "red"},
           "children": [{"data": {"title": str(i), "tid": i}} for i in range(5)]}
    job = from_json(json.dumps(doc), "j.json")
    assert job.warnings == [
        "j.json: extra: unknown top level key 'extra' ignored",
        "j.json: data.colour: unknown job data key 'colour' ignored",
        "j.json: children[0].data.tid: unknown task data key 'tid' ignored (and 4 more task data objects)",
    ]


def test_checkpoint_header_is_skipped_and_lines_still_count():
    text = "#!tractor checkpoint\n{\"TractorJob\": \"2.0\",\n \"data\": {\"title\": 5}}\n"
    with pytest.raises(JobError) as e:
        from_json(text, "c.json")
    assert e.value.where == Location("c.json", 3, 20)
    assert "data.title: expected a string" in str(e.value)


# --- errors and their places ----------------------------------------------------------------------


def _error(data, filename="j.json", **kw) -> JobError:
    with pytest.raises(JobError) as e:
        from_json(data, filename, **kw)
    return e.value


def test_syntax_error_place():
    e = _error('{\n  "TractorJob": "2.0",\n  "data": {"title": "x",}\n}')
    assert e.where == Location("j.json", 3, 25)
    assert str(e).startswith("j.json:3:25: invalid JSON")


def test_value_error_place_and_path():
    text = json.dumps(to_json(Job(subtasks=(Task("a"), Task("b", cmds=(Command(("x",)),))))), indent=2)
    doc = json.loads(text)
    doc["children"][1]["data"]["commands"][0]["argv"] = ["ok", 7]
    text = json.dumps(doc, indent=2)
    e = _error(text)
    assert e.bare == "children[1].data.commands[0].argv[1]: expected a string"
    line = text.splitlines()[e.where.line - 1]
    assert line[e.where.col - 1:].startswith("7")
    # the same document as a dict: no text to point into
    e = _error(doc)
    assert e.where == Location("j.json", 1, 1) and "children[1].data.commands[0].argv[1]" in str(e)


def test_missing_and_wrong_shapes():
    assert "expected a JSON object" in str(_error("[]"))
    assert "children: expected a list" in str(_error('{"TractorJob": "2.0", "children": {}}'))
    assert "needs an argv" in str(_error({"TractorJob": "2.0", "data": {"commands": [{"type": "RD"}]}}))
    e = _error('{"TractorJob": "2.0", "children": [{"data": {"title": "a", "minslots": "2"}}]}')
    assert e.bare == "children[0].data.minslots: expected an integer" and e.where.col == 72
    assert "expected true or false" in str(_error({"TractorJob": "2.0", "data": {"paused": "yes"}}))
    assert "expected [src, dst, zone]" in str(_error({"TractorJob": "2.0", "data": {"dirmaps": [["a"]]}}))
    assert "no task has tid 9" in str(_error({"TractorJob": "2.0", "children": [{"data": {"ants": [9]}}]}))
    with pytest.raises(TypeError):
        from_json(42)


def test_encoding_errors_have_places():
    e = _error(b'{"TractorJob": "2.0",\n "data": {"title": "caf\xe9"}}')
    assert e.where == Location("j.json", 2, 24) and "UTF-8" in str(e)
    assert from_json(b'\xef\xbb\xbf{"TractorJob": "2.0"}').title == ""  # a byte-order mark is fine


def test_too_deep_and_too_big():
    assert "nested too deeply" in str(_error("[" * 100000 + "]" * 100000))
    assert "invalid JSON" in str(_error('{"TractorJob": ' + "9" * 5000 + "}"))


def test_resolve_errors_point_at_the_object():
    text = ('{"TractorJob": "2.0", "children": [\n'
            '  {"data": {"title": "a"}},\n'
            '  {"data": {"title": "b"}, "children": [\n'
            '    {"instance": "nowhere"}]}]}\n')
    e = _error(text)
    assert e.where == Location("j.json", 4, 5) and "'nowhere'" in str(e)
    text = ('{"TractorJob": "2.0", "children": [\n'
            '  {"data": {"title": "a", "id": "x"}},\n'
            '  {"data": {"title": "b", "id": "x"}}]}\n')
    e = _error(text)
    assert e.where == Location("j.json", 3, 3) and e.also == Location("j.json", 2, 3)
    # ants point at the task that lists them
    e = _error('{"TractorJob": "2.0", "children": [\n {"data": {"ants": ["gone"]}}]}')
    assert e.where == Location("j.json", 2, 2)
    # strings holding braces do not confuse the count of objects
    e = _error('{"TractorJob": "2.0", "data": {"title": "{{\\"{"}, "children": [\n'
               ' {"data": {"title": "}"}}, {"instance": "gone"}]}')
    assert e.where == Location("j.json", 2, 28)


# --- never a bare exception ------------------------------------------------------------------------

_KEYS = sorted(set(jsonjob.JOB_KEYS.values()) | set(jsonjob.COMMAND_KEYS.values()) |
               {"data", "children", "instance", "ants", "TractorJob", "aftertime", "runtype"})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["RC", "LPDX", "2.0", "a b", "", "1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4),
                                                                inner, max_size=5),
    max_leaves=25)


def _loads_or_job_error(data, expect_place: bool = True) -> None:
    try:
        job = from_json(data, "f.json")
    except JobError as exc:
        assert "\n" not in exc.bare or "invalid JSON" in exc.bare
        if expect_place:
            assert exc.where is not None, exc
    else:
        assert isinstance(job, Job)


@given(json_values)
@settings(max_examples=500)
def test_random_json_documents(doc):
    _loads_or_job_error(json.dumps(doc))
    if isinstance(doc, dict):
        _loads_or_job_error(dict(doc, TractorJob="2.0"), expect_place=False)


@given(st.dictionaries(st.sampled_from(["data", "children", "extra"]), json_values, max_size=3))
@settings(max_examples=500)
def test_random_tractor_shaped_documents(doc):
    doc["TractorJob"] = "2.0"
    _loads_or_job_error(json.dumps(doc))


@given(st.binary(max_size=200) | st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")))
@settings(max_examples=500)
def test_random_bytes(data):
    _loads_or_job_error(data)
    _loads_or_job_error(b'{"TractorJob": "2.0", "data": ' + data + b"}")


@st.composite
def mutated_documents(draw):
    doc = copy.deepcopy(to_json(draw(jobs())))
    slots = []  # (container, key) for every value in the document
    stack = [doc]
    while stack:
        v = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, x in items:
            slots.append((v, k))
            stack.append(x)
    for _ in range(draw(st.integers(1, 3))):
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        container[key] = draw(json_values)
    return doc


@given(mutated_documents())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.data_too_large])
def test_mutated_jobs(doc):
    _loads_or_job_error(json.dumps(doc))
    _loads_or_job_error(json.dumps(doc, indent=1))
