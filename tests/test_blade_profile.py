"""Blade profiles from blade.toml: loading, errors with file:line, selection."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tractorcli.blade.profile import (
    DEFAULT_LOG_TEMPLATE,
    Profile,
    host_platforms,
    load_profiles,
    select_profile,
)
from tractorcli.errors import ConfigError, ExitStatus
from tractorcli.subst import EnvKeyHandler, LaunchContext, launch_env

DATA = Path("/srv/tractor-data")


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "blade.toml").write_text(text, encoding="utf-8")
    return tmp_path


def load(tmp_path: Path, text: str) -> list[Profile]:
    return load_profiles(write(tmp_path, text), data_dir=DATA)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, text)
    assert ei.value.status == ExitStatus.CONFIG
    return str(ei.value)


# --- defaults ----------------------------------------------------------------


def test_no_blade_toml_gives_one_catch_all_default(tmp_path):
    [p] = load_profiles(tmp_path, data_dir=DATA)
    assert p.name == "default"
    assert p.slots == 1
    assert p.provides == ("PixarRender", "PixarNRM")
    assert p.dirmap_zone == ("unc" if sys.platform.startswith("win") else "nfs")
    assert p.nimby is False and p.exit_status_terminate is True
    assert p.cmd_output_logging == str(DATA / DEFAULT_LOG_TEMPLATE)
    assert select_profile([p], "anyhost", "darwin") is p


def test_data_dir_comes_from_tractor_toml(tmp_path):
    (tmp_path / "tractor.toml").write_text('data_dir = "/var/spool/site"\n')
    [p] = load_profiles(tmp_path)
    assert p.log_path("alice", 5, 3) == Path("/var/spool/site/cmd-logs/alice/J5/T3.log")


def test_missing_explicit_config_dir(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_profiles(tmp_path / "nope", data_dir=DATA)


def test_empty_file_is_the_default_profile(tmp_path):
    [p] = load(tmp_path, "")
    assert p.name == "default" and p.source == tmp_path / "blade.toml"


def test_defaults_alone_make_one_profile(tmp_path):
    [p] = load(tmp_path, 'name = "farm"\nslots = 4\n[defaults]\nprovides = ["A"]\n')
    assert (p.name, p.slots, p.provides) == ("farm", 4, ("A",))


# --- a full file -------------------------------------------------------------

FULL = """\
# site blade profiles
[defaults]
provides = ["PixarRender", "PixarNRM", "Linux"]
slots = 2
min_disk = [5, "/scratch"]
env = { SHOW = "demo" }
cmd_output_logging = "logfile=/net/logs/%u/J%j/T%t.log"

[[defaults.envkeys]]
keys = ["prman-*"]
environment = { RMANTREE = "/opt/pixar/RenderManProServer-$TR_ENV_RMANVER", PATH = "$RMANTREE/bin:$PATH" }

[[profile]]
name = "gpu"
hosts = ["gpu-*", "10.0.4.*"]
platform = "linux"
provides = ["PixarRender", "GPU"]
slots = 0
nimby = "alice"

[profile.capacity]
max_load = 1.5
min_ram = 2

[[profile.envkeys]]
keys = ["nuke-*"]
environment = { NUKE = "/opt/nuke" }

[[profile]]
ProfileName = "BigLinux"
Hosts = { Platform = "Linux-*", MinNCPU = 8, MinPhysRAM = 16 }
Capacity = { MaxSlots = 3, MinDisk = 20.0 }
DirMapZone = "UNC"
NIMBY = 1
TR_EXIT_STATUS_terminate = 0
UDI = 11
RecentErrorThrottle = [5, 30, 120]

