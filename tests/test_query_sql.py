"""tq search clauses -> SQL: the SQL and its parameters, types, injection attempts,
property tests, and real queries against a job database with spooled jobs and blades."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tractorcli.query import (
    ENTITIES,
    SEARCH_ALIASES,
    ClauseError,
    ColumnError,
    attribute_names,
    build_select,
    clause_from_words,
    compile_clause,
)
from tractorcli.query import attributes as A

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


def C(entity: str, clause: str, **kw):
    kw.setdefault("user", "ann")
    kw.setdefault("now", NOW)
    return compile_clause(entity, clause, **kw)


def W(entity: str, clause: str, **kw) -> tuple[str, dict]:
    q = C(entity, clause, **kw)
    return q.where_sql, q.params


def E(entity: str, clause: str, **kw) -> ClauseError:
    with pytest.raises(ClauseError) as info:
        C(entity, clause, **kw)
    return info.value


# --- the SQL -----------------------------------------------------------------------------


@pytest.mark.parametrize("entity,clause,sql,params", [
    ("job", "", "TRUE", {}),
    ("job", "owner=ann", "job.owner = %(p1)s::text", {"p1": "ann"}),
    ("job", "owner == ann", "job.owner = %(p1)s::text", {"p1": "ann"}),
    ("job", "owner != ann", "job.owner <> %(p1)s::text", {"p1": "ann"}),
    ("job", "jid=12", "job.jid = %(p1)s::int8", {"p1": 12}),
    ("task", "tid >= 3", "task.tid >= %(p1)s::int4", {"p1": 3}),
    ("job", "5 < numactive", "job.numactive > %(p1)s::int4", {"p1": 5}),
    ("job", "-1.5 >= priority", "job.priority <= %(p1)s::float8", {"p1": -1.5}),
    ("job", "numactive", "job.numactive <> 0", {}),
    ("job", "not numactive", "NOT (job.numactive <> 0)", {}),
    ("job", "title", "job.title <> ''", {}),
    ("job", "serialsubtasks", "job.serialsubtasks", {}),
    ("job", "pausetime", "job.pausetime IS NOT NULL", {}),
    ("job", "tags", "coalesce(cardinality(job.tags), 0) > 0", {}),
    ("job", "lockowner", "coalesce(job.lockowner, '') <> ''", {}),
    ("job", "minslots", "coalesce(job.minslots, 0) <> 0", {}),
    ("job", "numdone=numtasks", "job.numdone = job.numtasks", {}),
    ("job", "active and not error", "((job.numactive > %(p1)s::int4) AND (NOT (job.numerror > %(p2)s::int4)))",
     {"p1": 0, "p2": 0}),
    ("job", "jid=1 or jid=2", "((job.jid = %(p1)s::int8) OR (job.jid = %(p2)s::int8))", {"p1": 1, "p2": 2}),
    ("job", "not lockowner=ann", "NOT coalesce(job.lockowner = %(p1)s::text, false)", {"p1": "ann"}),
    ("job", "owner in [tom dick harry]", "job.owner = ANY(%(p1)s::text[])", {"p1": ["tom", "dick", "harry"]}),
    ("job", "jid in [1, 2 3]", "job.jid = ANY(%(p1)s::int8[])", {"p1": [1, 2, 3]}),
    ("job", "owner in []", "FALSE", {}),
    ("job", "owner in ann", "job.owner = %(p1)s::text", {"p1": "ann"}),
    ("job", "owner in spoolhost", "job.owner = job.spoolhost", {}),
    ("job", "prman in tags", "%(p1)s::text = ANY(job.tags)", {"p1": "prman"}),
    ("job", "7 in afterjids", "%(p1)s::int8 = ANY(job.afterjids)", {"p1": 7}),
    ("job", "owner in crews", "job.owner = ANY(job.crews)", {}),
    ("job", "shot in assignments", "job.assignments ? %(p1)s::text", {"p1": "shot"}),
    ("job", "owner not in [a]", "NOT (job.owner = ANY(%(p1)s::text[]))", {"p1": ["a"]}),
    ("job", "tags has [prman linux]", "job.tags @> %(p1)s::text[]", {"p1": ["prman", "linux"]}),
    ("job", "tags has prman", "job.tags @> %(p1)s::text[]", {"p1": ["prman"]}),
    ("job", "tags has []", "TRUE", {}),
    ("job", "tags has owner", "job.owner = ANY(job.tags)", {}),
    ("job", "afterjids has [1 2]", "job.afterjids @> %(p1)s::int8[]", {"p1": [1, 2]}),
    ("job", "assignments has [a b]", "job.assignments ?& %(p1)s::text[]", {"p1": ["a", "b"]}),
    ("command", "retryrcodes has [1]", "cmd.retryrcodes @> %(p1)s::int4[]", {"p1": [1]}),
    ("job", "tags = [a b]", "job.tags = %(p1)s::text[]", {"p1": ["a", "b"]}),
    ("job", 'title like "^fr"', "job.title ~ %(p1)s::text", {"p1": "^fr"}),
    ("job", r'title like "RHEL\d+"', "job.title ~ %(p1)s::text", {"p1": r"RHEL\d+"}),
    ("job", "title like [a b]", "job.title ~ ANY(%(p1)s::text[])", {"p1": ["a", "b"]}),
    ("job", "title like []", "FALSE", {}),
    ("job", "title like owner", "job.title ~ job.owner", {}),
    ("job", "tags like pr", "(job.tags)::text ~ %(p1)s::text", {"p1": "pr"}),
    ("job", "dirmap like x", "(job.dirmap)::text ~ %(p1)s::text", {"p1": "x"}),
    ("job", "jid like 12", "(job.jid)::text ~ %(p1)s::text", {"p1": "12"}),
    ("job", "abc like title", "%(p1)s::text ~ job.title", {"p1": "abc"}),
    ("job", "title not like x", "NOT (job.title ~ %(p1)s::text)", {"p1": "x"}),
    ("job", "lockowner not like x", "NOT coalesce(job.lockowner ~ %(p1)s::text, false)", {"p1": "x"}),
    ("job", "serialsubtasks = yes", "job.serialsubtasks = %(p1)s::boolean", {"p1": True}),
    ("job", "serialsubtasks != 0", "job.serialsubtasks <> %(p1)s::boolean", {"p1": False}),
    ("job", "elapsedsecs > 1h", "job.elapsedsecs > %(p1)s::float8", {"p1": 3600.0}),
    ("job", "elapsedsecs > 90", "job.elapsedsecs > %(p1)s::float8", {"p1": 90.0}),
    ("blade", "availmemory < 1024M", "blade.availmemory < %(p1)s::float8", {"p1": 1.0}),
    ("blade", "mem < 1048576K", "blade.availmemory < %(p1)s::float8", {"p1": 1.0}),
    ("blade", "disk >= 0.5", "blade.availdisk >= %(p1)s::float8", {"p1": 0.5}),
    ("invocation", "elapsedreal > 60m", "invo.elapsedreal > %(p1)s::float8", {"p1": 3600.0}),
    ("invocation", "rss > 512M", "invo.rss > %(p1)s::float8", {"p1": 0.5}),
    ("job", "spooltime > -1h", "job.spooltime > %(p1)s::timestamptz", {"p1": NOW - dt.timedelta(hours=1)}),
    ("job", "spooltime > 1/6/14", "job.spooltime > %(p1)s::timestamptz",
     {"p1": dt.datetime(2014, 1, 6).astimezone()}),
    ("job", "spooltime in [-1h now]", "job.spooltime = ANY(%(p1)s::timestamptz[])",
     {"p1": [NOW - dt.timedelta(hours=1), NOW]}),
    ("blade", "bladeid = 12345678-1234-5678-1234-567812345678", "blade.bladeid = %(p1)s::uuid",
     {"p1": uuid.UUID("12345678-1234-5678-1234-567812345678")}),
    ("job", "dirmap = '[]'", "job.dirmap = %(p1)s::jsonb", {"p1": "[]"}),
    ("job", "assignments", "coalesce(job.assignments NOT IN ('{}'::jsonb, '[]'::jsonb, 'null'::jsonb, "
                           "'\"\"'::jsonb), false)", {}),
    ("blade", "up", "blade.heartbeattime > %(p1)s::timestamptz", {"p1": NOW - dt.timedelta(minutes=6)}),
    ("job", "delayed", "job.aftertime > %(p1)s::timestamptz", {"p1": NOW}),
    ("job", "mine", "job.owner = %(p1)s::text", {"p1": "ann"}),
    ("task", "active", "task.state = %(p1)s::text", {"p1": "active"}),
    ("param", "name = jidcounter", "param.name = %(p1)s::text", {"p1": "jidcounter"}),
    ("note", "mine", "note.noteuser = %(p1)s::text", {"p1": "ann"}),
])
def test_sql_and_parameters(entity, clause, sql, params):
    assert W(entity, clause) == (sql, params)


def test_joins_follow_the_attributes_used():
    q = C("task", "owner=ann and Blade.name like r")
    assert q.joins == ("job", "invocation", "blade")
    assert q.from_sql.startswith("tasks AS task JOIN jobs AS job ON job.jid = task.jid LEFT JOIN LATERAL")
    assert q.from_sql.endswith("LEFT JOIN blades AS blade ON blade.bladeid = invo.bladeid")
    assert C("task", "state=error").joins == ()
    assert C("invocation", "state=error").joins == ("command",)
    assert C("command", "title like x").joins == ("task",)
    assert C("job", "JobLock.owner = ann").where_sql == "job.lockowner = %(p1)s::text"
    assert C("blade", "BladeUse.taskcount > 1").where_sql.startswith("(SELECT count(*) FROM invocations")
    assert C("param", "").from_sql.startswith("(SELECT name, value FROM")


def test_a_not_over_an_outer_join_counts_missing_rows_as_false():
    sql, _ = W("task", "not Blade.name = b1")
    assert sql == "NOT coalesce(blade.name = %(p1)s::text, false)"
    sql, _ = W("task", "Blade.name")
    assert sql == "coalesce(blade.name, '') <> ''"


@pytest.mark.parametrize("entity,clause,col,fragment", [
    ("job", "a=b", 2, "'=' needs an attribute on one side"),
    ("job", "ann = 5", 5, '"ann" is not an attribute of jobs'),
    ("job", "ownr = ann", 6, '"ownr" (did you mean owner?), "ann" are not attributes of jobs'),
    ("job", "x in [a b]", 3, "'in' needs an attribute"),
    ("job", "x like y", 3, "'like' needs an attribute"),
    ("job", "jid=abc", 5, 'jid is an integer: "abc" is not one'),
    ("job", "jid=1.5", 5, "jid is an integer"),
    ("job", "jid in [1 x]", 11, 'jid is an integer: "x" is not one'),
    ("job", "jid = 9223372036854775808", 7, "out of range for jid"),
    ("task", "tid = 2147483648", 7, "out of range for tid"),
    ("job", "priority > high", 12, 'priority is a number: "high" is not one'),
    ("job", "spooltime > yesterday", 13, '"yesterday" is not a time'),
    ("job", "spooltime > 2h", 13, "a relative time needs a sign"),
    ("job", "spooltime > 2/30", 13, "no day 30 in month 2"),
    ("job", "elapsedsecs > 2y", 15, '"2y" is not a duration'),
    ("blade", "availmemory < 1X", 15, '"1X" is not a size'),
    ("job", "serialsubtasks = maybe", 18, "serialsubtasks is true or false"),
    ("job", "serialsubtasks < 1", 16, "serialsubtasks cannot be ordered"),
    ("blade", "bladeid = abc", 11, "bladeid is a UUID"),
    ("job", "dirmap = nope", 10, "dirmap is JSON: \"nope\" is not JSON"),
    ("job", "dirmap > 1", 8, "cannot be ordered"),
    ("job", "dirmap = NaN", 10, "is not JSON"),
    ("job", "dirmap = '[1, Infinity]'", 10, "is not JSON"),
    ("job", r"""dirmap = '"\u0000"'""", 10, "is not JSON"),
    ("job", r"""dirmap = '{"\udc00": 1}'""", 10, "is not JSON"),
    ("job", "tags = prman", 6, "tags is a list: test membership with prman in tags"),
    ("job", "tags < [a]", 6, "cannot be ordered"),
    ("job", "owner = [a b]", 9, "a list goes with in, has or like"),
    ("job", "tags in [a b]", 6, "tags is a list: write tags has [...]"),
    ("job", "[a] in tags", 1, "a list cannot be in a list"),
    ("job", "jid in tags", 5, "cannot be an element of tags"),
    ("job", "owner has [a]", 7, "has needs a list attribute on its left"),
    ("job", "x has [a]", 3, "has needs a list attribute"),
    ("job", "[a] like title", 1, "a list cannot be on the left of like"),
    ("job", "owner = jid", 7, "cannot compare owner (text) with jid (an integer)"),
    ("job", "spooltime < numtasks", 11, "cannot compare spooltime"),
    ("job", "tags < crews", 6, "tags cannot be ordered"),
    ("job", "afterjids has [x]", 16, "afterjids is an integer"),
    ("job", "owner=ann and  bogus", 16, '"bogus" is not an attribute or search alias of jobs'),
    ("blade", "mine", 1, '"mine" is not an attribute or search alias of blades'),
    ("job", "jid = 1 or big", 12, 'in search alias big (owner > jid): cannot compare owner'),
])
def test_type_errors_name_the_column(entity, clause, col, fragment):
    e = E(entity, clause, aliases={"big": "owner > jid"})
    assert e.column == col, str(e)
    assert fragment in e.reason, str(e)


def test_json_values_are_what_jsonb_takes():
    from tractorcli.query.sql import _valid_json

    assert _valid_json('[1, "a", {"b": null}]') and _valid_json('"x"') and _valid_json("{}")
    for bad in ("NaN", "[Infinity]", '"\\u0000"', '{"\\udc00": 1}', '["\\ud800"]', "{", "", "[" * 100000):
        assert not _valid_json(bad), bad
    assert C("job", r"""dirmap = '{"a": "\u00e9"}'""").params == {"p1": '{"a": "\\u00e9"}'}


def test_every_builtin_alias_compiles():
    for key, table in SEARCH_ALIASES.items():
        for name in table:
            C(key, name)
            C(key, f"not {name}")


# --- listings -----------------------------------------------------------------------------


def test_build_select():
    q = build_select("jobs", "owner=ann", columns=["jid", "user", "title", "pri", "spooled"],
                     sortby=["user", "-spooltime"], limit=10, now=NOW)
    assert q.sql == (
        'SELECT job.jid AS "jid", job.owner AS "user", job.title AS "title", job.priority AS "pri", '
        'job.spooltime AS "spooled" FROM jobs AS job WHERE (job.deletetime IS NULL) AND (job.owner = %(p1)s::text) '
        'ORDER BY job.owner, job.spooltime DESC, job.jid LIMIT %(limit)s')
    assert q.params == {"p1": "ann", "limit": 10}
    assert [c.label for c in q.columns] == ["jid", "user", "title", "pri", "spooled"]
    assert build_select("jobs", columns=["jid"], archives=True).sql == \
        'SELECT job.jid AS "jid" FROM jobs AS job WHERE TRUE ORDER BY job.jid'
    q = build_select("tasks", "error", columns=["jid", "tid", "user", "Blade.name"], sortby=["jid", "tid"])
    assert q.compiled.joins == ("job", "invocation", "blade") and "%(limit)s" not in q.sql
    q = build_select("blades", columns=["name"], limit=0)
    assert "blade.heartbeattime > blade.cleartime" in q.sql and "%(limit)s" not in q.sql
    q = build_select("jobs", columns=["owner", "owner", "user"], sortby=["+owner"], distinct=True)
    assert q.sql.startswith('SELECT DISTINCT job.owner AS "owner", job.owner AS "user" FROM')
    assert q.sql.endswith("ORDER BY job.owner")


def test_build_select_refuses_unknown_columns():
    with pytest.raises(ColumnError, match=r'unknown column "ownr" for jobs \(did you mean owner\?\)'):
        build_select("jobs", columns=["ownr"])
    with pytest.raises(ColumnError, match="cannot use Blade"):
        build_select("jobs", columns=["jid"], sortby=["Blade.name"])
    with pytest.raises(ColumnError, match="sort by shown columns"):
        build_select("jobs", columns=["owner"], sortby=["jid"], distinct=True)
    with pytest.raises(ColumnError, match="no columns"):
        build_select("jobs", columns=[])
    for bad in ('jid" FROM pg_user --', "jid;", "job.jid", "1", "Job.jid AS x"):
        with pytest.raises(ColumnError):
            build_select("jobs", columns=[bad])
        with pytest.raises(ColumnError):
            build_select("jobs", columns=["jid"], sortby=[bad])


# --- no input changes the SQL's shape ---------------------------------------------------------------


def _vocabulary() -> set[str]:
    words: set[str] = set()
    texts = [a.sql for e in ENTITIES.values() for a in e.attrs.values()]
    texts += [A._JOINS[k][0] for k in A._JOINS] + [e.live_sql for e in ENTITIES.values()]
    texts += [A.table_sql(e) for e in ENTITIES.values()]
    for t in texts:
        words |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", t))
    words |= {"AND", "OR", "NOT", "coalesce", "false", "true", "FALSE", "TRUE", "ANY", "IS", "NULL", "IN",
              "cardinality", "jsonb", "text", "null"}
    return words


VOCAB = _vocabulary()
_PLACEHOLDER = re.compile(r"%\(p[0-9]+\)s::(?:int4|int8|float8|text|boolean|timestamptz|uuid|jsonb)(?:\[\])?")
_FIXED_LITERALS = ("'{}'::jsonb", "'[]'::jsonb", "'null'::jsonb", "'\"\"'::jsonb", "''")


def assert_fixed_shape(q) -> None:
    """The SQL is made of placeholders, our fixed identifiers and keywords, and nothing else."""
    e = ENTITIES[q.entity]
    assert q.from_sql == " ".join([A.table_sql(e), *(sql for _, sql in A.join_sql(e.key, set(q.joins)))])
    rest = _PLACEHOLDER.sub(" ", q.where_sql)
    for lit in _FIXED_LITERALS:
        rest = rest.replace(lit, " ")
    assert not re.search(r"['\";%$\\]|--|/\*", rest), q.where_sql
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rest))
    assert words <= VOCAB, words - VOCAB
    used = set(re.findall(r"%\((p[0-9]+)\)s", q.where_sql))
    assert used == set(q.params)


PAYLOADS = [
    "'; DROP TABLE jobs; --", '" OR 1=1 --', "1; DELETE FROM jobs", "x' OR 'a'='a", "/* c */ owner", "-- c",
    "\\'; SELECT pg_sleep(10); --", "%(p1)s", "%s", "$1", "{}", "E'\\\\x27'", ")) OR TRUE --", "job.owner",
    "pg_catalog.pg_user", "\\", "''", '""', "a\nb", "; COMMIT; DROP DATABASE tractor", "Robert'); DROP TABLE x;--",
    "%%", "%", "?", "? OR 1=1", "owner", "owner = owner", "1 or 1=1", "`id`", "$(id)", "\u2028", "ann\\",
    "jid) OR (1=1", "UNION SELECT * FROM pg_shadow", "\\x00", "::text", "]", "[", "(", ")",
]
TEMPLATES = [
    ("job", "title = {v}"), ("job", "{v} = title"), ("job", "title != {v}"), ("job", "title like {v}"),
    ("job", "title like [{v}, x]"), ("job", "owner in [{v} x]"), ("job", "{v} in tags"), ("job", "tags has [{v}]"),
    ("job", "tags has {v}"), ("job", "{v} in assignments"), ("job", "assignments has [x {v}]"),
    ("job", "{v} like title"), ("task", "Job.owner = {v} and state = {v}"), ("blade", "name not in [{v}]"),
    ("note", "{v} in itemid"), ("param", "value like {v}"), ("job", "spooltime > {v}"), ("job", "jid = {v}"),
    ("invocation", "Blade.name = {v}"),
]


BENIGN = {"spooltime > {v}": "-1h", "jid = {v}": "1"}


def quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("entity,template", TEMPLATES)
def test_injection_in_values_is_a_parameter_or_an_error(entity, template):
    benign = C(entity, template.format(v=quote(BENIGN.get(template, "x"))))
    for payload in PAYLOADS:
        try:
            q = C(entity, template.format(v=quote(payload)))
        except ClauseError as exc:
            assert exc.column >= 1
            continue
        assert q.where_sql == benign.where_sql and q.from_sql == benign.from_sql  # the same shape
        flat = [p for v in q.params.values() for p in (v if isinstance(v, list) else [v])]
        assert payload in flat
        assert_fixed_shape(q)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_anywhere_unquoted_is_a_literal_or_an_error(payload):
    for entity, template in TEMPLATES + [("job", "{v}"), ("job", "{v} = x"), ("job", "[{v}] = x"),
                                         ("job", "owner = ann and {v}"), ("job", "({v})")]:
        try:
            q = C(entity, template.format(v=payload))
        except ClauseError as exc:
            assert 1 <= exc.column <= len(template.format(v=payload)) + 1
            continue
        assert_fixed_shape(q)


@pytest.mark.parametrize("user", PAYLOADS)
def test_injection_through_the_user_name(user):
    q = C("task", "mine", user=user)
    assert q.params == {"p1": user}
    assert_fixed_shape(q)


# --- property tests ----------------------------------------------------------------------------

ENTITY_KEYS = sorted(ENTITIES)
NAMES = sorted({n for k in ENTITY_KEYS for n in attribute_names(k)}
               | {f"{e.name}.{a}" for e in ENTITIES.values() for a in e.attrs}
               | {"JobLock.owner", "BladeUse.owners"} | {a for t in SEARCH_ALIASES.values() for a in t})
SYMBOLS = ["=", "==", "!=", "<", "<=", ">", ">=", "in", "like", "has", "and", "or", "not", "AND", "Or", "NOT",
           "(", ")", "[", "]", ",", "not in", "not like"]
VALUES = ["0", "1", "-5", "3.5", "12", "99999999999999999999", "ann", '"ann"', "'a b'", '"^fr"', '"(("', "'['",
          "10am", "-2h", "+1d", "3/15|4pm", "3/15/05", "2/30", "now", "2G", "512M", "1h30m", "true", "no",
          str(uuid.UUID(int=7)), '"{}"', '"[1]"', "NaN", '"[Infinity]"', r"""'"\u0000"'""", r"""'{"a": "\ud800"}'""", "x", "render", "prman", "-", ".", "%s", "'%(p1)s'"]
TOKEN = st.sampled_from(NAMES) | st.sampled_from(SYMBOLS) | st.sampled_from(VALUES) | \
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
            max_size=6)
CLAUSES = st.lists(TOKEN, max_size=14).map(" ".join)
OPS = ["=", "==", "!=", "<", "<=", ">", ">="]


def structured(entity: str):
    """Clauses that follow the grammar over `entity`'s attributes (many compile, some mismatch types)."""
    attrs = st.sampled_from(sorted(attribute_names(entity)) + [f"{ENTITIES[entity].name}.{a}"
                                                              for a in ENTITIES[entity].attrs])
    vals = st.sampled_from(VALUES)
    operand = attrs | vals
    atom = st.one_of(
        st.builds("{} {} {}".format, attrs, st.sampled_from(OPS), operand),
        st.builds("{} {} {}".format, vals, st.sampled_from(OPS), attrs),
        st.builds("{} in {}".format, operand, attrs),
        st.builds("{} {}in [{}]".format, attrs, st.sampled_from(["", "not "]),
                  st.lists(vals, max_size=3).map(", ".join)),
        st.builds("{} {}like {}".format, attrs, st.sampled_from(["", "not "]), vals | attrs),
        st.builds("{} like [{}]".format, attrs, st.lists(vals, max_size=3).map(" ".join)),
        st.builds("{} has [{}]".format, attrs, st.lists(vals, max_size=3).map(" ".join)),
        st.builds("{} has {}".format, attrs, operand),
        attrs, st.sampled_from(sorted(SEARCH_ALIASES[entity]) or ["x"]),
    )
    return st.recursive(atom, lambda c: st.one_of(
        st.builds("{} and {}".format, c, c), st.builds("{} or {}".format, c, c),
        st.builds("not {}".format, c), st.builds("({})".format, c)), max_leaves=6)


