"""crews.toml: who may use `tq --force` on whose jobs.

Loading (nested crews, cycles, errors) needs no database; the rules are the
database's (tractor_may_force, functions/permissions.sql), tested on crews
stored there; the CLI tests run the installed `tq` against a real job
database (test_tq's TqSite), and one test the Python API.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_tq import TqSite, fail_one

from tractorcli.crews import CREWS_FILE, Crews, load_crews
from tractorcli.errors import ConfigError, ExitStatus

ROOT = Path(__file__).resolve().parents[1]

SITE = """\
[crews]
Administrators = ["root"]
Wranglers = ["wendy"]
Lighting = ["carol", "dave"]
Lookdev = ["erin", "Lighting"]     # a crew may include other crews

[force]
Lighting = ["Lighting"]
dave = ["erin"]
"""


def crews_of(tmp_path: Path, text: str) -> Crews:
    (tmp_path / CREWS_FILE).write_text(text, encoding="utf-8")
    return load_crews(tmp_path)


@pytest.fixture
def rules(db_settings, tmp_path):
    """may(text, user, owner): whether the database lets `user` force on `owner`'s jobs with
    crews.toml `text` loaded (None: no crews.toml)."""
    from tractorcli.db import crews as crews_db
    from tractorcli.db.connection import connect

    conn = connect(db_settings, autocommit=True)
    loaded: dict = {}

    def may(text: str | None, user: str, owner: str) -> bool:
        if loaded.get("text", 0) != text:
            (tmp_path / CREWS_FILE).unlink(missing_ok=True)
            crews_db.store(conn, Crews() if text is None else crews_of(tmp_path, text))
            loaded["text"] = text
        return conn.execute("SELECT tractor_may_force(%s, %s) AS may", (user, owner)).fetchone()["may"]

    yield may
    conn.close()


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        crews_of(tmp_path, text)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path / CREWS_FILE))
    assert info.value.status == ExitStatus.CONFIG
    return msg


# --- loading and membership ---------------------------------------------------------------


def test_no_file_lets_only_the_site_role_force(tmp_path, rules):
    c = load_crews(tmp_path)
    assert not c.configured and c.path is None
    assert c.crews_of("ann") == [] and c.members("Wranglers") == frozenset()
    # the tests log in as the site's role: it may force for any user it names when there are no crews
    assert rules(None, "ann", "bob")


def test_nested_crews_are_expanded(tmp_path):
    c = crews_of(tmp_path, SITE)
    assert c.configured
    assert c.members("Lighting") == {"carol", "dave"}
    assert c.members("Lookdev") == {"erin", "carol", "dave"}
    assert c.members("Nosuch") == frozenset()
    assert c.crews_of("dave") == ["Lighting", "Lookdev"]
    assert c.crews_of("erin") == ["Lookdev"]
    assert c.is_member("carol", "Lookdev") and not c.is_member("erin", "Lighting")


def test_deep_nesting_and_shared_subcrews(tmp_path):
    c = crews_of(tmp_path, '[crews]\nA = ["a", "B", "C"]\nB = ["b", "C"]\nC = ["c"]\nD = "d1, d2"\n')
    assert c.members("A") == {"a", "b", "c"}
    assert c.members("B") == {"b", "c"}
    assert c.members("D") == {"d1", "d2"}  # a comma-separated string, as in Tractor's lists


def test_may_force(rules):
    def may(user, owner):
        return rules(SITE, user, owner)

    # administrators and wranglers: anyone's jobs
    assert may("wendy", "bob") and may("root", "carol")
    # one's own jobs never need it
    assert may("bob", "bob")
    # a crew rule: Lighting members on Lighting members' jobs
    assert may("carol", "dave") and may("dave", "carol")
    assert not may("carol", "erin")
    # a user rule: dave on erin's
    assert may("dave", "erin")
    # nobody else, on nobody else's
    assert not may("erin", "carol")
    assert not may("bob", "carol")
    assert not may("carol", "wendy")
    assert not may("dave", "bob")


def test_anyone_in_force_rules(rules):
    text = '[crews]\nLeads = ["lee"]\nJuniors = ["jo"]\n[force]\nLeads = ["*"]\n"*" = ["Juniors"]\n'
    assert rules(text, "lee", "whoever")
    assert rules(text, "anybody", "jo")  # every user on the Juniors' jobs
    assert not rules(text, "jo", "lee")


def test_empty_file_means_only_owners(tmp_path, rules):
    c = crews_of(tmp_path, "# nothing yet\n")
    assert c.configured
    assert not rules("# nothing yet\n", "ann", "bob")
    assert rules("# nothing yet\n", "ann", "ann")


def test_a_crew_hides_a_user_of_the_same_name(rules):
    text = '[crews]\nfx = ["fred"]\n[force]\nann = ["fx"]\n'
    assert rules(text, "ann", "fred")
    assert not rules(text, "ann", "fx")  # "fx" names the crew, not a user called fx
    text = '[crews]\nfx = []\n[force]\nann = ["fx"]\n'
    assert not rules(text, "ann", "fx")  # an empty crew still hides the user


# --- errors --------------------------------------------------------------------------------


def test_cycles_are_errors(tmp_path):
    msg = config_error(tmp_path, '[crews]\nA = ["a", "B"]\nB = ["C"]\nC = ["A"]\n')
    assert ":2: crew cycle: A -> B -> C -> A" in msg
    msg = config_error(tmp_path, '[crews]\nok = ["x"]\nSelf = ["Self"]\n')
    assert ":3: crew cycle: Self -> Self" in msg


def test_syntax_errors_name_file_and_line(tmp_path):
    msg = config_error(tmp_path, '[crews]\nA = ["a"\nB = 1\n')
    assert "malformed TOML" in msg and f"{CREWS_FILE}:3" in msg


@pytest.mark.parametrize("text, line, words", [
    ('[crews]\nA = ["a"]\n[limits]\nx = 1\n', 3, "unknown section or key 'limits'"),
    ('Lighting = ["carol"]\n', 1, "unknown section or key 'Lighting'"),
    ('crews = ["a"]\n', 1, "crews: expected a table"),
    ('[crews]\nA = ["a"]\nB = 3\n', 3, "crews.B: expected a list of names"),
    ('[crews]\nA = ["a", 2]\n', 2, "crews.A: expected a list of names"),
    ('[crews]\nA = ["a", ""]\n', 2, "crews.A: expected a list of names"),
    ('[crews]\nA = ["*"]\n', 2, "only for [force]"),
    ('[crews]\nA = ["a"]\n\n[force]\nA = ["A"]\nB = {x = 1}\n', 6, "force.B: expected a list of names"),
    ('[crews.Lighting]\nx = 1\n', 1, "crews.Lighting: expected a list of names"),
])
def test_bad_values_name_file_and_line(tmp_path, text, line, words):
    msg = config_error(tmp_path, text)
    assert f"{CREWS_FILE}:{line}: " in msg and words in msg


def test_same_key_in_both_sections_finds_the_right_line(tmp_path):
    msg = config_error(tmp_path, '[crews]\nLighting = ["carol"]\n[force]\nLighting = "ok"\nfoo = 7\n')
    assert f"{CREWS_FILE}:5: force.foo" in msg


# --- tq against a real database ----------------------------------------------------------


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def write_crews(site, text: str = SITE, status: int = 0):
    """The site owner writes crews.toml and loads it into the job database (tq reloadconfig --crews)."""
    (site.cfg / CREWS_FILE).write_text(text, encoding="utf-8")
    return site.tq("reloadconfig", "--crews", user="root", status=status)


def error_job(site, owner: str) -> int:
    jid = site.job(1, owner=owner)
    fail_one(site, jid)
    assert site.states(jid) == ["error"]
    return jid


def test_a_wrangler_forces_a_retry_on_anothers_job(site):
    write_crews(site)
    jid = error_job(site, "bob")
    r = site.tq("--force", "--yes", "retry", str(jid), "1", user="wendy")
    assert r.stdout.strip().endswith("retried") and r.stderr == ""
    assert site.states(jid) == ["ready"]


def test_an_ordinary_user_with_force_is_refused(site):
    write_crews(site)
    jid = error_job(site, "bob")
    mine = error_job(site, "erin")
    jid2 = error_job(site, "bob")
    r = site.tq("--force", "--yes", "retry", f"jid in [{jid} {mine}] and error", user="erin",
                status=int(ExitStatus.PERMISSION))
    assert r.stderr.strip() == "tq: not job owner; tq --force is not allowed for erin on bob's jobs (crews.toml)"
    assert site.states(jid) == ["error"]  # unchanged
    assert site.states(mine) == ["ready"]  # the other rows still proceed
    # without --force: the usual refusal, crews.toml is not consulted
    r = site.tq("--yes", "retry", str(jid2), "1", user="erin", status=8)
    assert "not job owner; use tq --force" in r.stderr
    assert site.states(jid2) == ["error"]


def test_force_rules_of_crews_and_users_allow_it(site):
    write_crews(site)
    dave_job = error_job(site, "dave")
    erin_job = error_job(site, "erin")
    site.tq("--force", "--yes", "retry", str(dave_job), "1", user="carol")  # Lighting on Lighting
    assert site.states(dave_job) == ["ready"]
    site.tq("--force", "--yes", "retry", str(erin_job), "1", user="carol", status=8)  # not for carol
    assert site.states(erin_job) == ["error"]
    site.tq("--force", "--yes", "retry", str(erin_job), "1", user="dave")  # dave = ["erin"]
    assert site.states(erin_job) == ["ready"]
    # job operations too
    site.tq("--force", "--yes", "pause", str(erin_job), user="carol", status=8)
    assert site.jobrow(erin_job)["pausetime"] is None
    site.tq("--force", "--yes", "pause", str(erin_job), user="dave")
    assert site.jobrow(erin_job)["pausetime"] is not None


def test_no_crews_file_lets_only_the_site_owner_force(site):
    """Without crews.toml the site's own role may force (tq run by the site owner's accounts, for any
    user it names); people logging in as themselves may not (tests/test_identities.py)."""
    assert not (site.cfg / CREWS_FILE).exists()
    jid = error_job(site, "bob")
    site.tq("--force", "--yes", "retry", str(jid), "1", user="erin")
    assert site.states(jid) == ["ready"]
    assert site.conn.execute("SELECT count(*) AS n FROM crews_file").fetchone()["n"] == 0


def test_crews_live_in_the_database_until_reloaded(site):
    write_crews(site)
    rows = {r["crew"]: r["members"] for r in site.conn.execute("SELECT crew, members FROM crews")}
    assert rows["Lighting"] == ["carol", "dave"] and "carol" in rows["Lookdev"]
    jid = error_job(site, "bob")
    # the file changes, the database does not until it is reloaded
    (site.cfg / CREWS_FILE).write_text('[crews]\nWranglers = ["erin"]\n', encoding="utf-8")
    site.tq("--force", "--yes", "retry", str(jid), "1", user="erin", status=8)
    assert site.states(jid) == ["error"]
    out = site.tq("reloadconfig", "--crews", user="root").stdout
    assert f"crews: loaded: {site.cfg / CREWS_FILE}: 1 crew(s), 0 [force] rule(s)" in out
    site.tq("--force", "--yes", "retry", str(jid), "1", user="erin")
    assert site.states(jid) == ["ready"]


def test_reading_logs_and_scripts_needs_no_crews_rule(site):
    write_crews(site)
    jid = site.job(1, owner="bob")
    site.tq("--force", "jobdump", str(jid), user="erin")
    site.tq("log", str(jid), "1", user="erin", status=int(ExitStatus.NOT_FOUND))  # no log yet, but not refused


def test_a_bad_crews_file_is_one_line_and_the_config_status(site):
    write_crews(site)
    r = write_crews(site, '[crews]\nA = ["B"]\nB = ["A"]\n', status=int(ExitStatus.CONFIG))
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert f"{CREWS_FILE}:2: crew cycle: A -> B -> A" in r.stderr
    # the database keeps the crews it had: wendy is still a wrangler
    jid = error_job(site, "bob")
    site.tq("--force", "--yes", "retry", str(jid), "1", user="wendy")
    assert site.states(jid) == ["ready"]


# --- the Python API ------------------------------------------------------------------------


def test_api_force_follows_crews(site):
    import tractorcli.api.query as api

    write_crews(site)
    jid = error_job(site, "bob")
    api.setEngineClientParam(configdir=str(site.cfg), user="erin", force=True)
    with pytest.raises(api.TractorQueryError, match=r"not allowed for erin on bob's jobs \(crews.toml\)"):
        api.retry({"jid": jid, "tid": 1})
    assert site.states(jid) == ["error"]
    assert list(api.jobdump({"jid": jid})) == [jid]  # reading needs no rule
    api.setEngineClientParam(user="wendy")
    api.retry({"jid": jid, "tid": 1})
    assert site.states(jid) == ["ready"]


# --- the example file ------------------------------------------------------------------------


def test_the_example_file_loads(tmp_path, rules):
    text = (ROOT / "examples" / CREWS_FILE).read_text(encoding="utf-8")
    shutil.copy(ROOT / "examples" / CREWS_FILE, tmp_path / CREWS_FILE)
    c = load_crews(tmp_path)
    assert c.is_member("wendy", "Wranglers")
    assert c.members("Lookdev") >= c.members("Lighting")
    assert rules(text, "wendy", "bob")
    assert rules(text, "carol", "dave") and not rules(text, "erin", "carol")


def test_tq_help_mentions_crews():
    from test_blade import program

    out = subprocess.run([program("tq"), "--help"], capture_output=True, text=True, check=True).stdout
    assert "crews.toml" in " ".join(out.split())