[[profile]]
name = "rest"
"""


def test_full_file(tmp_path):
    gpu, big, rest = load(tmp_path, FULL)
    assert gpu.name == "gpu"
    assert gpu.hosts == ("gpu-*", "10.0.4.*")
    assert gpu.platform == ("linux",)
    assert gpu.provides == ("PixarRender", "GPU")
    assert gpu.slots == 0 and gpu.effective_slots(ncpu=16) == 16
    assert gpu.max_load == 1.5 and gpu.min_ram == 2.0
    assert (gpu.min_disk, gpu.min_disk_path) == (5.0, "/scratch")  # from the defaults
    assert gpu.env == {"SHOW": "demo"}
    assert gpu.envkeys == (EnvKeyHandler(("nuke-*",), {"NUKE": "/opt/nuke"}),)  # replaces, not merged
    assert gpu.nimby == "alice"
    assert gpu.cmd_output_logging == "/net/logs/%u/J%j/T%t.log"

    assert big.name == "BigLinux"
    assert big.platform == ("Linux-*",) and big.min_ncpu == 8 and big.min_phys_ram == 16.0
    assert big.slots == 3 and (big.min_disk, big.min_disk_path) == (20.0, None)
    assert big.dirmap_zone == "unc"
    assert big.nimby is True and big.exit_status_terminate is False
    assert big.udi == 11.0 and big.recent_error_throttle == (5, 30, 120)
    assert big.envkeys[0].keys == ("prman-*",)  # inherited

    assert rest.name == "rest" and rest.slots == 2 and rest.hosts == ("*",)
    assert rest.provides == ("PixarRender", "PixarNRM", "Linux")


def test_selection_first_match_wins(tmp_path):
    profiles = load(tmp_path, FULL)
    pick = lambda *a, **k: select_profile(profiles, *a, **k).name
    assert pick("gpu-07", "linux") == "gpu"
    assert pick("GPU-07.studio.com", "linux") == "gpu"  # host names ignore case
    assert pick("gpu-07", "darwin") == "rest"  # platform must match too
    assert pick("node", "linux", addresses=["10.0.4.9"]) == "gpu"
    assert pick(["node", "gpu-2"], "linux") == "gpu"  # any alias
    assert pick("node1", ["Linux-6.1.0-x86_64-64bit"], ncpu=16, phys_ram_gb=64) == "BigLinux"
    assert pick("node1", ["Linux-6.1.0-x86_64-64bit"], ncpu=4, phys_ram_gb=64) == "rest"
    assert pick("node1", ["Linux-6.1.0-x86_64-64bit"], ncpu=16, phys_ram_gb=8) == "rest"


def test_platform_short_names_and_this_host():
    assert Profile(platform=("linux",)).matches(["h"], ["linux"])
    assert select_profile([Profile(platform=("darwin",)), Profile(name="x")], "h", "darwin").name == "default"
    here = host_platforms()
    assert here[0] == sys.platform
    # a pattern written for Tractor's long platform string matches this host
    tractor_style = Profile(name="t", platform=(here[1] + "-*",))
    assert select_profile([tractor_style], "h").name == "t"
    assert select_profile([tractor_style], "h", sys.platform).name == "t"


def test_exact_host_tests_and_paths(tmp_path):
    assert Profile(ncpu=8).matches(["h"], ["x"], ncpu=8)
    assert not Profile(ncpu=8).matches(["h"], ["x"], ncpu=16)
    assert Profile(phys_ram=16).matches(["h"], ["x"], phys_ram_gb=15.7)
    assert Profile(path_exists=(str(tmp_path),)).matches(["h"], ["x"])
    assert not Profile(path_exists=(str(tmp_path), str(tmp_path / "nope"))).matches(["h"], ["x"])


def test_no_match_is_a_config_error(tmp_path):
    profiles = load(tmp_path, '[[profile]]\nname = "a"\nhosts = "rack-*"\n')
    with pytest.raises(ConfigError, match=r"blade\.toml: no blade profile matches host ws9 .*profiles tried: a") as ei:
        select_profile(profiles, "ws9", "linux")
    assert ei.value.hint


# --- using a profile ------------------------------------------------------------


def test_log_path():
    p = Profile(cmd_output_logging="/logs/%u/J%j/T%t.log")
    assert p.log_path("alice", 12, 3) == Path("/logs/alice/J12/T3.log")
    assert p.log_path("../../etc", 1, 2) == Path("/logs/.._.._etc/J1/T2.log")
    assert p.log_path("..", 1, 2) == Path("/logs/_/J1/T2.log")
    assert p.log_path("", 1, 2) == Path("/logs/_/J1/T2.log")
    assert Profile(cmd_output_logging="/l/100%%/%x/%u").log_path("bob", 1, 1) == Path("/l/100%/%x/bob")


def test_relative_and_variable_log_templates(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGROOT", "/mnt/logs")
    a, b, c = load(
        tmp_path,
        '[[profile]]\nname = "a"\ncmd_output_logging = "logs/%u/%j-%t.txt"\n'
        '[[profile]]\nname = "b"\ncmd_output_logging = "$LOGROOT/%u/J%j/T%t.log"\n'
        '[[profile]]\nname = "c"\nCmdOutputLogging = "${TractorDataDirectory}/x/%u.log"\n',
    )
    assert a.log_path("u", 1, 2) == DATA / "logs/u/1-2.txt"
    assert b.log_path("u", 1, 2) == Path("/mnt/logs/u/J1/T2.log")
    assert c.log_path("u", 1, 2) == DATA / "x/u.log"


def test_service_keys_and_slots():
    p = Profile(name="gpu", provides=("A", "B"), slots=3)
    assert p.service_keys(["node1"], ["10.0.0.1"]) == ("A", "B", "node1", "10.0.0.1", "gpu")
    assert p.effective_slots() == 3
    assert Profile(slots=0).effective_slots() == (os.cpu_count() or 1)


def test_profile_env_feeds_launch_env(tmp_path):
    [p] = load(
        tmp_path,
        'env = { SHOW = "demo", REMOTEHOST = "$TR_SPOOLHOST" }\n'
        '[[envkeys]]\nkeys = ["prman-*"]\nenvironment = { RMANTREE = "/opt/rman", PATH = "$RMANTREE/bin:$PATH" }\n',
    )
    ctx = LaunchContext(1, 2, 3, spoolhost="ws1")
    env = launch_env({"PATH": "/bin"}, ctx, ["prman-26"], p.env_handlers())
    assert env["SHOW"] == "demo" and env["REMOTEHOST"] == "ws1"
    assert env["PATH"] == "/opt/rman/bin:/bin"


# --- errors name file:line and the key --------------------------------------------


def test_unknown_key(tmp_path):
    msg = error(tmp_path, '[[profile]]\nname = "a"\n\n[[profile]]\nname = "b"\nslotz = 3\n')
    assert msg.startswith(f"{tmp_path / 'blade.toml'}:6: unknown key 'slotz' in profile 2")
    assert "known keys:" in msg and "slots" in msg


@pytest.mark.parametrize(
    "text, where",
    [
        ('[[profile]]\nname = "a"\nslots = -1\n', ":3: slots: expected an integer from 0"),
        ('[[profile]]\nname = "a"\n[[profile]]\nname = "b"\nslots = "x"\n', ":5: slots: expected an integer"),
        ('[defaults]\nmax_load = -2\n', ":2: max_load: expected a number >= 0"),
        ('nimby = ""\n', ":1: nimby: expected false, true"),
        ('min_disk = [1, 2]\n', ':1: min_disk: expected GB or [GB, "/path"]'),
        ('hosts = []\n', ":1: hosts: expected one or more non-empty patterns"),
        ('env = { A = 1 }\n', ":1: env: A: expected a string"),
        ('cmd_output_logging = "logserver=eng:9180"\n', ":1: cmd_output_logging: logserver=... is not supported"),
        ('RecentErrorThrottle = [5, 30]\n', ":1: RecentErrorThrottle: expected [errors, seconds"),
        ('[[profile]]\nname = "a"\nHosts = { Name = "x", Bogus = 1 }\n', ":3: Hosts.Bogus: unknown key"),
        ('[[profile]]\nname = "a"\nCapacity = { MinNCPU = 1 }\n', ":3: Capacity.MinNCPU: unknown key"),
        ('[[profile]]\nname = "a"\n[profile.capacity]\nmax_load = "hi"\n', ":4: capacity.max_load: expected a number"),
        ('[[profile]]\nslots = 1\n', ":1: profile 1: 'name' is missing"),
        ('[[profile]]\nname = "a"\n[[profile]]\nname = "A"\n', ":4: name: profile 'A' is defined twice"),
        ('[[profile]]\nname = "a"\nslots = 1\nMaxSlots = 2\n', ":4: MaxSlots: set twice"),
        ('slots = 1\n[defaults]\nslots = 2\n', ":3: slots: set twice (top level and [defaults])"),
        ('[profile]\nname = "a"\n', ":1: profile: expected an array of tables: write [[profile]]"),
        ('defaults = 3\n', ":1: defaults: expected a table"),
        ('slots = 1\n\n[[envkeys]]\nenvironment = {}\n', ":3: envkeys: entry 1: 'keys' is missing"),
        ('[[profile]]\nname = "a"\n[[profile]]\nname = "b"\n[[profile.envkeys]]\nkeys = 3\n', ":5: envkeys: entry 1: expected a list of strings"),
        ('[[envkeys]]\nkeys = ["a"]\nenvhandler = "rmshandler"\n', "envhandler 'rmshandler': Python environment handlers are not supported"),
        ('envkeys = ["@merge(\'shared.linux.envkeys\')"]\n', "@merge and other @ directives are not supported"),
        ('Access = { Crews = ["*"] }\n', ":1: unknown key 'Access'"),
        ('slots = \n', ":1:9: malformed TOML"),
    ],
)
def test_bad_values_name_file_line_and_key(tmp_path, text, where):
    msg = error(tmp_path, text)
    assert msg.startswith(str(tmp_path / "blade.toml"))
    assert where in msg, msg


def test_unreadable_file(tmp_path):
    (tmp_path / "blade.toml").write_bytes(b"name = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_profiles(tmp_path, data_dir=DATA)