STRUCTURED = st.one_of(*(st.tuples(st.just(e), structured(e)) for e in ENTITY_KEYS))


def compile_or_error(entity: str, clause: str):
    try:
        q = C(entity, clause)
    except ClauseError as exc:
        assert 1 <= exc.column <= len(clause) + 1, (clause, exc.column)
        assert "\n" not in str(exc)
        return None
    assert_fixed_shape(q)
    return q


@given(st.sampled_from(ENTITY_KEYS), CLAUSES)
@settings(max_examples=600, deadline=None)
def test_random_token_streams_compile_or_fail_with_a_column(entity, clause):
    compile_or_error(entity, clause)


@given(STRUCTURED)
@settings(max_examples=600, deadline=None)
def test_grammatical_clauses_compile_or_fail_with_a_column(case):
    compile_or_error(*case)


@given(st.sampled_from(ENTITY_KEYS), st.text(max_size=40))
@settings(max_examples=400, deadline=None)
def test_random_text_compiles_or_fails_with_a_column(entity, clause):
    compile_or_error(entity, clause)


# --- real queries on a real job database -------------------------------------------------------------


@pytest.fixture
def farm(db_settings):
    """Jobs of ann and bob, one paused, one archived, one with an Instance; blade b1 ran
    and runs some tasks, b2 is not up, b3 is delisted."""
    from tractorcli.db import dispatch as d
    from tractorcli.db.connection import connect
    from tractorcli.db.spool import spool_job
    from tractorcli.jobs.model import Command, Instance, Job, Task, resolve

    def cmd(*argv):
        return Command(tuple(argv))

    with connect(db_settings, autocommit=True) as conn:
        def spool(job, owner, **kw):
            return spool_job(conn, resolve(job), owner=owner, spoolhost="ws1", **kw)

        jids = {
            "frames": spool(Job(title="frames", tags=("prman", "linux"), subtasks=(
                Task("f1", cmds=(cmd("render", "1"),)), Task("f2", cmds=(cmd("render", "2"),)),
                Task("f3", cmds=(cmd("render", "3"),)))), "ann"),
            "comp": spool(Job(title="fr comp", tags=("a", "b"), priority=5, subtasks=(
                Task("c1", cmds=(cmd("comp"),)),)), "bob"),
            "light": spool(Job(title="lighting", tags=("a",), subtasks=(Task("l1", cmds=(cmd("light"),)),)),
                           "ann", paused=True),
            "old": spool(Job(title="old", subtasks=(Task("o1", cmds=(cmd("old"),)),)), "ann"),
            "inst": spool(Job(title="inst", subtasks=(
                Task("lib", id="lib", cmds=(cmd("lib"),)),
                Task("user", subtasks=(Instance("lib"),), cmds=(cmd("use"), cmd("use2"))))), "eve",
                paused=True),
        }
        conn.execute("UPDATE jobs SET deletetime = now() WHERE jid = %s", (jids["old"],))
        b1 = d.register(conn, d.BladeInfo(name="b1", numslots=10))
        d.register(conn, d.BladeInfo(name="b2"))
        d.register(conn, d.BladeInfo(name="b3"))
        conn.execute("UPDATE blades SET heartbeattime = now() - interval '1 hour' WHERE name = 'b2'")
        conn.execute("UPDATE blades SET heartbeattime = now() - interval '2 hours', cleartime = now() "
                     "WHERE name = 'b3'")
        conn.execute("UPDATE blades SET availmemory = 0.5 WHERE name = 'b1'")
        svc = d.ServiceCache()
        from tractorcli.service import BladeFacts

        facts = BladeFacts(hostname="b1", profile="default")
        claims = {(c.jid, c.tid): c for c in d.claim(conn, b1, svc.matching(conn, facts, refresh=True), "b1", 10)}
        tid = {(r["jid"], r["title"]): r["tid"] for r in conn.execute("SELECT jid, tid, title FROM tasks")}
        fj = jids["frames"]
        assert set(claims) == {(fj, tid[fj, "f1"]), (fj, tid[fj, "f2"]), (fj, tid[fj, "f3"]),
                               (jids["comp"], tid[jids["comp"], "c1"])}
        d.finish(conn, claims[fj, tid[fj, "f1"]], b1, 1, real=2.0)
        d.finish(conn, claims[fj, tid[fj, "f2"]], b1, 0, real=7200.0)
        conn.execute("INSERT INTO notes (noteuser, notetext, itemtype, itemid) VALUES "
                     "('ann', 'look at f1', 'job', ARRAY[%s::text]), ('bob', 'hi', 'blade', '{b1}')", (fj,))
        yield conn, jids, tid


