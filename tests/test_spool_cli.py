"""tractor-spool end to end: the installed program spooling into a real job database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tractorcli.db.connection import connect
from tractorcli.errors import ExitStatus

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "alf"
HTOT = CORPUS / "valentinfx__HTOT__htot_testScene_mantra1_1-24.alf"


def spool_path() -> str:
    exe = Path(sys.executable).parent / "tractor-spool"
    return str(exe) if exe.is_file() else shutil.which("tractor-spool")


def spool(cfg, *args, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TRACTOR_CONFIGDIR", "TRACTOR_ENGINE")}
    return subprocess.run([spool_path(), "--configdir", str(cfg), *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd, stdin=subprocess.DEVNULL)


def jid_of(proc) -> int:
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("OK job script accepted, jid: "), proc.stdout
    return int(line.rsplit(" ", 1)[1])


def row(settings, sql, *params):
    with connect(settings, autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()


def write(tmp_path, name, text) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


SIMPLE = """##AlfredToDo 3.0
Job -title {simple} -subtasks {
  Task {a} -cmds { RemoteCmd {echo a} }
  Task {b} -subtasks { Instance {a} } -cmds { RemoteCmd {echo b} }
}
"""


def test_spool_a_job_script(shared_site, tmp_path):
    cfg, s = shared_site
    path = write(tmp_path, "simple.alf", SIMPLE)
    jid = jid_of(spool(cfg, "--user", "alice", "--hname", "ws42", path, cwd=tmp_path))
    job = row(s, "SELECT * FROM jobs WHERE jid = %s", jid)
    assert (job["title"], job["owner"], job["spoolhost"], job["numtasks"]) == ("simple", "alice", "ws42", 2)
    assert job["spoolfile"] == path and job["spoolcwd"] == str(tmp_path) and job["scriptformat"] == "alfred"
    assert job["script"] == SIMPLE
    assert (job["numready"], job["numblocked"]) == (1, 1)
    states = row(s, "SELECT array_agg(state ORDER BY tid) AS s FROM tasks WHERE jid = %s", jid)["s"]
    assert states == ["ready", "blocked"]


def test_command_jobs_with_ranges(shared_site):
    cfg, s = shared_site
    jid = jid_of(spool(cfg, "--title", "frames", "--range", "1-3", "-c", "render", "-f", "RANGE", "-x"))
    job = row(s, "SELECT title, numtasks, numready, scriptformat FROM jobs WHERE jid = %s", jid)
    assert (job["title"], job["numtasks"], job["numready"], job["scriptformat"]) == ("frames", 3, 3, "generated")
    argvs = row(s, "SELECT array_agg(array_to_string(argv, ' ') ORDER BY cid) AS a FROM commands WHERE jid = %s", jid)["a"]
    assert argvs == ["render -f 1 -x", "render -f 2 -x", "render -f 3 -x"]


def test_overrides_land_in_the_job(shared_site, tmp_path):
    cfg, s = shared_site
    path = write(tmp_path, "o.alf", SIMPLE)
    jid = jid_of(spool(cfg, "--paused", "--priority", "250", "--tier", "rush", "--projects", "film fx",
                       "--maxactive", "3", "--afterjid", "1,2", "--aftertime", "2031-01-02 03:04", path))
    job = row(s, "SELECT * FROM jobs WHERE jid = %s", jid)
    assert job["pausetime"] is not None and job["priority"] == 250 and job["tier"] == "rush"
    assert job["projects"] == ["film", "fx"] and job["maxactive"] == 3 and job["afterjids"] == [1, 2]
    assert (job["aftertime"].year, job["aftertime"].month, job["aftertime"].minute) == (2031, 1, 4)


def test_options_after_the_files_count_as_options(shared_site, tmp_path):
    """`tractor-spool job.alf --paused` spools job.alf paused (before: unpaused, and then "--paused"
    was a missing file); -c after a file is refused before anything is spooled."""
    cfg, s = shared_site
    path = write(tmp_path, "late.alf", SIMPLE.replace("simple", "late options"))
    jid = jid_of(spool(cfg, path, "--paused", "--priority", "42"))
    job = row(s, "SELECT * FROM jobs WHERE jid = %s", jid)
    assert job["pausetime"] is not None and job["priority"] == 42
    refused = spool(cfg, write(tmp_path, "late2.alf", SIMPLE.replace("simple", "never spooled")), "-c", "echo")
    assert refused.returncode == ExitStatus.USAGE and "-c and -C come before" in refused.stderr
    assert row(s, "SELECT count(*) AS n FROM jobs WHERE title = 'never spooled'")["n"] == 0


def test_status_json_and_errors(shared_site, tmp_path):
    cfg, s = shared_site
    ok = spool(cfg, "--status-json", write(tmp_path, "j.alf", SIMPLE))
    reply = json.loads(ok.stdout)
    assert reply["rc"] == 0 and reply["msg"] == f"job script accepted, jid: {reply['jid']}"
    missing = spool(cfg, "--status-json", str(tmp_path / "absent.alf"))
    assert missing.returncode == ExitStatus.NOT_FOUND
    assert json.loads(missing.stdout) == {"rc": 7, "msg": f"tractor-spool - no access to file: {tmp_path / 'absent.alf'}"}
    bad = spool(cfg, write(tmp_path, "bad.alf", "Job -title {x} -subtasks {\n  Task {a} -cmds { RemoteCmd {ls} -when done }\n}\n"))
    assert bad.returncode == ExitStatus.BAD_INPUT
    lines = bad.stderr.strip().splitlines()
    assert lines == [f"tractor-spool: {tmp_path / 'bad.alf'}:2:20: -when belongs only to Job -postscript commands"]


def test_several_files_stop_at_the_first_failure(shared_site, tmp_path):
    cfg, s = shared_site
    first = write(tmp_path, "1.alf", SIMPLE.replace("simple", "first of three"))
    broken = write(tmp_path, "2.alf", "Job -title {broken} -subtasks { Task {a} ")
    third = write(tmp_path, "3.alf", SIMPLE.replace("simple", "third of three"))
    proc = spool(cfg, first, broken, third)
    assert proc.returncode == ExitStatus.BAD_INPUT
    assert proc.stdout.count("OK job script accepted") == 1 and "missing close-brace" in proc.stderr
    assert row(s, "SELECT count(*) AS n FROM jobs WHERE title = 'third of three'")["n"] == 0
    assert row(s, "SELECT count(*) AS n FROM jobs WHERE title = 'broken'")["n"] == 0


def test_parse_debug_spools_nothing(shared_site, tmp_path):
    cfg, s = shared_site
    before = row(s, "SELECT count(*) AS n FROM jobs")["n"]
    proc = spool(cfg, "--parse-debug", write(tmp_path, "p.alf", SIMPLE))
    assert proc.returncode == 0 and "parsed: 2 tasks, 2 commands, 0 warnings" in proc.stderr
    assert row(s, "SELECT count(*) AS n FROM jobs")["n"] == before


def test_warnings_and_strict(shared_site, tmp_path):
    cfg, s = shared_site
    path = write(tmp_path, "w.alf", "Job -title {w} -memory 4G -subtasks { Task {a} -cmds { RemoteCmd {ls} } }\n")
    proc = spool(cfg, path)
    assert proc.returncode == 0 and f"tractor-spool: warning: {path}:1:16: Job: unknown option -memory (ignored)" in proc.stderr
    strict = spool(cfg, "--strict", path)
    assert strict.returncode == ExitStatus.BAD_INPUT and "refused by --strict" in strict.stderr


def test_jdelete(shared_site, tmp_path):
    cfg, s = shared_site
    jid = jid_of(spool(cfg, "--user", "bob", write(tmp_path, "d.alf", SIMPLE)))
    wrong = spool(cfg, "--user", "carol", "--jdelete", str(jid))
    assert wrong.returncode == ExitStatus.PERMISSION and "belongs to bob: not job owner" in wrong.stderr
    done = spool(cfg, "--user", "bob", "--jdelete", str(jid))
    assert done.returncode == 0 and done.stdout.strip() == f"OK J{jid} delete OK"
    assert row(s, "SELECT deletetime FROM jobs WHERE jid = %s", jid)["deletetime"] is not None
    assert spool(cfg, "--jdelete", "99999999").returncode == ExitStatus.NOT_FOUND


def test_engine_option_reaches_the_server_over_tcp(shared_site, tmp_path):
    cfg, s = shared_site
    jid = jid_of(spool(cfg, "--engine", f"127.0.0.1:{s.db.port}", write(tmp_path, "e.alf", SIMPLE)))
    assert row(s, "SELECT title FROM jobs WHERE jid = %s", jid)["title"] == "simple"


def test_usage_errors(shared_site):
    cfg, _ = shared_site
    for args, text in ((["-c"], "no command given after -c"), ([], "no job script file(s) specified"),
                       (["--range", "1-2", "x.alf"], "--range goes with -c or -C"),
                       (["--range", "1-2", "--itervalues", "a", "-c", "x"], "only one of --range")):
        proc = spool(cfg, *args)
        assert proc.returncode in (ExitStatus.USAGE, ExitStatus.BAD_INPUT), (args, proc.stderr)
        assert text in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not HTOT.is_file(), reason="the corpus folder is not present")
def test_spool_a_corpus_file(shared_site):
    cfg, s = shared_site
    jid = jid_of(spool(cfg, str(HTOT)))
    assert row(s, "SELECT numtasks FROM jobs WHERE jid = %s", jid)["numtasks"] == 28


def test_concurrent_spools_get_distinct_increasing_jids(shared_site, tmp_path):
    cfg, s = shared_site
    path = write(tmp_path, "c.alf", SIMPLE)
    procs = [subprocess.Popen([spool_path(), "--configdir", str(cfg), path], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    jids = [jid_of(subprocess.CompletedProcess(p.args, p.wait(), *p.communicate())) for p in procs]
    assert len(set(jids)) == 6
    with connect(s, autocommit=True) as conn:
        counts = conn.execute("SELECT jid, count(*) AS n FROM tasks WHERE jid = ANY(%s) GROUP BY jid", (jids,)).fetchall()
    assert sorted(r["n"] for r in counts) == [2] * 6
