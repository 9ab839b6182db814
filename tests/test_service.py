"""Service-key expressions: grammar, evaluation, errors, canonical text, explain, combine."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import example, given, settings, strategies as st

from tractorcli.errors import BadInput
from tractorcli.service import (
    MAX_NESTING, And, BladeFacts, Cmp, Key, Not, Or, Pattern, ServiceExprError, canonical, combine,
    explain, keys_excluded, keys_needed, matches, parse,
)

BLADE = BladeFacts(
    provides=frozenset({"PixarRender", "Linux", "BigIron"}),
    hostname="rack-15.studio.example.com",
    addresses=("192.168.0.7", "fe80::1"),
    profile="LinuxFarm",
    metrics={"disk": 30.5, "mem": 1.5, "nCPUs": 8, "cpu": 0.25, "sa": 3},
)


def m(expr: str, blade: BladeFacts = BLADE) -> bool:
    e = parse(expr)
    result = e.evaluate(blade)
    # the compiled closure and the tree agree
    assert result == (True if e.node is None else e.node.evaluate(blade))
    return result


# --- keys -------------------------------------------------------------------------------


def test_plain_keys_case_insensitive():
    assert m("PixarRender")
    assert m("pixarrender")
    assert m("PIXARRENDER")
    assert not m("Desktops")


def test_implicit_keys_host_short_host_addresses_profile():
    for key in ("rack-15.studio.example.com", "rack-15", "RACK-15", "192.168.0.7", "fe80::1", "linuxfarm"):
        assert m(key), key
    assert not m("studio")
    assert not m("192.168.0.8")


def test_ip_hostname_has_no_short_name():
    b = BladeFacts(hostname="10.1.2.3")
    assert m("10.1.2.3", b)
    assert not m('"10"', b)


def test_key_characters():
    b = BladeFacts({"a_b", "x:y", "v1.2-beta", "3dbox", "rack-15", "Ünïcode"})
    for key in ("a_b", "x:y", "v1.2-beta", "3dbox", "rack-15", "ünïcode", "ÜNÏCODE"):
        assert m(key, b), key


def test_blade_facts_normalise():
    b = BladeFacts(["A", "", "b"], hostname=" Host.X ", addresses="1.2.3.4", profile="P",
                   metrics={"NCPUS": 4, "disk": None, "mem": "x"})
    assert b.provides == frozenset({"a", "b"})
    assert b.keys == frozenset({"a", "b", "host.x", "host", "1.2.3.4", "p"})
    assert b.metrics["ncpus"] == 4.0
    assert math.isnan(b.metrics["disk"]) and math.isnan(b.metrics["mem"])


# --- patterns ---------------------------------------------------------------------------


def test_patterns_star_and_question_mark():
    assert m('"rack-1?"')  # host short name rack-15
    assert m("'rack-*'")
    assert m('"192.168.0.*"')
    assert not m('"192.168.1.*"')
    assert m('"*render"')
    assert m('"P?x*R*"')  # case-insensitive
    assert not m('"rack-1?5"')
    assert m('"*"')  # any key at all
    assert not m('"*"', BladeFacts())


def test_pattern_question_mark_is_exactly_one_character():
    b = BladeFacts({"ab"})
    assert m('"a?"', b) and not m('"a??"', b) and not m('"?"', b)


def test_pattern_brackets_and_dots_are_literal():
    b = BladeFacts({"a[1]", "axb"})
    assert m('"a[1]"', b) and m('"a[*"', b)
    assert not m('"a.b"', b)


def test_quoted_string_without_wildcards_is_an_exact_key():
    assert isinstance(parse('"Linux"').node, Key)
    assert m('"Linux"') and not m('"Lin"')
    b = BladeFacts({"my host", "it's"})
    assert m('"my host"', b) and m('"it\'s"', b)
    assert canonical('"Linux"') == "linux"
    assert canonical("'my host'") == '"my host"'


def test_quotes_may_hold_the_other_quote_and_operators():
    b = BladeFacts({'say "hi"', "a&&b"})
    assert m("'say \"hi\"'", b)
    assert m('"a&&b"', b)
    assert canonical("'say \"hi\"'") == "'say \"hi\"'"


# --- operators and precedence -------------------------------------------------------------


def test_and_comma_or_not():
    assert m("PixarRender,Linux")
    assert m("PixarRender && Linux")
    assert not m("PixarRender,Windows")
    assert m("Windows || Linux")
    assert not m("Windows || OSX")
    assert m("!Windows")
    assert not m("!Linux")
    assert m("PixarRender && !Desktops")
    assert m("PixarRender && (Linux || OSX)")
    assert m("! ! Linux") and m("!!!Windows")


def test_precedence_and_binds_tighter_than_or():
    assert parse("a || b && c").node == Or((Key("a"), And((Key("b"), Key("c")))))
    assert parse("a && b || c").node == Or((And((Key("a"), Key("b"))), Key("c")))
    assert parse("a || b, c").node == Or((Key("a"), And((Key("b"), Key("c")))))
    only_a = BladeFacts({"a"})
    assert m("a || b && c", only_a)
    assert not m("(a || b) && c", only_a)


def test_precedence_not_binds_tightest():
    assert parse("!a, b").node == And((Not(Key("a")), Key("b")))
    assert parse("!(a, b)").node == Not(And((Key("a"), Key("b"))))
    assert m("!a, b", BladeFacts({"b"}))
    assert not m("!a, b", BladeFacts({"a", "b"}))
    assert m("!(a, b)", BladeFacts({"b"}))


def test_comma_and_ampersands_are_the_same_operator():
    assert parse("a, b && c").node == parse("a && b, c").node == And((Key("a"), Key("b"), Key("c")))


def test_chains_are_flat():
    node = parse(" || ".join(f"k{i}" for i in range(50))).node
    assert isinstance(node, Or) and len(node.items) == 50


def test_whitespace_is_optional_and_free():
    assert parse("a&&b||!c").node == parse("  a &&\tb\n|| ! c ").node
    assert parse("@.disk>5&&linux").node == parse("@.disk > 5 && linux").node


# --- metrics, numbers, arithmetic, comparisons ------------------------------------------------


@pytest.mark.parametrize("expr, expected", [
    ("@.disk > 5", True),
    ("@.disk > 30.5", False),
    ("@.disk >= 30.5", True),
    ("@.mem < 2", True),
    ("@.mem <= 1.5", True),
    ("@.nCPUs == 8", True),
    ("@.ncpus != 8", False),
    ("@.NCPUS >= 4", True),
    ("@.cpu < .75", True),
    ("@.sa > 2", True),
    ("PixarRender && ((1024 * @.mem) > 2048)", False),
    ("1024 * @.mem > 1024", True),
    ("(@.sa > 2) && (PixarRender || PixarNRM)", True),
    ("@.disk - 30 == 0.5", True),
    ("@.disk-30 == .5", True),
    ("@.sa * 2 + 1 == 7", True),
    ("1 + @.sa * 2 == 7", True),
    ("(1 + @.sa) * 2 == 8", True),
    ("@.nCPUs / 2 / 2 == 2", True),
    ("@.nCPUs - 2 - 2 == 4", True),
    ("-@.sa == -3", True),
    ("- -@.sa == 3", True),
    ("@.sa - -1 == 4", True),
    ("10-5 == 5", True),
    ("2*3 > 5", True),
    ("007.50 == 7.5", True),
    ("5. == 5", True),
    ("@.disk / 0 > 1000000", True),
    ("-@.disk / 0 < -1000000", True),
    ("0 / 0 == 0 / 0", False),
    ("0 / 0 != 0", True),
])
def test_metrics_and_arithmetic(expr, expected):
    assert m(expr) is expected


def test_unknown_metric_value_makes_comparisons_false():
    b = BladeFacts({"linux"})
    assert not m("@.disk > 5", b)
    assert not m("@.disk <= 5", b)
    assert not m("@.disk == @.disk", b)
    assert m("@.disk != 5", b)
    assert m("!(@.disk > 5)", b)


def test_hyphen_rule_keys_versus_subtraction():
    assert parse("rack-15").node == Key("rack-15")
    assert parse("render-01.local").node == Key("render-01.local")
    assert isinstance(parse("10-5 > 1").node, Cmp)
    # a word of digits, dots and colons with a hyphen is cut there: "192.168.0.1" then "- 5",
    # arithmetic on a key
    with pytest.raises(ServiceExprError, match="'-' needs numbers, found the key 192.168.0.1"):
        parse("192.168.0.1-5 > 1")
    assert parse('"192.168.0.1-5"').node == Key("192.168.0.1-5")


def test_huge_numbers_do_not_raise():
    assert m("@.disk < " + "9" * 400)
    assert not m("@.disk > " + "9" * 400 + " * 10")


# --- the empty expression -----------------------------------------------------------------


@pytest.mark.parametrize("expr", ["", "   ", "\t\n"])
def test_empty_expression_matches_every_blade(expr):
    assert parse(expr).node is None
    assert matches(expr, BladeFacts())
    assert canonical(expr) == ""
    assert keys_needed(expr) == ()
    assert explain(expr, BLADE).matches


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("expr, column, fragment", [
    ("linux && (", 11, "expected a key, a pattern or '('"),
    ("linux &&", 9, "expected a key, a pattern or '('"),
    (",linux", 1, "expected a key, a pattern or '(', found ','"),
    ("linux,", 7, "expected a key"),
    ("linux osx", 7, "expected an operator or the end, found the key 'osx'"),
    ("(linux osx)", 8, "expected an operator or ')'"),
    ("(linux", 7, "expected ')' to close the '(' at column 1"),
    ("a && ((b)", 10, "to close the '(' at column 6"),
    ("linux)", 6, "')' without a matching '('"),
    ("()", 2, "empty parentheses"),
    ("a & b", 3, "did you mean '&&'"),
    ("a | b", 3, "did you mean '||'"),
    ("@.disk = 5", 8, "did you mean '=='"),
    ("@.disk === 5", 10, "did you mean '=='"),
    ("rack-1*", 1, 'write "rack-1*"'),
    ("linux || rack-*", 10, 'write "rack-*"'),
    ("a ? b", 3, "quoted pattern"),
    ("*linux", 1, "found '*'"),
    ('"abc', 1, "not closed"),
    ("linux || 'abc", 10, "not closed"),
    ('""', 1, "empty pattern"),
    ("@.foo > 1", 1, "unknown blade metric '@.foo'"),
    ("@disk > 1", 1, "expected a blade metric"),
    ("a && @ > 1", 6, "expected a blade metric"),
    ("@.disk", 1, "needs a condition, found the number @.disk"),
    ("@.sa && linux", 1, "'&&' needs a condition"),
    ("linux || 5", 10, "'||' needs a condition, found the number 5"),
    ("linux, 1 + 2", 8, "',' needs a condition"),
    ("!@.disk > 5", 2, "'!' needs a condition"),
    ("1 < @.cpu < 2", 11, "comparisons do not chain"),
    ("linux + 1 > 2", 1, "'+' needs numbers, found the key linux"),
    ("@.disk > linux", 10, "'>' needs numbers, found the key linux"),
    ("@.disk > \"a*\"", 10, "found the pattern \"a*\""),
    ("@.disk > (a || b)", 10, "found the condition a || b"),
    ("-linux", 2, "'-' needs numbers"),
    ("@.disk >", 9, "expected a number, a blade metric or '('"),
    ("@.disk > (", 11, "expected a number, a blade metric or '('"),
    ("@.disk > 5GB", 10, "needs numbers, found the key 5gb"),
    ("linux $ osx", 7, "unexpected character '$'"),
    ("linux\x00", 6, "unexpected character U+0000"),
    ("+5 > 1", 1, "found '+'"),
])
def test_errors_name_column_and_expression(expr, column, fragment):
    with pytest.raises(ServiceExprError) as info:
        parse(expr)
    exc = info.value
    assert isinstance(exc, BadInput)
    assert exc.column == column, str(exc)
    assert fragment in str(exc), str(exc)
    assert str(exc).startswith("service key expression \"")
    assert f": column {column}: " in str(exc)
    assert "\n" not in str(exc)


def test_error_message_shows_the_expression_on_one_line():
    with pytest.raises(ServiceExprError) as info:
        parse('linux &&\n"x')
    assert str(info.value).startswith('service key expression "linux &&\\n\\"x": column 10: ')


def test_nesting_limit():
    ok = "(" * MAX_NESTING + "a" + ")" * MAX_NESTING
    assert m(ok, BladeFacts({"a"}))
    with pytest.raises(ServiceExprError, match="nested more than"):
        parse("(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1))
    with pytest.raises(ServiceExprError):
        parse("(" * 100000)


def test_long_inputs_parse_in_linear_time_without_recursion():
    n = 5000
    started = time.perf_counter()
    assert m(" && ".join(f"k{i}" for i in range(n)), BladeFacts({f"k{i}" for i in range(n)}))
    assert m("!" * n + "a", BladeFacts({"a"}))  # even number of '!'
    assert m("-" * n + "@.sa == 3")
    assert m("@.sa" + " + 0" * n + " == 3")
    assert m("@.sa" + " * 1" * n + " == 3")
    assert canonical("(" + " || ".join(f"k{i}" for i in range(n)) + "), x").startswith("x && (k0 || ")
    assert time.perf_counter() - started < 3


# --- property tests -----------------------------------------------------------------------

_PIECES = st.sampled_from(list("ab1_.:-!&|,()\"'*?@<>=+/ \t\n$5é\x00") + ["@.disk", "@.sa", "&&", "||", "=="])


@given(st.one_of(st.lists(_PIECES, max_size=20).map("".join), st.text(max_size=30)))
@settings(max_examples=300, deadline=None)
@example('a"\n"')  # a quoted newline inside the reason once made the message two lines
def test_any_string_parses_or_raises_our_error(text):
    try:
        e = parse(text)
    except ServiceExprError as exc:
        assert 1 <= exc.column <= len(text) + 1
        assert "\n" not in str(exc)
        assert isinstance(exc, BadInput)
    else:
        assert canonical(text) == e.canonical
        e.evaluate(BLADE)
        explain(e, BLADE)
        keys_needed(e)


KEY_NAMES = ["linux", "PixarRender", "osx", "rack-15", "192.168.0.7", "host1.example.com", "a_b", "x:y", "3d"]
ALL_KEYS = [k.lower() for k in KEY_NAMES] + ["render", "rack-16", "192.168.1.9", "my host"]


def _spaced(*parts: str):
    return st.lists(st.sampled_from(["", " ", "  "]), min_size=len(parts) - 1, max_size=len(parts) - 1).map(
        lambda seps: parts[0] + "".join(s + p for s, p in zip(seps, parts[1:])))


def _space_around(left: str, op: str, right: str):
    return st.sampled_from(["", " "]).map(lambda s: f"{left}{s}{op}{s}{right}")


keys = st.sampled_from(KEY_NAMES).flatmap(
    lambda k: st.sampled_from([k, k.upper(), k.lower(), f'"{k}"', f"'{k}'"]))
patterns = st.sampled_from(['"rack-*"', "'192.168.0.*'", '"?sx"', '"*"', '"HOST?.*"', '"*linux*"', '"my *"', '"**x"'])
numbers = st.one_of(st.sampled_from(["0", "1", "2.5", ".75", "1024", "007", "5.", "0.0"]),
                    st.integers(0, 10**6).map(str))
metrics = st.sampled_from(["@.disk", "@.mem", "@.nCPUs", "@.ncpus", "@.cpu", "@.sa"])

numexprs = st.recursive(
    st.one_of(numbers, metrics),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from("+-*/"), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        inner.map(lambda s: f"({s})"),
        inner.map(lambda s: f"-({s})"),
        metrics.map(lambda s: f"-{s}"),
    ),
    max_leaves=6,
)
comparisons = st.tuples(numexprs, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), numexprs).flatmap(
    lambda t: _space_around(*t))
boolexprs = st.recursive(
    st.one_of(keys, patterns, comparisons, keys.map(lambda k: "!" + k)),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["&&", ",", "||"]), inner).flatmap(lambda t: _space_around(*t)),
        inner.map(lambda s: f"({s})"),
        inner.map(lambda s: f"!({s})"),
    ),
    max_leaves=8,
)
blades = st.builds(
    BladeFacts,
    provides=st.frozensets(st.sampled_from(ALL_KEYS), max_size=6),
    hostname=st.sampled_from(["", "host1.example.com", "rack-15", "10.0.0.1"]),
    addresses=st.lists(st.sampled_from(["192.168.0.7", "192.168.1.9", "fe80::1"]), max_size=2).map(tuple),
    profile=st.sampled_from(["", "Linux", "OSX", "my host"]),
    metrics=st.dictionaries(st.sampled_from(["disk", "mem", "nCPUs", "cpu", "sa"]),
                            st.one_of(st.integers(-5, 2000), st.floats(-1e6, 1e6), st.just(0.0)), max_size=5),
)


@given(boolexprs, st.lists(blades, min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_canonical_is_equivalent_and_idempotent(text, some_blades):
    e = parse(text)
    c = canonical(text)
    ce = parse(c)
    assert canonical(c) == c
    for b in some_blades:
        assert e.evaluate(b) == ce.evaluate(b) == e.node.evaluate(b) == ce.node.evaluate(b), (text, c)


@given(boolexprs, blades)
@settings(max_examples=100, deadline=None)
def test_explain_agrees_with_evaluate(text, blade):
    x = explain(text, blade)
    assert x.matches == matches(text, blade)
    assert x.reasons
    assert x.lines[0].startswith("matches: " if x.matches else "does not match: ")
    for k in x.missing:  # reported missing keys are really missing
        assert k not in blade.keys
    for k in x.unwanted:
        assert k in blade.keys
    if not x.matches:
        assert x.missing or x.unwanted or x.failed or any("nothing it provides matches" in r or "excluded" in r
                                                          for r in x.reasons)


@given(boolexprs, blades)
@settings(max_examples=100, deadline=None)
def test_needed_and_excluded_keys_are_necessary(text, blade):
    needed, excluded = keys_needed(text), keys_excluded(text)
    if matches(text, blade):
        assert all(k in blade.keys for k in needed)
        assert not any(k in blade.keys for k in excluded)


# --- canonical text ------------------------------------------------------------------------


@pytest.mark.parametrize("expr, expected", [
    ("PixarRender,BigIron", "bigiron && pixarrender"),
    ("BigIron && PixarRender", "bigiron && pixarrender"),
    ("a && a && (a)", "a"),
    ("(a && b) && (c && (d))", "a && b && c && d"),
    ("a || (b || c)", "a || b || c"),
    ("(a || b) && c", "c && (a || b)"),
    ("a || b && c", "a || b && c"),
    ("!!a", "a"),
    ("!(!a)", "a"),
    ("!(a || b)", "!(a || b)"),
    ("!darth, 'rack-*', @.disk > 5, x, (y || z)", 'x && "rack-*" && @.disk > 5 && (y || z) && !darth'),
    ("5 < @.disk", "@.disk > 5"),
    ("2048 <= 1024 * @.mem", "1024 * @.mem >= 2048"),
    ("((1024 * @.mem) > 2048)", "1024 * @.mem > 2048"),
    ("@.cpu<.75", "@.cpu < 0.75"),
    ("@.disk > 007.50", "@.disk > 7.5"),
    ("@.disk > -0", "@.disk > 0"),
    ("@.disk > - - 5", "@.disk > 5"),
    ("@.disk > -(5)", "@.disk > -5"),
    ("(@.disk + 1) + 2 > 0", "@.disk + 1 + 2 > 0"),
    ("@.disk + (1 + 2) > 0", "@.disk + (1 + 2) > 0"),
    ("@.disk - (1 - 2) > 0", "@.disk - (1 - 2) > 0"),
    ("(@.disk + 1) * 2 > 0", "(@.disk + 1) * 2 > 0"),
    ("@.disk * (2 / 3) > 0", "@.disk * (2 / 3) > 0"),
    ("-(@.disk + 1) > 0", "-(@.disk + 1) > 0"),
    ("@.NCPUS>=4", "@.nCPUs >= 4"),
    ("'Rack-1?' || \"RACK-1?\"", '"rack-1?"'),
    ('"a**b"', '"a*b"'),
    ('"10"', '"10"'),
    ('"10-5"', '"10-5"'),
    ("Linux", "linux"),
])
def test_canonical(expr, expected):
    assert canonical(expr) == expected
    assert canonical(expected) == expected


# --- keys_needed ---------------------------------------------------------------------------


@pytest.mark.parametrize("expr, needed, excluded", [
    ("PixarRender", ("pixarrender",), ()),
    ("PixarRender,Linux && !Irix", ("pixarrender", "linux"), ("irix",)),
    ("pixarrender && (linux || osx) && !darth", ("pixarrender",), ("darth",)),
    ("(a && b) || (a && c)", ("a",), ()),
    ("!(!a || b)", ("a",), ("b",)),
    ("!(a && b)", (), ()),
    ("!(a || b)", (), ("a", "b")),
    ('"Linux" && "rack-*" && @.disk > 5', ("linux",), ()),
    ("@.sa > 0", (), ()),
])
def test_keys_needed_and_excluded(expr, needed, excluded):
    assert keys_needed(expr) == needed
    assert keys_excluded(expr) == excluded


# --- combine -------------------------------------------------------------------------------


def test_combine_ands_command_job_spool_key_and_avoid():
    assert combine("PixarRender", "Linux", ["darth"], "!Irix") == "linux && pixarrender && !darth && !irix"
    assert combine("PixarRender") == "pixarrender"
    assert combine("", "Linux") == "linux"
    assert combine("", "", (), "") == ""
    assert combine("  ", "", ["", " "]) == ""
    assert combine("a || b", "c") == "c && (a || b)"
    assert combine("a", "a") == "a"
    assert combine("", "", "darth vader") == "!darth && !vader"
    assert combine("PixarRender", "", ["render-1*", "10.0.0.5"]) == 'pixarrender && !"render-1*" && !10.0.0.5'
    assert combine("x", "", ["a || b"]) == "x && !(a || b)"


def test_combine_result_behaves_as_the_parts():
    e = combine("PixarRender", "Linux", ["rack-15"], "@.disk > 5")
    assert not matches(e, BLADE)  # avoided host
    assert matches(combine("PixarRender", "Linux", ["darth"], "@.disk > 5"), BLADE)


def test_combine_reports_the_bad_part():
    with pytest.raises(ServiceExprError, match='"linux &&"'):
        combine("PixarRender", "linux &&")
    with pytest.raises(ServiceExprError):
        combine("", "", ["a b ("])


# --- explain -------------------------------------------------------------------------------


def test_explain_missing_keys():
    x = explain("PixarRender && RfMRender && Maya", BLADE)
    assert not x.matches
    assert x.missing == ("rfmrender", "maya")
    assert x.lines == ["does not match: pixarrender && rfmrender && maya",
                       "  missing key rfmrender", "  missing key maya"]


def test_explain_unwanted_key():
    x = explain("PixarRender, !Linux", BLADE)
    assert not x.matches and x.unwanted == ("linux",)
    assert x.reasons == ("provides linux, excluded by !linux",)
    x = explain("!(Linux && BigIron)", BLADE)
    assert x.unwanted == ("linux", "bigiron")
    assert "provides bigiron, excluded by !(linux && bigiron)" in x.reasons


def test_explain_metric_comparison_with_values():
    x = explain("PixarRender && ((1024 * @.mem) > 2048)", BLADE)
    assert not x.matches
    assert x.failed == ("1024 * @.mem > 2048 is false (1024 * @.mem = 1536; @.mem = 1.5)",)
    x = explain("@.disk > 5", BladeFacts())
    assert x.failed == ("@.disk > 5 is false (@.disk is not reported)",)
    x = explain("!(@.cpu < 0.5)", BLADE)
    assert x.failed == ("@.cpu < 0.5 is true (@.cpu = 0.25)",)


def test_explain_match_says_why():
    x = explain("(@.sa > 2) && (PixarRender || PixarNRM)", BLADE)
    assert x.matches
    assert x.reasons == ("@.sa > 2 is true (@.sa = 3)", "provides pixarrender")
    assert x.missing == x.failed == ()
    x = explain("'rack-*' || nothing", BLADE)
    assert x.reasons == ('"rack-*" matches rack-15, rack-15.studio.example.com',)
    assert "nothing it provides matches \"zz*\"" in explain('"zz*"', BLADE).reasons


def test_explain_or_failure_lists_every_alternative():
    x = explain("Windows || OSX || @.nCPUs > 16", BLADE)
    assert not x.matches
    assert x.missing == ("windows", "osx")
    assert x.failed == ("@.nCPUs > 16 is false (@.nCPUs = 8)",)
    assert str(x).startswith("does not match: windows || osx || @.nCPUs > 16\n  missing key windows")


def test_node_text_and_types():
    assert str(parse("a || b, c").node) == "a || b && c"
    assert isinstance(parse('"a*"').node, Pattern)
    assert parse("a").node.is_bool and not parse("1 > 0").node.lhs.is_bool


def test_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, tractorcli.service; "
            "bad = [m for m in ('click', 'rich', 'psycopg') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