def rows(conn, entity, clause, cols, *, sortby=(), user="ann", **kw):
    q = build_select(entity, clause, columns=cols, sortby=sortby or cols, user=user, **kw)
    assert_fixed_shape(q.compiled)
    return [tuple(r.values()) if len(r) > 1 else next(iter(r.values())) for r in conn.execute(q.sql, q.params)]


def test_real_job_searches(farm):
    conn, j, _ = farm
    F, B, L, O, I = j["frames"], j["comp"], j["light"], j["old"], j["inst"]

    def jobs(clause, **kw):
        return rows(conn, "jobs", clause, ["jid"], **kw)

    assert jobs("") == sorted([F, B, L, I])
    assert jobs("", archives=True) == sorted([F, B, L, O, I])
    assert jobs("owner=ann and error") == [F]
    assert jobs("mine") == [F, L]
    assert jobs("mine", user="bob") == [B]
    assert jobs("mine", archives=True) == [F, L, O]
    assert jobs("deleted", archives=True) == [O]
    assert jobs("deleted > -1h", archives=True) == [O]
    assert jobs('title like "^fr"') == [F, B]
    assert jobs("title like [^fr ^light]") == [F, B, L]
    assert jobs("title like owner") == []
    assert jobs("prman in tags") == [F]
    assert jobs("tags has [a, b]") == [B]
    assert jobs("tags has a") == [B, L]
    assert jobs("tags not has a") == [F, I]
    assert jobs("tags like lin") == [F]
    assert jobs("spooltime > -1h") == sorted([F, B, L, I])
    assert jobs("spooltime < -1h") == []
    assert jobs("spooltime > 10/10/2000 and spooltime < +1d") == sorted([F, B, L, I])
    assert jobs("paused") == [L, I]
    assert jobs("not paused") == [F, B]
    assert jobs("delayed") == []
    assert jobs("active") == [F, B]
    assert jobs("active and not error") == [B]
    assert jobs("error or done") == [F]
    assert jobs("ready") == [L, I]
    assert jobs("pri > 2") == [B]
    assert jobs("priority >= 1 and priority <= 1") == [F, L, I]
    assert jobs("user in [bob carl]") == [B]
    assert jobs("Job.owner = ann") == [F, L]
    assert jobs("numtasks = 3 and numdone = 1 and numerror = 1 and numactive = 1") == [F]
    assert jobs(f"jid in [{F} {B}]") == [F, B]
    assert jobs(clause_from_words("jobs", [str(B), str(L)])) == [B, L]
    assert jobs("not lockowner = x") == sorted([F, B, L, I])  # NULL lock owners count as not x
    assert jobs("lockowner != x") == []  # ... but a NULL is not "!= x"
    assert jobs("1 in afterjids") == []
    assert jobs("file like x or cwd like x") == []
    assert rows(conn, "jobs", "", ["user", "title", "pri", "numerror"], sortby=["-pri", "title"]) == [
        ("bob", "fr comp", 5.0, 0), ("ann", "frames", 1.0, 1), ("eve", "inst", 1.0, 0), ("ann", "lighting", 1.0, 0)]
    assert rows(conn, "jobs", "", ["user"], sortby=["user"], distinct=True) == ["ann", "bob", "eve"]
    assert rows(conn, "jobs", "", ["jid"], limit=2) == sorted([F, B, L, I])[:2]


