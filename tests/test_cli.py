"""The command-line contract shared by all programs: errors, exit codes, entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import dbctl, make_site
from test_dbctl_lifecycle import one_line_error
from tractorcli.errors import ExitStatus


def test_usage_errors_are_one_line_with_the_option(tmp_path):
    one_line_error(dbctl(None, "--bogus"), ExitStatus.USAGE, "No such option '--bogus'")
    one_line_error(dbctl(None, "--set-job-counter", "ten"), ExitStatus.USAGE, "'--set-job-counter'", "'ten'")
    one_line_error(dbctl(None), ExitStatus.USAGE, "No operations were specified")
    one_line_error(dbctl(None, "--start", "--stop"), ExitStatus.USAGE, "one operation at a time", "--start, --stop")
    one_line_error(dbctl(None, "--verify"), ExitStatus.USAGE, "--verify goes with --restore")
    one_line_error(dbctl(None, "--reset-job-counter", "--status"), ExitStatus.USAGE, "--reset-job-counter goes with --purge-jobs")
    one_line_error(dbctl(None, "--configdir", str(tmp_path / "absent"), "--status"), ExitStatus.CONFIG, "does not exist")


def test_bad_configuration_is_one_line_and_traceback_only_with_debug():
    cfg, _ = make_site()
    (cfg / "db.toml").write_text("port = 9876\nwhat = 1\n")
    one_line_error(dbctl(cfg, "--status"), ExitStatus.CONFIG, "db.toml:2: unknown key 'what'")
    debug = dbctl(cfg, "--debug", "--status")
    assert debug.returncode == ExitStatus.CONFIG
    assert "Traceback" in debug.stderr and debug.stderr.strip().splitlines()[-1].startswith("tractor-dbctl:")
    env_debug = dbctl(cfg, "--status", env={"TRACTOR_DEBUG": "1"})
    assert "Traceback" in env_debug.stderr


def test_configdir_from_the_environment():
    cfg, s = make_site()
    proc = dbctl(None, "--status", env={"TRACTOR_CONFIGDIR": str(cfg)})
    assert proc.returncode == ExitStatus.NOT_RUNNING
    assert f"data directory: {s.db_data_dir}" in proc.stdout
    alias = dbctl(None, "--config-dir", str(cfg), "--status")
    assert f"data directory: {s.db_data_dir}" in alias.stdout


def test_version_and_help():
    v = dbctl(None, "--version")
    assert v.returncode == 0 and v.stdout.startswith("tractor-dbctl 0.")
    h = dbctl(None, "-h")
    assert h.returncode == 0 and "Examples:" in h.stdout and "--start-for-engine" in h.stdout


def test_python_m_reaches_every_program():
    from tractorcli.cli import PROGRAMS

    for prog in PROGRAMS:
        short = prog.removeprefix("tractor-")
        for name in (prog, short):
            r = subprocess.run([sys.executable, "-m", "tractorcli", name, "--version"], capture_output=True, text=True)
            assert r.returncode == 0 and r.stdout.startswith(prog), (name, r.stderr)
    bad = subprocess.run([sys.executable, "-m", "tractorcli", "nonesuch"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown program 'nonesuch'" in bad.stderr
    listing = subprocess.run([sys.executable, "-m", "tractorcli", "--help"], capture_output=True, text=True)
    assert listing.returncode == 0 and "tractor-dbctl" in listing.stdout


def test_exit_statuses_are_distinct():
    values = [s.value for s in ExitStatus]
    assert len(values) == len(set(values))


@pytest.mark.parametrize("text", ["30m", "6h", "3d", "2w", "3mo", "1yr", "45", "1.5h", "2 weeks"])
def test_durations(text):
    from tractorcli.db.admin import parse_duration

    expected = {"30m": 1800, "6h": 21600, "3d": 259200, "2w": 1209600, "3mo": 7776000, "1yr": 31536000,
                "45": 45, "1.5h": 5400, "2 weeks": 1209600}[text]
    assert parse_duration(text) == expected


def test_year_months():
    import datetime as dt

    from tractorcli.db.admin import parse_year_month
    from tractorcli.errors import BadInput

    assert parse_year_month("24-03") == dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc)
    assert parse_year_month("2024-12") == dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for bad in ("1999-01", "24-00", "24/03", "", "2100-01"):
        with pytest.raises(BadInput, match="purge-archive-to-year-month"):
            parse_year_month(bad)
