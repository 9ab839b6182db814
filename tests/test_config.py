"""Site configuration: discovery, defaults, TOML files, and their errors (no database)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tractorcli.config import DEFAULT_PORT, load_settings
from tractorcli.errors import ConfigError, ExitStatus


@pytest.fixture
def cfgdir(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACTOR_CONFIGDIR", raising=False)
    d = tmp_path / "cfg"
    d.mkdir()
    return d


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACTOR_CONFIGDIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing-here"))
    s = load_settings()
    assert s.config_dir == tmp_path / "nothing-here" / "tractor"
    assert s.files == []
    assert s.db.port == DEFAULT_PORT == 9876
    assert s.db_data_dir == s.data_dir / "psql"
    assert s.db.startup and s.db.init and s.db.shutdown and s.db.auto_upgrade and not s.db.use_existing
    assert s.db.listen_addresses == ["localhost"]
    assert s.db.dbname == "tractor"


def test_root_default_data_dir_is_tractors(monkeypatch, tmp_path):
    import tractorcli.config as config

    monkeypatch.delenv("TRACTOR_CONFIGDIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(config, "is_root", lambda: True)
    assert load_settings().data_dir == Path("/var/spool/tractor")
    assert load_settings().db_os_user == "postgres"
    monkeypatch.setattr(config, "is_root", lambda: False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert load_settings().data_dir == tmp_path / "share" / "tractor"
    assert load_settings().db_os_user is None


def test_configdir_from_env(cfgdir, monkeypatch):
    (cfgdir / "db.toml").write_text("port = 9999\n")
    monkeypatch.setenv("TRACTOR_CONFIGDIR", str(cfgdir))
    s = load_settings()
    assert s.config_dir == cfgdir and s.db.port == 9999
    # the flag beats the environment
    other = cfgdir.parent / "other"
    other.mkdir()
    assert load_settings(other).db.port == DEFAULT_PORT


def test_explicit_configdir_must_exist(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACTOR_CONFIGDIR", raising=False)
    with pytest.raises(ConfigError, match=r"config directory .*missing does not exist \(from --configdir\)"):
        load_settings(tmp_path / "missing")
    monkeypatch.setenv("TRACTOR_CONFIGDIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="TRACTOR_CONFIGDIR"):
        load_settings()


def test_snake_case_and_tractor_names(cfgdir):
    (cfgdir / "tractor.toml").write_text('TractorDataDirectory = "/srv/tractor"\nEngineOwner = "render"\n'
                                         "CmdAutoRetryAttempts = 2\n")
    (cfgdir / "db.toml").write_text(
        '[db]\nDBStartup = false\nshutdown = false\nDBUseExisting = true\nport = 7000\n'
        'DBDataDir = "${TractorDataDirectory}/pg"\nbindir = "/opt/pg/bin"\nos_user = "pgrun"\n'
    )
    s = load_settings(cfgdir)
    assert s.data_dir == Path("/srv/tractor")
    assert s.engine_owner == "render"
    assert s.cmd_auto_retry_attempts == 2 and s.cmd_retryrc_retry_attempts == 1
    assert (s.db.startup, s.db.shutdown, s.db.use_existing, s.db.port) == (False, False, True, 7000)
    assert s.db_data_dir == Path("/srv/tractor/pg")
    assert s.db.bindir == Path("/opt/pg/bin")
    assert s.db_os_user == "pgrun"
    assert s.files == [cfgdir / "tractor.toml", cfgdir / "db.toml"]


def test_relative_paths_are_relative_to_the_config_dir(cfgdir):
    (cfgdir / "tractor.toml").write_text('data_dir = "data"\n')
    assert load_settings(cfgdir).data_dir == cfgdir / "data"


def test_malformed_toml_names_file_line_and_column(cfgdir):
    (cfgdir / "db.toml").write_text("port = 9876\nstartup = tru\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfgdir)
    assert str(e.value).startswith(f"{cfgdir / 'db.toml'}:2:")
    assert "malformed TOML" in str(e.value)
    assert e.value.status == ExitStatus.CONFIG
    assert "\n" not in str(e.value)


def test_unknown_key_names_file_line_and_key(cfgdir):
    (cfgdir / "tractor.toml").write_text('# site\n\ndata_dir = "/x"\nengine_ownr = "joe"\n')
    with pytest.raises(ConfigError, match=r"tractor\.toml:4: unknown key 'engine_ownr'"):
        load_settings(cfgdir)


@pytest.mark.parametrize("text, message", [
    ("port = 0\n", r"db\.toml:1: port: expected an integer from 1 to 65535, got 0"),
    ('port = "9876"\n', r"db\.toml:1: port: expected an integer"),
    ('startup = "maybe"\n', r"db\.toml:1: startup: expected true or false"),
    ("listen_addresses = [1, 2]\n", r"db\.toml:1: listen_addresses: expected a list of strings"),
    ("port = 1\nDBPort = 2\n", r"db\.toml:2: DBPort: set twice"),
])
def test_bad_values(cfgdir, text, message):
    (cfgdir / "db.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfgdir)


def test_network_listening_requires_a_password(cfgdir):
    (cfgdir / "db.toml").write_text('listen_addresses = ["localhost", "10.0.0.5"]\n')
    with pytest.raises(ConfigError, match="requires password authentication"):
        load_settings(cfgdir)
    (cfgdir / "db.toml").write_text('listen_addresses = "localhost, 10.0.0.5"\npassword = "s3cret"\n')
    s = load_settings(cfgdir)
    assert s.db.listen_addresses == ["localhost", "10.0.0.5"] and s.db.listens_beyond_localhost


def test_unreadable_file_is_a_config_error(cfgdir):
    (cfgdir / "db.toml").write_bytes(b"port = \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(cfgdir)


def test_the_loaded_settings_do_not_depend_on_cwd(cfgdir, monkeypatch, tmp_path):
    (cfgdir / "tractor.toml").write_text('data_dir = "d"\n')
    monkeypatch.chdir(tmp_path)
    a = load_settings(os.path.relpath(cfgdir, tmp_path))
    assert a.data_dir == cfgdir / "d"


def test_an_account_without_configuration_joins_the_hosts_site(tmp_path, monkeypatch):
    """On the engine's host an ordinary account with no config of its own reaches the system-wide
    site through its socket, as itself; one with a site of its own keeps it."""
    from tractorcli import config

    run = tmp_path / "run"
    run.mkdir()
    (run / ".s.PGSQL.5999").write_text("")
    (run / ".s.PGSQL.5999.lock").write_text("")
    monkeypatch.setattr(config, "SHARED_RUN_DIR", run)
    monkeypatch.setattr(config, "is_root", lambda: False)
    monkeypatch.delenv("TRACTOR_CONFIGDIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "conf"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    s = config.load_settings()
    assert (s.db.host, s.db.port) == (str(run), 5999)
    assert config.login_role(s) == config.current_user()
    (tmp_path / "data" / "tractor" / "psql").mkdir(parents=True)  # a site of one's own
    s = config.load_settings()
    assert s.db.host is None and s.db.port == config.DEFAULT_PORT