def test_real_task_command_invocation_searches(farm):
    conn, j, tid = farm
    F, B, L, I = j["frames"], j["comp"], j["light"], j["inst"]
    f1, f2, f3, c1, l1 = tid[F, "f1"], tid[F, "f2"], tid[F, "f3"], tid[B, "c1"], tid[L, "l1"]

    def tasks(clause, **kw):
        return rows(conn, "tasks", clause, ["jid", "tid"], **kw)

    assert tasks(f"jid={L} and state=ready") == [(L, l1)]
    assert tasks(f"jid={F} and error") == [(F, f1)]
    assert tasks("error or done") == [(F, f1), (F, f2)]
    assert tasks("Job.owner=ann and active") == [(F, f3)]
    assert tasks("owner=bob") == [(B, c1)]
    assert tasks("Blade.name = b1 and active") == [(F, f3), (B, c1)]
    assert tasks("Blade.name = b1") == [(F, f1), (F, f2), (F, f3), (B, c1)]
    assert tasks("not Blade.name = b1 and owner = ann") == [(L, l1)]
    assert tasks("rcode = 1") == [(F, f1)]
    assert tasks("title like ^f and not state = done") == [(F, f1), (F, f3)]
    assert tasks("Job.title like comp") == [(B, c1)]
    assert tasks(clause_from_words("tasks", [str(F), str(f1), str(f3)])) == [(F, f1), (F, f3)]
    assert tasks("mine and statetime > -1h and Job.pausetime") == [(L, l1)]
    lib, user = tid[I, "lib"], tid[I, "user"]
    assert rows(conn, "tasks", f"jid={I}", ["tid", "ptids", "cids"]) == [(lib, [0, user], [1]), (user, [0], [2, 3])]
    assert tasks(f"{user} in ptids") == [(I, lib)]
    assert tasks("cids has [2 3]") == [(I, user)]
    assert rows(conn, "tasks", f"jid={F}", ["title", "user", "state", "Blade.name"], sortby=["tid"]) == [
        ("f1", "ann", "error", "b1"), ("f2", "ann", "done", "b1"), ("f3", "ann", "active", "b1")]

    def cmds(clause, **kw):
        return rows(conn, "commands", clause, ["jid", "cid"], **kw)

    assert cmds("render in argv") == [(F, 1), (F, 2), (F, 3)]
    assert cmds("argv has [render, 2]") == [(F, 2)]
    assert cmds("argv like render and error") == [(F, 1)]
    assert cmds("done") == [(F, 2)]
    assert cmds("title = l1 and ready") == [(L, 1)]
    assert cmds("Blade.name = b1 and active") == [(F, 3), (B, 1)]
    assert cmds(clause_from_words("commands", [str(I), "2", "3"])) == [(I, 2), (I, 3)]

    def invos(clause, **kw):
        return rows(conn, "invocations", clause, ["jid", "cid", "iid"], **kw)

    assert invos("") == [(F, 1, 1), (F, 2, 1), (F, 3, 1), (B, 1, 1)]
    assert invos("rcode != 0") == [(F, 1, 1)]
    assert invos("not rcode = 0") == [(F, 1, 1), (F, 3, 1), (B, 1, 1)]
    assert invos("rcode = 0 and elapsedreal > 1h and wtime <= 2h") == [(F, 2, 1)]
    assert invos("active") == [(F, 3, 1), (B, 1, 1)]
    assert invos("mine and stoptime") == [(F, 1, 1), (F, 2, 1)]
    assert invos("Blade.name = b1 and blade = b1 and current and starttime > -1h") == invos("")
    assert invos("user = bob and title = c1 and argv like comp") == [(B, 1, 1)]
    assert invos(clause_from_words("invocations", [str(F), "2"])) == [(F, 2, 1)]


