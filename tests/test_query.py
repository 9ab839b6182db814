"""tq search clauses without a database: lexer, time values, attributes, aliases, parser, short forms."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tractorcli.errors import BadInput, ExitStatus
from tractorcli.query import (
    ENTITIES,
    SEARCH_ALIASES,
    ClauseError,
    aliases_for,
    attribute_names,
    clause_from_words,
    lex,
    parse,
    positional_clause,
    render,
    resolve,
)
from tractorcli.query import attributes as A
from tractorcli.query.aliases import default_user
from tractorcli.query.errors import LiteralError
from tractorcli.query.nodes import (
    And,
    Attr,
    Compare,
    Has,
    In,
    Like,
    Not,
    Or,
    Truth,
    Value,
    Values,
)
from tractorcli.query.timeparse import (
    looks_like_time,
    parse_duration,
    parse_size,
    parse_time,
)

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")
NOW = dt.datetime(2024, 6, 15, 12, 0, 0, tzinfo=NY)


def kinds(src: str) -> list[tuple[str, str, int]]:
    return [(t.kind, t.value, t.col) for t in lex(src)]


def err(fn, *args, **kw) -> ClauseError:
    with pytest.raises(ClauseError) as info:
        fn(*args, **kw)
    return info.value


# --- lexer ----------------------------------------------------------------------------


def test_tokens_have_kinds_values_and_1_based_columns():
    assert kinds('owner=ann and (numerror > 0 or title like "^fr")') == [
        ("word", "owner", 1), ("op", "=", 6), ("word", "ann", 7), ("and", "and", 11), ("(", "(", 15),
        ("word", "numerror", 16), ("op", ">", 25), ("number", "0", 27), ("or", "or", 29),
        ("word", "title", 32), ("like", "like", 38), ("string", "^fr", 43), (")", ")", 48), ("end", "", 49)]


@pytest.mark.parametrize("op", ["=", "==", "!=", "<", "<=", ">", ">="])
def test_comparison_operators(op):
    assert kinds(f"jid{op}5") == [("word", "jid", 1), ("op", op, 4), ("number", "5", 4 + len(op)),
                                  ("end", "", 5 + len(op))]
    assert [t.kind for t in lex(f"jid {op} 5")] == ["word", "op", "number", "end"]


def test_operators_split_greedily():
    assert [t.value for t in lex("a=<b")][:3] == ["a", "=", "<"]
    assert [t.value for t in lex("a<>b")][:3] == ["a", "<", ">"]


def test_keywords_are_whole_words():
    assert [t.kind for t in lex("index in notes")] == ["word", "in", "word", "end"]
    assert [t.kind for t in lex("hasher has likes like inx")] == ["word", "has", "word", "like", "word", "end"]
    assert [t.kind for t in lex("not(active)")] == ["not", "(", "word", ")", "end"]
    assert [t.kind for t in lex("x in[a]")] == ["word", "in", "[", "word", "]", "end"]
    assert [t.kind for t in lex("android ornate notable")] == ["word", "word", "word", "end"]


def test_boolean_words_in_any_case_but_in_like_has_lower_case():
    assert [t.kind for t in lex("a AND b Or c NOT d and e oR f")] == [
        "word", "and", "word", "or", "word", "not", "word", "and", "word", "or", "word", "end"]
    assert [t.kind for t in lex("IN LIKE Has")] == ["word", "word", "word", "end"]


def test_lists():
    assert [t.kind for t in lex("[a, b c]")] == ["[", "word", ",", "word", "word", "]", "end"]


def test_strings_and_escapes():
    assert lex(r'"a \"b\" c"')[0].value == 'a "b" c'
    assert lex(r"'it\'s'")[0].value == "it's"
    assert lex(r'"a\\b"')[0].value == "a\\b"
    assert lex(r'"RHEL\d+"')[0].value == r"RHEL\d+"  # other escapes keep their backslash (regexes)
    assert lex("'say \"hi\"'")[0].value == 'say "hi"'
    assert lex('"x`date`"')[0].value == "x`date`"  # a backtick inside quotes is data
    assert lex('""')[0].value == ""
    t = lex('title = "a b"')[2]
    assert (t.kind, t.col, t.text) == ("string", 9, '"a b"')


def test_numbers_and_words():
    assert [(t.kind, t.value) for t in lex("-5 3.5 .5 7. -0.25")][:-1] == [
        ("number", "-5"), ("number", "3.5"), ("number", ".5"), ("number", "7."), ("number", "-0.25")]
    for w in ("-1h", "10am", "3/15|4pm", "3/15.4pm", "11:37", "512M", "1e5", "+5", "a-b", "x;y", "/tmp/a",
              "%s", "$USER", "a.b", "--", "{x}", "#"):
        toks = lex(w)
        assert (toks[0].kind, toks[0].value) == ("word", w), w


def test_unquoted_strings_stop_at_delimiters():
    assert [t.value for t in lex("a!=b")][:3] == ["a", "!=", "b"]
    assert [t.value for t in lex("a(b)c[d]e,f'g'")][:-1] == ["a", "(", "b", ")", "c", "[", "d", "]", "e", ",",
                                                            "f", "g"]


@pytest.mark.parametrize("src,col", [("`ls`", 1), ("title=`ls`", 7), ("title=a`ls`", 8),
                                     ("owner in [`whoami`]", 11), ("(`x`)", 2)])
def test_backtick_command_substitution_is_refused_at_its_position(src, col):
    e = err(lex, src)
    assert e.column == col
    assert "backtick command substitution is not supported: nothing from a clause runs on this machine" in str(e)


@pytest.mark.parametrize("src,col,text", [
    ('title="abc', 7, "not closed"), ("title='a\\'", 7, "not closed"), ("a ! b", 3, "'!' alone"),
    ("a\x00b", 2, "NUL"), ("'a\x00'", 3, "NUL"), ("a\ud800", 2, "undecodable"),
])
def test_lexer_errors(src, col, text):
    e = err(lex, src)
    assert e.column == col and text in e.reason


# --- errors ---------------------------------------------------------------------------


def test_clause_error_is_bad_input_with_column_and_caret():
    e = err(parse, "job", "owner=joe and")
    assert isinstance(e, BadInput) and e.status == ExitStatus.BAD_INPUT
    assert str(e) == 'clause "owner=joe and": column 14: expected an attribute, a value or \'(\' after "and"'
    assert e.caret() == "owner=joe and\n             ^"


def test_error_messages_stay_on_one_line():
    e = err(parse, "job", 'title="a\nb" and x\ty')
    assert "\n" not in str(e) and "\\n" in str(e)


# --- time values, durations, sizes ---------------------------------------------------------


def at(*args, tz=NY) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


@pytest.mark.parametrize("text,expect", [
    ("10am", at(2024, 6, 15, 10)), ("5pm", at(2024, 6, 15, 17)), ("12am", at(2024, 6, 15, 0)),
    ("12pm", at(2024, 6, 15, 12)), ("11:37", at(2024, 6, 15, 11, 37)), ("16:21", at(2024, 6, 15, 16, 21)),
    ("4:21pm", at(2024, 6, 15, 16, 21)), ("4:21PM", at(2024, 6, 15, 16, 21)),
    ("11:37:05", at(2024, 6, 15, 11, 37, 5)),
    ("3/15", at(2024, 3, 15)), ("3/15|4pm", at(2024, 3, 15, 16)), ("3/15.4pm", at(2024, 3, 15, 16)),
    ("3/15|17:37", at(2024, 3, 15, 17, 37)), ("3/15/05", at(2005, 3, 15)), ("3/15/05|4am", at(2005, 3, 15, 4)),
    ("3/15/2005", at(2005, 3, 15)), ("1/6/14", at(2014, 1, 6)), ("1/1/70", at(1970, 1, 1)),
    ("12/31/99", at(1999, 12, 31)), ("2/29", at(2024, 2, 29)),
    ("2024-03-15", at(2024, 3, 15)), ("2024-03-15T10:30", at(2024, 3, 15, 10, 30)),
    ("now", NOW), ("-2h", NOW - dt.timedelta(hours=2)), ("-3d", NOW - dt.timedelta(days=3)),
    ("-30m", NOW - dt.timedelta(minutes=30)), ("-1w", NOW - dt.timedelta(weeks=1)),
    ("-10s", NOW - dt.timedelta(seconds=10)), ("-1h30m", NOW - dt.timedelta(minutes=90)),
    ("-1.5d", NOW - dt.timedelta(hours=36)), ("+2h", NOW + dt.timedelta(hours=2)), ("-0s", NOW),
])
def test_time_values(text, expect):
    got = parse_time(text, NOW)
    assert got == expect
    assert looks_like_time(text)


def test_month_day_takes_the_year_closest_to_now():
    jan = dt.datetime(2024, 1, 5, 9, 0, tzinfo=UTC)
    assert parse_time("12/31", jan).date() == dt.date(2023, 12, 31)
    assert parse_time("3/1", jan).date() == dt.date(2024, 3, 1)
    dec = dt.datetime(2024, 12, 30, tzinfo=UTC)
    assert parse_time("1/2", dec).date() == dt.date(2025, 1, 2)
    assert parse_time("7/15", dec).date() == dt.date(2024, 7, 15)
    assert parse_time("6/30", dec).date() == dt.date(2025, 6, 30)  # 182 days ahead, 183 back
    assert parse_time("2/29", dt.datetime(2025, 6, 1, tzinfo=UTC)).date() == dt.date(2024, 2, 29)


def test_local_times_take_the_offset_of_their_own_date():
    assert parse_time("1/15|10am", NOW).utcoffset() == dt.timedelta(hours=-5)  # EST in January
    assert parse_time("10am", NOW).utcoffset() == dt.timedelta(hours=-4)  # EDT in June
    fixed = dt.datetime(2024, 6, 15, 12, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    if fixed.utcoffset() != fixed.astimezone().utcoffset():
        assert parse_time("1/15", fixed).utcoffset() == dt.timedelta(hours=3)  # a foreign fixed offset stays


def test_system_local_time_when_now_is_local():
    now = dt.datetime(2024, 6, 15, 12).astimezone()
    assert parse_time("1/15|10am", now) == dt.datetime(2024, 1, 15, 10).astimezone()
    assert parse_time("10am", dt.datetime(2024, 6, 15, 12)) == dt.datetime(2024, 6, 15, 10).astimezone()


@pytest.mark.parametrize("text,fragment", [
    ("2h", "needs a sign"), ("13pm", "1 to 12"), ("0am", "1 to 12"), ("25:00", "0 to 23"), ("10:61", "0 to 59"),
    ("2/30", "no day 30"), ("13/1", "month is 1 to 12"), ("1/32", "day is 1 to 31"), ("2/29/23", "no day 29"),
    ("soon", "is not a time"), ("10", "is not a time"), ("3/15|soon", "not a time of day"),
    ("2024-13-01", "not a valid date"), ("-99999999999999w", "out of the range"), ("1/1/0001|x", "time of day"),
])
def test_bad_time_values(text, fragment):
    with pytest.raises(LiteralError) as info:
        parse_time(text, NOW)
    assert fragment in str(info.value)


def test_durations():
    assert parse_duration("90") == 90 and parse_duration("1.5") == 1.5
    assert parse_duration("30s") == 30 and parse_duration("10m") == 600 and parse_duration("2h") == 7200
    assert parse_duration("1d") == 86400 and parse_duration("1w") == 604800 and parse_duration("1h30m") == 5400
    assert parse_duration("2H") == 7200 and parse_duration("-1h") == -3600 and parse_duration("60M") == 3600
    with pytest.raises(LiteralError, match="not a duration"):
        parse_duration("2x")


def test_sizes_scale_to_the_attributes_unit():
    assert parse_size("1") == 1 and parse_size("1G") == 1 and parse_size("1024M") == 1
    assert parse_size("1048576K") == 1 and parse_size("512m") == 0.5 and parse_size("2GB") == 2
    assert parse_size("1T") == 1024 and parse_size("1P") == 1024 ** 2 and parse_size("1KiB") == 1 / 1024 ** 2
    assert parse_size("1073741824b") == 1 and parse_size("1gb") == 1 and parse_size("1MB", "MB") == 1
    with pytest.raises(LiteralError, match="not a size"):
        parse_size("1X")


# --- attributes -----------------------------------------------------------------------------


def schema_columns() -> set[tuple[str, str]]:
    text = (Path(__file__).parent / "schema_snapshot.txt").read_text()
    return {(p[1], p[2].split()[0]) for p in (ln.split("\t") for ln in text.splitlines()) if p[0] == "column"}


TABLE = {"job": "jobs", "task": "tasks", "command": "commands", "invocation": "invocations", "blade": "blades",
         "param": "params", "note": "notes"}


def test_every_attribute_maps_to_a_real_column_or_a_documented_expression():
    cols = schema_columns()
    computed = {("task", "cids"), ("task", "ptids"), ("command", "expand"), ("blade", "taskcount"),
                ("blade", "owners")}
    for key, e in ENTITIES.items():
        for name, a in e.attrs.items():
            assert a.entity == key and a.name == name
            m = re.fullmatch(r"([a-z]+)\.([a-z_]+)", a.sql)
            if (key, name) in computed:
                assert m is None
                for ref in re.findall(r"\b(job|task|cmd|invo|blade|param|note)\.([a-z_]+)", a.sql):
                    assert (TABLE[{"cmd": "command", "invo": "invocation"}.get(ref[0], ref[0])], ref[1]) in cols
                continue
            assert m and m.group(1) == e.alias, a
            assert (TABLE[key], m.group(2)) in cols, a


def test_tractor_attributes_are_all_there():
    want = {
        "job": "jid owner spoolhost spoolfile spoolcwd spooladdr title assignments tier priority crews projects "
               "tags service envkey editpolicy minslots maxslots etalevel afterjids spooltime pausetime aftertime "
               "starttime stoptime deletetime elapsedsecs esttotalsecs numtasks numblocked numready numactive "
               "numerror numdone maxtid maxcid comment metadata maxactive serialsubtasks dirmap pil lastnoteid",
        "task": "jid tid title id service minslots maxslots cids serialsubtasks ptids attached state statetime "
                "readytime activetime currcid haslog preview chaser progress metadata resumeblock retrycount",
        "command": "jid tid cid argv local expand runtype msg service tags id refersto minslots maxslots envkey "
                   "retryrcodes metadata resumewhile resumepin minrunsecs maxrunsecs",
        "invocation": "jid tid cid iid current numslots limits starttime stoptime pid rss vsz cpu elapsedapp "
                      "elapsedsys elapsedreal rcode retrycount resumecount resumable bladeid",
        "blade": "name ipaddr port osname osversion boottime numcpu loadavg availmemory availdisk version profile "
                 "nimby starttime numslots udi status heartbeattime instanceid bladeid cleartime gpulabel "
                 "taskcount slotsinuse owners",
        "param": "name value",
        "note": "noteid notetype noteuser notetime notetext itemtype itemid",
    }
    for key, names in want.items():
        assert set(names.split()) <= set(ENTITIES[key].attrs), key


@pytest.mark.parametrize("entity,alias,name", [
    ("job", "user", "owner"), ("job", "username", "owner"), ("job", "cwd", "spoolcwd"),
    ("job", "deleted", "deletetime"), ("job", "jobid", "jid"), ("job", "ntasks", "numtasks"),
    ("job", "pri", "priority"), ("job", "spooled", "spooltime"), ("job", "elapsed", "elapsedsecs"),
    ("job", "est", "esttotalsecs"), ("job", "file", "spoolfile"), ("job", "locked", "locktime"),
    ("task", "jobid", "jid"), ("task", "taskid", "tid"),
    ("command", "jobid", "jid"), ("command", "taskid", "tid"), ("command", "cmdid", "cid"),
    ("command", "retryrc", "retryrcodes"), ("command", "retrycodes", "retryrcodes"),
    ("invocation", "jobid", "jid"), ("invocation", "taskid", "tid"), ("invocation", "cmdid", "cid"),
    ("invocation", "utime", "elapsedapp"), ("invocation", "stime", "elapsedsys"),
    ("invocation", "wtime", "elapsedreal"), ("invocation", "mem", "vsz"),
    ("blade", "disk", "availdisk"), ("blade", "mem", "availmemory"), ("blade", "availmem", "availmemory"),
    ("blade", "cores", "numcpu"), ("blade", "load", "loadavg"), ("blade", "os", "osname"),
    ("blade", "instid", "instanceid"), ("blade", "bid", "bladeid"),
])
def test_attribute_aliases(entity, alias, name):
    a = resolve(entity, alias)
    assert (a.entity, a.name) == (entity, name)


@pytest.mark.parametrize("entity,word,qualified", [
    ("task", "owner", "Job.owner"), ("task", "user", "Job.owner"), ("task", "title", "Task.title"),
    ("task", "Job.title", "Job.title"), ("task", "Blade.name", "Blade.name"), ("task", "rcode", "Invocation.rcode"),
    ("task", "starttime", "Job.starttime"), ("command", "title", "Task.title"), ("command", "state", "Command.state"),
    ("invocation", "state", "Command.state"), ("invocation", "argv", "Command.argv"),
    ("invocation", "mem", "Invocation.vsz"), ("invocation", "Blade.mem", "Blade.availmemory"),
    ("invocation", "Cmd.argv", "Command.argv"), ("invocation", "Invo.iid", "Invocation.iid"),
    ("job", "JobLock.owner", "Job.lockowner"), ("job", "JobLock.time", "Job.locktime"),
    ("job", "JobLock.note", "Job.locknote"), ("job", "JobLock.locked", "Job.locktime"),
    ("task", "JobLock.owner", "Job.lockowner"), ("blade", "BladeUse.taskcount", "Blade.taskcount"),
    ("blade", "BladeUse.owners", "Blade.owners"), ("job", "Job.user", "Job.owner"),
])
def test_unqualified_names_resolve_to_the_queried_entity_then_related_ones_in_order(entity, word, qualified):
    assert resolve(entity, word).qualified == qualified


@pytest.mark.parametrize("entity,word,fragment", [
    ("job", "Job.ownr", 'Job has no attribute "ownr" (did you mean owner?)'),
    ("job", "Blade.name", "a search of jobs cannot use Blade attributes"),
    ("blade", "Job.owner", "a search of blades cannot use Job attributes"),
    ("task", "Command.argv", "a search of tasks cannot use Command attributes"),
    ("job", "JobLock.title", 'JobLock has no attribute "title"'),
])
def test_qualified_names_must_exist_and_be_reachable(entity, word, fragment):
    with pytest.raises(A.UnknownAttribute, match=re.escape(fragment)):
        resolve(entity, word)


def test_unknown_words_are_not_attributes():
    for word in ("ann", "file.txt", "job.owner", "Owner", "JOB.owner", "", "Jobs.owner"):
        assert resolve("job", word) is None, word
    assert "owner" in attribute_names("task") and "numcpu" in attribute_names("task")  # via Blade
    assert "numcpu" not in attribute_names("task", related=False)


def test_entities_by_any_name():
    for name in ("job", "jobs", "Job"):
        assert A.entity(name).key == "job"
    assert A.entity("cmds").key == "command" and A.entity("invos").key == "invocation"
    with pytest.raises(ValueError):
        A.entity("widgets")


def test_joins_come_with_their_dependencies_in_order():
    assert [k for k, _ in A.join_sql("task", {"blade"})] == ["invocation", "blade"]
    assert [k for k, _ in A.join_sql("invocation", {"blade", "job", "command"})] == ["command", "job", "blade"]
    assert A.join_sql("job", set()) == []


# --- search aliases --------------------------------------------------------------------------


def test_the_alias_table():
    assert SEARCH_ALIASES["job"]["active"] == "numactive > 0"
    assert SEARCH_ALIASES["job"]["done"] == "numdone=numtasks"
    assert SEARCH_ALIASES["task"]["error"] == "state=error"
    assert SEARCH_ALIASES["blade"]["up"] == "heartbeattime > -6m"
    for key in ("job", "task", "command", "invocation"):
        assert SEARCH_ALIASES[key]["mine"] == "owner=$USER"
    assert set(aliases_for("job", {"big": "numtasks > 1000"})) >= {"big", "mine", "paused", "delayed", "locked",
                                                                  "deleted"}


def test_every_builtin_alias_parses_for_its_entity():
    for key, table in SEARCH_ALIASES.items():
        for name in table:
            assert parse(key, name, user="ann") is not None


@pytest.mark.parametrize("entity,alias,expect", [
    ("job", "blocked", "Job.numblocked > 0"), ("job", "ready", "Job.numready > 0"),
    ("job", "active", "Job.numactive > 0"), ("job", "error", "Job.numerror > 0"),
    ("job", "done", "Job.numdone = Job.numtasks"), ("job", "mine", 'Job.owner = "o\'brien"'),
    ("job", "paused", "Job.pausetime"), ("job", "delayed", 'Job.aftertime > "now"'),
    ("job", "locked", "Job.locktime"), ("job", "deleted", "Job.deletetime"),
    ("task", "blocked", 'Task.state = "blocked"'), ("task", "ready", 'Task.state = "ready"'),
    ("task", "active", 'Task.state = "active"'), ("task", "error", 'Task.state = "error"'),
    ("task", "done", 'Task.state = "done"'), ("task", "mine", 'Job.owner = "o\'brien"'),
    ("command", "active", 'Command.state = "active"'), ("command", "done", 'Command.state in ["done" "skipped"]'),
    ("command", "skipped", 'Command.state = "skipped"'),
    ("invocation", "error", 'Command.state = "error"'), ("invocation", "mine", 'Job.owner = "o\'brien"'),
    ("blade", "up", 'Blade.heartbeattime > "-6m"'),
    ("blade", "registered", '(Blade.heartbeattime > Blade.cleartime) or ((Blade.heartbeattime) and '
                            '(not (Blade.cleartime)))'),
    ("note", "mine", 'Note.noteuser = "o\'brien"'),
])
def test_search_aliases_expand(entity, alias, expect):
    assert render(parse(entity, alias, user="o'brien")) == expect


def test_mine_takes_the_user_as_a_value_never_as_clause_text():
    for user in ('x" or owner != "', "a b", "`id`", "'; DROP TABLE jobs; --", "", "and", "(", "\\"):
        tree = parse("job", "mine", user=user)
        assert isinstance(tree, Compare) and tree.right == Value(user, "string", 1)


def test_default_user(monkeypatch):
    monkeypatch.setenv("USER", "zed")
    assert default_user() == "zed"
    assert render(parse("job", "mine")) == 'Job.owner = "zed"'
    monkeypatch.delenv("USER")
    assert default_user()


def test_alias_nodes_carry_the_alias_column_and_where_they_came_from():
    tree = parse("task", "jid=1 and  error")
    assert isinstance(tree, And)
    cmp = tree.items[1]
    assert isinstance(cmp, Compare) and cmp.col == 12 and cmp.via == "search alias error (state=error)"


def test_site_aliases_nest_override_and_loops_are_errors():
    extra = {"big": "numtasks > 100", "bigerr": "big and error", "active": "numactive > 5",
             "loop": "a or b", "a": "loop", "b": "numdone", "broken": "owner = = x", "self": "self",
             "bad": "nosuch", "tick": "`x`"}
    assert render(parse("job", "bigerr", aliases=extra)) == "(Job.numtasks > 100) and (Job.numerror > 0)"
    assert render(parse("job", "active", aliases=extra)) == "Job.numactive > 5"
    e = err(parse, "job", "done or loop", aliases=extra)
    assert e.column == 9 and "search alias loop refers to itself (loop -> a -> loop)" in e.reason
    e = err(parse, "job", "self", aliases=extra)
    assert e.column == 1 and "refers to itself" in e.reason
    e = err(parse, "job", "jid=1 or broken", aliases=extra)
    assert e.column == 10 and e.reason.startswith("in search alias broken (owner = = x): expected")
    e = err(parse, "job", "bad", aliases=extra)
    assert e.column == 1 and '"nosuch" is not an attribute' in e.reason
    e = err(parse, "job", "x=1 or tick", aliases=extra)
    assert e.column == 8 and "backtick" in e.reason


def test_deep_alias_chains_stop():
    extra = {f"a{i}": f"a{i + 1}" for i in range(200)}
    extra["a200"] = "numdone"
    e = err(parse, "job", "a0", aliases=extra)
    assert "nest more than" in e.reason and e.column == 1


# --- parser ---------------------------------------------------------------------------------


def R(entity: str, clause: str, **kw) -> str:
    return render(parse(entity, clause, user="ann", **kw))


def test_empty_clause_is_no_restriction():
    assert parse("job", "") is None and parse("job", "  \t ") is None


def test_precedence_not_and_or():
    t = parse("job", "numdone or numerror and not numactive")
    assert isinstance(t, Or) and isinstance(t.items[1], And) and isinstance(t.items[1].items[1], Not)
    assert R("job", "(numdone or numerror) and numactive") == \
        "((Job.numdone) or (Job.numerror)) and (Job.numactive)"
    assert R("job", "not not numdone") == "Job.numdone"
    assert R("job", "not not not numdone") == "not (Job.numdone)"
    assert R("job", "not (jid=1 or jid=2)") == "not ((Job.jid = 1) or (Job.jid = 2))"
    assert R("job", "jid=1 or jid=2 or jid=3") == "(Job.jid = 1) or (Job.jid = 2) or (Job.jid = 3)"
    assert R("job", "((jid=1))") == "Job.jid = 1"
    assert R("job", "jid=1 AND jid=2 Or NOT jid=3") == "((Job.jid = 1) and (Job.jid = 2)) or (not (Job.jid = 3))"


def test_comparisons():
    for op in ("=", "!=", "<", "<=", ">", ">="):
        t = parse("job", f"priority {op} 5")
        assert isinstance(t, Compare) and t.op == op and t.col == 10
    assert parse("job", "jid == 5").op == "="
    t = parse("job", "5 < numactive")
    assert isinstance(t.left, Value) and isinstance(t.right, Attr)  # mirrored by the compiler


def test_unquoted_words_are_attributes_if_they_name_one_else_literals():
    assert R("job", "owner=adamwg") == 'Job.owner = "adamwg"'
    assert R("job", 'owner="adamwg"') == 'Job.owner = "adamwg"'
    assert R("job", "title like owner") == "Job.title like Job.owner"
    assert R("job", 'title like "owner"') == 'Job.title like "owner"'
    assert R("job", "title like adamwg") == 'Job.title like "adamwg"'
    assert R("job", "title=\"Smith Tower\"") == 'Job.title = "Smith Tower"'
    assert R("task", "state=active and Job.title like render") == \
        '(Task.state = "active") and (Job.title like "render")'


def test_task_state_words_are_literals():
    for s in ("blocked", "ready", "active", "error", "done"):
        assert R("task", f"state={s}") == f'Task.state = "{s}"'
        assert R("task", f"state != {s}") == f'Task.state != "{s}"'


def test_standalone_terms():
    assert isinstance(parse("job", "numactive"), Truth)
    assert R("job", "numactive and not numerror") == "(Job.numactive) and (not (Job.numerror))"
    assert R("job", "pri") == "Job.priority"
    assert R("task", "Job.pausetime") == "Job.pausetime"


def test_in_like_has_and_their_negations():
    assert R("job", "owner in [tom dick harry]") == 'Job.owner in ["tom" "dick" "harry"]'
    assert R("job", "owner in [tom, dick,harry]") == 'Job.owner in ["tom" "dick" "harry"]'
    assert R("job", "owner in []") == "Job.owner in []"
    assert R("job", "prman in tags") == '"prman" in Job.tags'
    assert R("job", "tags has [prman linux]") == 'Job.tags has ["prman" "linux"]'
    assert R("job", "title like [a b]") == 'Job.title like ["a" "b"]'
    assert R("job", "owner not in [a]") == 'not (Job.owner in ["a"])'
    assert R("job", "title not like x") == 'not (Job.title like "x")'
    assert R("job", "tags not has [a]") == 'not (Job.tags has ["a"])'
    assert R("job", "not owner in [a]") == 'not (Job.owner in ["a"])'
    t = parse("job", "jid in [1, -2 3.5 'x' title and]")
    assert isinstance(t, In) and isinstance(t.right, Values)
    assert [(v.text, v.kind) for v in t.right.items] == [("1", "number"), ("-2", "number"), ("3.5", "number"),
                                                         ("x", "string"), ("title", "word"), ("and", "word")]
    assert isinstance(parse("job", "title like x"), Like) and isinstance(parse("job", "tags has x"), Has)


@pytest.mark.parametrize("entity,clause,col,fragment", [
    ("job", "owner=joe and", 14, 'expected an attribute, a value or \'(\' after "and"'),
    ("job", "owner=", 7, 'expected an attribute or a value after "="'),
    ("job", "owner = )", 9, 'expected an attribute or a value, found ")"'),
    ("job", "owner in", 9, "expected an attribute or a value"),
    ("job", ")", 1, "expected an attribute, a value or '(', found \")\""),
    ("job", "and", 1, "expected an attribute, a value or '('"),
    ("job", "(jid=1", 1, "the '(' here is never closed"),
    ("job", "(jid=1 jid=2)", 8, "expected 'and', 'or' or ')'"),
    ("job", "jid=1)", 6, "unexpected ')': no '(' is open"),
    ("job", "active mine", 8, "join conditions with 'and' or 'or'"),
    ("job", "ownr", 1, '"ownr" is not an attribute or search alias of jobs (did you mean owner?)'),
    ("job", "up", 1, '"up" is not an attribute or search alias of jobs'),
    ("blade", "active", 1, '"active" is not an attribute or search alias of blades'),
    ("job", '"abc"', 1, 'a value alone is not a condition: compare "\\"abc\\"" with an attribute'),
    ("job", "5", 1, "a value alone is not a condition"),
    ("job", "[a b]", 1, "a value alone is not a condition"),
    ("job", "owner not ann", 7, "'not' can only come before in, like or has"),
    ("job", "owner in [a", 10, "the '[' here is never closed"),
    ("job", "owner in [a [b]]", 13, "a list holds values only"),
    ("job", "owner in [a = b]", 13, "a list holds values only"),
    ("job", "Job.ownr = x", 1, 'Job has no attribute "ownr"'),
    ("job", "x = Blade.name", 5, "cannot use Blade attributes"),
    ("task", "jid=1 and (state=error or)", 26, "expected an attribute, a value or '(', found \")\""),
])
def test_syntax_errors_name_the_column(entity, clause, col, fragment):
    e = err(parse, entity, clause)
    assert e.column == col, str(e)
    assert fragment in e.reason, str(e)


def test_nesting_is_bounded():
    assert R("job", "(" * 64 + "jid=1" + ")" * 64) == "Job.jid = 1"
    e = err(parse, "job", "(" * 65 + "jid=1" + ")" * 65)
    assert e.column == 65 and "nest more than 64" in e.reason
    e = err(parse, "job", "(" * 10000)
    assert "nest more than" in e.reason
    assert R("job", "not " * 5001 + "numdone") == "not (Job.numdone)"
    long = " or ".join(f"jid={i}" for i in range(3000))
    assert len(parse("job", long).items) == 3000


def test_render_reads_back():
    for entity, clause in [("job", "owner=ann and (error or not done) and tags has [a b] and title like '^x'"),
                           ("task", "Blade.name in [a b] and not state=done and progress > 50"),
                           ("invocation", "rcode != 0 and mem > 2G or mine")]:
        once = R(entity, clause)
        assert R(entity, once) == once


# --- positional short forms -----------------------------------------------------------------


@pytest.mark.parametrize("entity,words,clause,rest", [
    ("jobs", ["12", "13"], "jid in [12 13]", []),
    ("jobs", ["12"], "jid=12", []),
    ("tasks", ["12", "4", "5"], "jid=12 and tid in [4 5]", []),
    ("tasks", ["12", "4"], "jid=12 and tid=4", []),
    ("tasks", ["12"], "jid=12", []),
    ("commands", ["12", "4"], "jid=12 and cid=4", []),
    ("invocations", ["12", "4", "7"], "jid=12 and cid in [4 7]", []),
    ("notes", ["3", "4"], "noteid in [3 4]", []),
    ("tasks", ["12", "error"], "jid=12", ["error"]),
    ("tasks", ["0012", "4"], "jid=12 and tid=4", []),
])
def test_positional_short_forms(entity, words, clause, rest):
    assert positional_clause(entity, words) == (clause, rest)


def test_no_short_form():
    assert positional_clause("blades", ["12"]) == (None, ["12"])
    assert positional_clause("params", ["1"]) == (None, ["1"])
    assert positional_clause("jobs", ["active", "12"]) == (None, ["active", "12"])
    assert positional_clause("jobs", ["-12"]) == (None, ["-12"])


def test_blade_names_short_form():
    both = 'name in ["rack01" "10.0.0.7"] or ipaddr in ["rack01" "10.0.0.7"]'
    assert clause_from_words("blades", ["rack01", "10.0.0.7"]) == both
    assert clause_from_words("blade", ["b-1.studio"]) == 'name in ["b-1.studio"] or ipaddr in ["b-1.studio"]'
    # attributes, aliases, keywords, numbers and clauses stay a clause
    assert clause_from_words("blades", ["up"]) == "up"
    assert clause_from_words("blades", ["name=rack01"]) == "name=rack01"
    assert clause_from_words("blades", ["rack01", "and", "up"]) == "rack01 and up"
    assert clause_from_words("blades", ["nimby"]) == "nimby"
    assert clause_from_words("blades", ["12"]) == "12"
    assert clause_from_words("jobs", ["rack01"]) == "rack01"  # blades only
    assert R("blade", both) == '(Blade.name in ["rack01" "10.0.0.7"]) or (Blade.ipaddr in ["rack01" "10.0.0.7"])'


def test_clause_from_words():
    assert clause_from_words("jobs", ["owner=ann", "and", "active"]) == "owner=ann and active"
    assert clause_from_words("tasks", ["12", "4", "5"]) == "jid=12 and tid in [4 5]"
    assert clause_from_words("tasks", ["12", "error", "or", "done"]) == "jid=12 and (error or done)"
    assert clause_from_words("jobs", []) == ""
    assert R("task", clause_from_words("tasks", ["12", "4", "5"])) == "(Task.jid = 12) and (Task.tid in [4 5])"
