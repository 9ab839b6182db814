"""Property tests: every input to our small parsers parses or raises our own error."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from tractorcli.db.admin import parse_duration, parse_year_month
from tractorcli.errors import BadInput, ConfigError


@given(st.text(max_size=20))
@settings(max_examples=300)
def test_parse_duration_total(text):
    try:
        value = parse_duration(text)
    except BadInput as exc:
        assert "--clear-history" in str(exc)
    else:
        assert value >= 0


@given(st.text(max_size=12))
@settings(max_examples=300)
def test_parse_year_month_total(text):
    try:
        parse_year_month(text)
    except BadInput as exc:
        assert "--purge-archive-to-year-month" in str(exc)


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_any_db_toml_loads_or_names_the_file(tmp_path_factory, text):
    from tractorcli.config import load_settings

    d = tmp_path_factory.mktemp("cfg")
    (d / "db.toml").write_text(text, encoding="utf-8")
    try:
        load_settings(d)
    except ConfigError as exc:
        assert str(exc).startswith(str(d / "db.toml")) and "\n" not in str(exc)