def test_real_blade_param_note_searches(farm):
    conn, j, _ = farm

    def blades(clause, **kw):
        return rows(conn, "blades", clause, ["name"], **kw)

    assert blades("") == ["b1", "b2"]  # registered ones
    assert blades("", archives=True) == ["b1", "b2", "b3"]
    assert blades("up") == ["b1"]
    assert blades("not up", archives=True) == ["b2", "b3"]
    assert blades("registered", archives=True) == ["b1", "b2"]
    assert blades("availmemory < 1G and mem > 256M") == ["b1"]
    assert blades("taskcount = 2 and slotsinuse = 2") == ["b1"]
    assert blades("ann in owners and owners has [ann bob]") == ["b1"]
    assert blades("heartbeattime < -30m") == ["b2"]
    assert blades("name like ^b and not nimby") == ["b1", "b2"]
    assert rows(conn, "params", "name = jidcounter", ["value"]) == [str(j["inst"])]
    assert rows(conn, "params", "name like schema", ["name"]) == ["schema-checksum", "schema-version"]
    assert rows(conn, "notes", "mine", ["notetext"]) == ["look at f1"]
    assert rows(conn, "notes", f"itemtype=job and {j['frames']} in itemid", ["noteuser"]) == ["ann"]
    assert rows(conn, "notes", "b1 in itemid and notetime > -1h", ["noteuser"]) == ["bob"]


def test_a_bad_regular_expression_is_bad_input(farm):
    import psycopg

    from tractorcli.errors import BadInput
    from tractorcli.query import database_error

    conn, _, _ = farm
    q = build_select("jobs", "title like '(['", columns=["jid"])
    with pytest.raises(psycopg.Error) as info:
        conn.execute(q.sql, q.params)
    e = database_error(info.value, "title like '(['")
    assert isinstance(e, BadInput) and e.message.startswith('clause "title like \'([\'": invalid regular expression')
    assert database_error(ValueError("x"), "") is None
    # and the one translation of database errors says so too (exit 11, not a generic database error)
    from tractorcli.db.connection import translate

    t = translate(info.value)
    assert isinstance(t, BadInput) and t.message.startswith("invalid regular expression")


def test_default_listings_of_every_entity_run(farm):
    conn, _, _ = farm
    defaults = {
        "jobs": (["jid", "user", "title", "pri", "numblocked", "numready", "numactive", "numerror", "numdone",
                  "spooled"], ["user", "spooltime"]),
        "tasks": (["jid", "tid", "user", "title", "state", "statetime", "Blade.name"], ["jid", "tid"]),
        "commands": (["jid", "tid", "cid", "argv"], ["jid", "cid"]),
        "invocations": (["jid", "tid", "cid", "iid", "Blade.name", "starttime", "stoptime", "rcode", "argv"],
                        ["jid", "tid", "cid", "iid"]),
        "blades": (["name", "port", "profile", "load", "availdisk", "availmem", "starttime", "nimby"],
                   ["name", "ipaddr"]),
        "params": (["name", "value"], ["name"]),
        "notes": (["notetime", "noteuser", "notetype", "itemtype", "itemid", "notetext"], ["notetime"]),
    }
    for entity, (cols, sort) in defaults.items():
        q = build_select(entity, "", columns=cols, sortby=sort, limit=100)
        got = conn.execute(q.sql, q.params).fetchall()
        assert got and list(got[0]) == cols, entity
    every = {key: sorted(ENTITIES[key].attrs) for key in ENTITIES}
    for key, cols in every.items():  # every attribute can be selected, sorted and tested
        q = build_select(key, " or ".join(cols), columns=cols, sortby=cols, archives=True)
        conn.execute(q.sql, q.params).fetchall()


def test_injection_attempts_run_as_plain_values(farm):
    conn, _, _ = farm
    before = conn.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"]
    for entity, template in TEMPLATES:
        for payload in PAYLOADS:
            try:
                q = build_select(entity, template.format(v=quote(payload)), columns=[ENTITIES[A.entity(entity).key]
                                                                                       .keys[0]], now=NOW)
            except ClauseError:
                continue
            try:
                conn.execute(q.sql, q.params).fetchall()
            except Exception as exc:  # noqa: BLE001 - only a bad regular expression may fail
                import psycopg.errors as pe

                assert isinstance(exc, pe.InvalidRegularExpression), (template, payload, exc)
    assert conn.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"] == before


@given(case=STRUCTURED | st.tuples(st.sampled_from(ENTITY_KEYS), CLAUSES))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_clauses_that_compile_run(farm, case):
    import psycopg.errors as pe

    conn, _, _ = farm
    q = compile_or_error(*case)
    if q is None:
        return
    try:
        conn.execute(f"SELECT count(*) FROM {q.from_sql} WHERE {q.where_sql}", q.params).fetchone()
    except pe.InvalidRegularExpression:
        pass
