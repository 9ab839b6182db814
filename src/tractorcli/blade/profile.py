"""Blade profiles: `blade.toml` in the site config directory.

Tractor's `blade.config` holds `ProfileDefaults` and an ordered list of
`BladeProfiles`; each blade walks the list and the first profile whose host
tests it passes wins.  `blade.toml` is the same in TOML:

```toml
[defaults]                       # or [ProfileDefaults]; top-level keys count too
provides = ["PixarRender", "PixarNRM"]
slots = 1
cmd_output_logging = "cmd-logs/%u/J%j/T%t.log"

[[profile]]                      # or [[BladeProfiles]]; tried in file order
name = "gpu"
hosts = ["gpu-*", "10.0.4.*"]    # glob, any host name, alias or address
platform = "linux"
provides = ["PixarRender", "GPU"]
slots = 0                        # 0: as many as the host has CPUs
env = { OCIO = "/studio/ocio/config.ocio" }

[[profile.envkeys]]
keys = ["prman-*"]
environment = { RMANTREE = "/opt/pixar/RenderManProServer-$TR_ENV_RMANVER", PATH = "$RMANTREE/bin:$PATH" }

[[profile]]
name = "linux"
platform = "Linux-*"
```

Every key of a profile (Tractor's names are accepted too, in any case):

| key | Tractor | default | meaning |
|---|---|---|---|
| `name` | `ProfileName` | (required in `[[profile]]`) | the profile name, also an implicit service key |
| `hosts` | `Hosts.Name` | `["*"]` | host name / address globs (case-insensitive); any may match |
| `platform` | `Hosts.Platform` | `["*"]` | platform globs (case-insensitive), see `host_platforms` |
| `min_ncpu`, `ncpu` | `MinNCPU`, `NCPU` | - | CPU count at least / exactly |
| `min_phys_ram`, `phys_ram` | `MinPhysRAM`, `PhysRAM` | - | installed GB at least / exactly (rounded) |
| `path_exists` | `PathExists` | `[]` | all these paths must exist |
| `provides` | `Provides` | `["PixarRender", "PixarNRM"]` | service keys |
| `slots` | `Capacity.MaxSlots` | `1` | concurrent commands; `0` = CPU count |
| `max_load` | `Capacity.MaxLoad` | `0` (off) | ask for work only below this load per CPU |
| `min_ram` | `Capacity.MinRAM` | `0` (off) | ask for work only above this many free GB |
| `min_disk` | `Capacity.MinDisk` | `0` (off) | free GB, or `[GB, "/scratch"]` naming the disk |
| `env` | - | `{}` | environment for every command (the "default" envkey) |
| `envkeys` | `EnvKeys` | `[]` | `{keys = [globs], environment = {...}}` handlers |
| `cmd_output_logging` | `CmdOutputLogging` | `cmd-logs/%u/J%j/T%t.log` | log file template; relative to the data dir |
| `dirmap_zone` | `DirMapZone` | `nfs` (`unc` on Windows) | zone for `%D(path)` |
| `nimby` | `NIMBY` | `false` | `true`: only jobs spooled from this host; a user name: only that user's |
| `exit_status_terminate` | `TR_EXIT_STATUS_terminate` | `true` | kill a command that printed `TR_EXIT_STATUS` and did not exit |
| `udi` | `UDI` | `1.0` | desirability rating |
| `recent_error_throttle` | `RecentErrorThrottle` | off | `[errors, seconds, pause seconds]` |
| `run_as` | - | tractor.toml `blade_run_as` (`"owner"`) | whose account commands run as: `"owner"` (the job's owner), `"blade"` (the blade's own), or an account name |
| `keys_plugin` | - | none | a Python file (relative to the config directory) whose `offer(keys, blade)` changes the keys offered before each claim (blade/keys_plugin.py) |

Tractor's nested `Hosts = {...}` and `Capacity = {...}` tables are accepted
as well.  A profile's key replaces the default's value as a whole (`env`
and `envkeys` are not merged), as Tractor does.  Keys Tractor has that are
not supported here (`Access`, `SiteModulesPath`, `VersionPin`, GPU tests,
Python `envhandler`s, `@merge`) are refused by name: a site learns at once
what does not carry over.

Choices (Tractor's own defaults differ where noted): `slots` defaults to 1
as in Tractor's shipped `blade.config` (its built-in default is the CPU
count; a render usually takes the whole host); the capacity thresholds are
off by default (the shipped file uses 1.5 / 1 GB / 20 GB, which would keep
a small machine idle for no visible reason); the command log template is
Tractor's documented `%u/J%j/T%t.log` layout under `<data dir>/cmd-logs`
(`logserver=` is not supported); without `blade.toml` one "default"
profile matches every host.  Errors name `file:line: key`.
"""

from __future__ import annotations

import os
import platform as _platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..config import (
    ENV_CONFIGDIR,
    _bool,
    _int_range,
    _key_line,
    _path,
    _str,
    _str_list,
    load_settings,
    load_toml,
    resolve_config_dir,
)
from ..errors import ConfigError
from ..subst import EnvKeyHandler, default_zone

__all__ = [
    "BLADE_FILE",
    "DEFAULT_LOG_TEMPLATE",
    "Profile",
    "default_profile",
    "load_profiles",
    "select_profile",
    "host_platforms",
]

BLADE_FILE = "blade.toml"
DEFAULT_LOG_TEMPLATE = "cmd-logs/%u/J%j/T%t.log"
DEFAULT_PROVIDES = ("PixarRender", "PixarNRM")


@dataclass(frozen=True)
class Profile:
    """One blade profile, with every default applied."""

    name: str = "default"
    hosts: tuple[str, ...] = ("*",)
    platform: tuple[str, ...] = ("*",)
    min_ncpu: int = 0
    ncpu: int | None = None
    min_phys_ram: float = 0.0
    phys_ram: int | None = None
    path_exists: tuple[str, ...] = ()
    provides: tuple[str, ...] = DEFAULT_PROVIDES
    slots: int = 1
    max_load: float = 0.0
    min_ram: float = 0.0
    min_disk: float = 0.0
    min_disk_path: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    envkeys: tuple[EnvKeyHandler, ...] = ()
    cmd_output_logging: str = DEFAULT_LOG_TEMPLATE  # absolute once loaded
    dirmap_zone: str = field(default_factory=default_zone)
    nimby: bool | str = False
    exit_status_terminate: bool = True
    udi: float = 1.0
    recent_error_throttle: tuple[int, int, int] | None = None
    run_as: str | None = None  # None: the site's blade_run_as (tractor.toml); see blade/launch.py
    keys_plugin: str | None = None  # a site Python file changing the keys per claim (blade/keys_plugin.py)
    source: Path | None = None  # the blade.toml it came from

    # -- matching -------------------------------------------------------------

    def matches(
        self,
        hostnames: Sequence[str],
        platforms: Sequence[str],
        *,
        ncpu: int | None = None,
        phys_ram_gb: float | None = None,
    ) -> bool:
        """Whether a host passes all of this profile's host tests.

        Facts not given (`ncpu`, `phys_ram_gb`) are measured on this host when
        a test needs them.
        """
        names = [h.lower() for h in hostnames]
        if not any(fnmatchcase(h, p.lower()) for p in self.hosts for h in names):
            return False
        plats = [p.lower() for p in platforms]
        if not any(fnmatchcase(q, p.lower()) for p in self.platform for q in plats):
            return False
        if self.min_ncpu or self.ncpu is not None:
            n = ncpu if ncpu is not None else (os.cpu_count() or 1)
            if n < self.min_ncpu or (self.ncpu is not None and n != self.ncpu):
                return False
        if self.min_phys_ram or self.phys_ram is not None:
            gb = phys_ram_gb if phys_ram_gb is not None else _phys_ram_gb()
            if gb < self.min_phys_ram or (self.phys_ram is not None and round(gb) != self.phys_ram):
                return False
        return all(os.path.exists(p) for p in self.path_exists)

    # -- use ------------------------------------------------------------------

    def effective_slots(self, ncpu: int | None = None) -> int:
        """Slots this blade offers: `slots`, or the CPU count when it is 0."""
        if self.slots > 0:
            return self.slots
        return ncpu if ncpu is not None else (os.cpu_count() or 1)

    def service_keys(self, hostnames: Iterable[str] = (), addresses: Iterable[str] = ()) -> tuple[str, ...]:
        """What the blade advertises: `provides`, plus its names, addresses and the profile name."""
        return (*self.provides, *hostnames, *addresses, self.name)

    def env_handlers(self) -> list[EnvKeyHandler]:
        """The handlers for `subst.launch_env`: `env` as the "default" one, then `envkeys`."""
        out = [EnvKeyHandler(("default",), dict(self.env), "default")] if self.env else []
        return out + list(self.envkeys)

    def log_path(self, owner: str, jid: int, tid: int) -> Path:
        """The command log file of task `tid` of job `jid` owned by `owner`.

        `%u`, `%j`, `%t` in the template are replaced, `%%` gives `%`; other
        `%` sequences are kept.  An owner name cannot leave its directory:
        path separators become `_`, and `.`/`..`/empty become `_`.
        """
        user = owner.replace("/", "_").replace("\\", "_").replace("\0", "_")
        if user in ("", ".", ".."):
            user = "_"
        values = {"u": user, "j": str(jid), "t": str(tid), "%": "%"}
        return Path(_LOG_SEQ.sub(lambda m: values[m.group(1)], self.cmd_output_logging))


_LOG_SEQ = re.compile(r"%([ujt%])")


def _phys_ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):
        return 0.0


def host_platforms() -> tuple[str, ...]:
    """The names this host's platform goes by, for `platform` patterns.

    `sys.platform` (`linux`, `darwin`, `win32`), `platform.system()`
    (`Linux`, `Darwin`, `Windows`), and Tractor's
    `platform.platform() + "-" + bits` (`Linux-6.1.0-...-x86_64-with-glibc2.36-64bit`)
    so that patterns written for Tractor (`Linux-*`) keep working.
    """
    return (sys.platform, _platform.system(), _platform.platform() + "-" + _platform.architecture()[0])


_SYSTEM_NAMES = {"linux": "Linux", "darwin": "Darwin", "win32": "Windows", "cygwin": "Windows"}


def _platform_names(platform: str | Sequence[str] | None) -> tuple[str, ...]:
    if platform is None:
        return host_platforms()
    if not isinstance(platform, str):
        return tuple(platform)
    if platform == sys.platform:
        return host_platforms()
    system = _SYSTEM_NAMES.get(platform)
    return (platform, system) if system else (platform,)


def default_profile(data_dir: Path | None = None) -> Profile:
    """The profile of a site without `blade.toml`: matches every host."""
    if data_dir is None:
        data_dir = load_settings().data_dir
    return Profile(cmd_output_logging=str(data_dir / DEFAULT_LOG_TEMPLATE))


def select_profile(
    profiles: Sequence[Profile],
    hostname: str | Sequence[str],
    platform: str | Sequence[str] | None = None,
    *,
    addresses: Sequence[str] = (),
    ncpu: int | None = None,
    phys_ram_gb: float | None = None,
) -> Profile:
    """The first profile the host matches, in order.

    `hostname` may be several names (aliases); `addresses` are matched like
    names.  `platform` is a name such as `sys.platform` or a list of names
    (default: this host's, see `host_platforms`).  Raises `ConfigError` when
    no profile matches.
    """
    names = [hostname] if isinstance(hostname, str) else list(hostname)
    names += list(addresses)
    plats = _platform_names(platform)
    for p in profiles:
        if p.matches(names, plats, ncpu=ncpu, phys_ram_gb=phys_ram_gb):
            return p
    src = next((p.source for p in profiles if p.source is not None), None)
    where = f"{src}: " if src else ""
    tried = ", ".join(p.name for p in profiles) or "none"
    raise ConfigError(
        f"{where}no blade profile matches host {names[0] if names else '?'!s} "
        f"(platform {plats[0] if plats else '?'}); profiles tried: {tried}",
        hint="add a catch-all profile (hosts = [\"*\"]) at the end of the list",
    )


# --- reading blade.toml -----------------------------------------------------

_DEFAULTS_TABLES = ("defaults", "profiledefaults")
_PROFILE_TABLES = ("profile", "profiles", "bladeprofiles")


def _float_ge0(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
        raise ValueError(f"expected a number >= 0, got {v!r}")
    return float(v)


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def _globs(v: Any) -> tuple[str, ...]:
    out = tuple(_str_list(v))
    if not out or not all(out):
        raise ValueError(f"expected one or more non-empty patterns, got {v!r}")
    return out


def _keys(v: Any) -> tuple[str, ...]:
    return tuple(_str_list(v))


def _env(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError(f"expected a table of NAME = \"value\", got {v!r}")
    for k, val in v.items():
        if not k or "=" in k or "\0" in k:
            raise ValueError(f"{k!r} is not an environment variable name")
        if not isinstance(val, str):
            raise ValueError(f"{k}: expected a string, got {val!r}")
    return dict(v)


def _envkeys(v: Any) -> tuple[EnvKeyHandler, ...]:
    if not isinstance(v, list):
        raise ValueError("expected an array of tables ([[profile.envkeys]] with keys and environment)")
    out = []
    for n, item in enumerate(v, 1):
        if isinstance(item, str) and item.startswith("@"):
            raise ValueError(f"entry {n}: {item!r}: @merge and other @ directives are not supported")
        if not isinstance(item, dict):
            raise ValueError(f"entry {n}: expected a table with keys and environment, got {item!r}")
        unknown = set(item) - {"keys", "environment", "envhandler"}
        if unknown:
            raise ValueError(f"entry {n}: unknown key {sorted(unknown)[0]!r} (known: keys, environment, envhandler)")
        if "keys" not in item:
            raise ValueError(f"entry {n}: 'keys' is missing")
        try:
            keys = _globs(item["keys"])
            env = _env(item.get("environment", {}))
            handler = item.get("envhandler", "")
            if not isinstance(handler, str):
                raise ValueError(f"envhandler: expected a string, got {handler!r}")
        except ValueError as exc:
            raise ValueError(f"entry {n}: {exc}") from None
        if handler not in ("", "default"):
            raise ValueError(
                f"entry {n}: envhandler {handler!r}: Python environment handlers are not supported; "
                "put the variables in 'environment'"
            )
        out.append(EnvKeyHandler(keys, env, handler))
    return tuple(out)


def _min_disk(v: Any) -> tuple[float, str | None]:
    if isinstance(v, list):
        if len(v) != 2 or not isinstance(v[1], str) or not v[1]:
            raise ValueError(f"expected GB or [GB, \"/path\"], got {v!r}")
        return _float_ge0(v[0]), v[1]
    return _float_ge0(v), None


def _nimby(v: Any) -> bool | str:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip():
        return v.strip()
    raise ValueError(f"expected false, true (local jobs only) or a user name, got {v!r}")


def _throttle(v: Any) -> tuple[int, int, int]:
    if (
        not isinstance(v, list)
        or len(v) != 3
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        or v[0] < 1
        or v[1] < 1
        or v[2] < -1
    ):
        raise ValueError(f"expected [errors, seconds, pause seconds or -1], got {v!r}")
    return (v[0], v[1], v[2])


def _zone(v: Any) -> str:
    return _str(v).lower()


def _log_template(v: Any) -> str:
    s = _str(v)
    kind, eq, rest = s.partition("=")
    if eq and kind in ("logfile", "logserver"):
        if kind == "logserver":
            raise ValueError("logserver=... is not supported; give a file template (logfile=PATH or PATH)")
        s = rest
        if not s:
            raise ValueError("logfile= needs a path template")
    return s


_Conv = Callable[[Any], Any]
_KEYS: dict[str, tuple[tuple[str, ...], _Conv]] = {
    "name": (("ProfileName",), _str),
    "hosts": ((), _globs),  # Tractor's Hosts.Name
    "platform": (("Platform",), _globs),
    "min_ncpu": (("MinNCPU",), _int_range(0, 1 << 20)),
    "ncpu": (("NCPU",), _int_range(1, 1 << 20)),
    "min_phys_ram": (("MinPhysRAM",), _float_ge0),
    "phys_ram": (("PhysRAM",), _int_range(0, 1 << 30)),
    "path_exists": (("PathExists",), _keys),
    "provides": (("Provides",), _keys),
    "slots": (("MaxSlots",), _int_range(0, 100_000)),
    "max_load": (("MaxLoad",), _float_ge0),
    "min_ram": (("MinRAM",), _float_ge0),
    "min_disk": (("MinDisk",), _min_disk),
    "env": (("environment",), _env),
    "envkeys": (("EnvKeys",), _envkeys),
    "cmd_output_logging": (("CmdOutputLogging",), _log_template),
    "dirmap_zone": (("DirMapZone",), _zone),
    "nimby": (("NIMBY",), _nimby),
    "exit_status_terminate": (("TR_EXIT_STATUS_terminate",), _bool),
    "udi": (("UDI",), _float),
    "recent_error_throttle": (("RecentErrorThrottle",), _throttle),
    "run_as": (("RunAs",), _str),
    "keys_plugin": (("KeysPlugin",), _str),
}
_HOSTS_SUBKEYS = ("hosts", "platform", "min_ncpu", "ncpu", "min_phys_ram", "phys_ram", "path_exists")
_CAPACITY_SUBKEYS = ("slots", "max_load", "min_ram", "min_disk")
_BY_NAME: dict[str, str] = {}
for _canon, (_aliases, _) in _KEYS.items():
    _BY_NAME[_canon.lower()] = _canon
    for _a in _aliases:
        _BY_NAME[_a.lower()] = _canon


class _Lines:
    """Finds the line of a key inside one table of a TOML text (best effort)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str, bool]] = []  # (line, dotted name lowercased, is array)
        for n, line in enumerate(self.lines, 1):
            m = self._HEADER.match(line)
            if m:
                name = ".".join(p.strip().strip("\"'") for p in m.group(2).split(".")).lower()
                self.headers.append((n, name, m.group(1) == "[["))

    def span(self, table: str | None, index: int = 0) -> tuple[int, int]:
        """Lines [start, end) of the `index`th `table` (None: the top level)."""
        if table is None:
            end = self.headers[0][0] if self.headers else len(self.lines) + 1
            return 1, end
        names = _DEFAULTS_TABLES if table == "defaults" else _PROFILE_TABLES
        seen = -1
        for i, (n, name, _arr) in enumerate(self.headers):
            if name in names:
                seen += 1
                if seen == index:
                    end = len(self.lines) + 1
                    for n2, name2, _ in self.headers[i + 1:]:
                        if name2.split(".")[0] not in names or name2 in names:
                            end = n2
                            break
                    return n, end
        return 1, len(self.lines) + 1

    def find(self, key: str, span: tuple[int, int]) -> int:
        pat = re.compile(r"(?:^|[\s{,])(?:\"%s\"|'%s'|%s)\s*=" % ((re.escape(key),) * 3))
        start, end = span
        for n in range(start, min(end, len(self.lines) + 1)):
            if pat.search(self.lines[n - 1]):
                return n
        low = key.lower()
        for n, name, _arr in self.headers:  # a key written as a [table] or [[array]]
            if start <= n < end and name.rsplit(".", 1)[-1] == low:
                return n
        for n, name, _arr in self.headers:  # a top-level one
            if name == low:
                return n
        return _key_line(self.text, key) or start


def _convert_table(
    path: Path, lines: _Lines, span: tuple[int, int], data: dict[str, Any], what: str
) -> dict[str, Any]:
    """Canonical keys -> converted values for one profile (or the defaults)."""
    out: dict[str, Any] = {}

    def put(canon: str, key: str, value: Any, line: int) -> None:
        if canon in out:
            raise ConfigError(f"{path}:{line}: {key}: set twice (also as {canon!r}) in {what}")
        try:
            out[canon] = _KEYS[canon][1](value)
        except ValueError as exc:
            raise ConfigError(f"{path}:{line}: {key}: {exc}") from None

    for key, value in data.items():
        line = lines.find(key, span)
        low = key.lower()
        if low in ("hosts", "capacity") and isinstance(value, dict):
            allowed = _HOSTS_SUBKEYS if low == "hosts" else _CAPACITY_SUBKEYS
            for sub, subval in value.items():
                sline = lines.find(sub, span)
                canon = "hosts" if low == "hosts" and sub.lower() == "name" else _BY_NAME.get(sub.lower())
                if canon is None or canon not in allowed:
                    known = ", ".join(_KEYS[c][0][0] if _KEYS[c][0] else "Name" for c in allowed)
                    raise ConfigError(f"{path}:{sline}: {key}.{sub}: unknown key (known in {key}: {known})")
                put(canon, f"{key}.{sub}", subval, sline)
            continue
        canon = _BY_NAME.get(low)
        if canon is None:
            known = ", ".join(sorted(_KEYS))
            raise ConfigError(f"{path}:{line}: unknown key {key!r} in {what} (known keys: {known})")
        put(canon, key, value, line)
    return out


def load_profiles(config_dir: str | os.PathLike | None = None, *, data_dir: Path | None = None) -> list[Profile]:
    """The site's blade profiles, in the order they are tried.

    Without `blade.toml` in the config directory: one "default" profile that
    matches every host.  `data_dir` (default: the site's, from
    `tractor.toml`) anchors a relative `cmd_output_logging` template.
    Raises `ConfigError` naming `file:line: key` for anything wrong.
    """
    cdir, explicit = resolve_config_dir(config_dir)
    if explicit and not cdir.is_dir():
        origin = "--configdir" if config_dir else ENV_CONFIGDIR
        raise ConfigError(f"config directory {cdir} does not exist (from {origin})")
    if data_dir is None:
        data_dir = load_settings(config_dir).data_dir
    cdir = cdir.absolute()
    path = cdir / BLADE_FILE
    if not path.is_file():
        return [default_profile(data_dir)]
    text, data = load_toml(path)
    lines = _Lines(text)

    top: dict[str, Any] = {}
    defaults_raw: dict[str, Any] | None = None
    defaults_key = ""
    profiles_raw: list[Any] | None = None
    for key, value in data.items():
        low = key.lower()
        if low in _DEFAULTS_TABLES:
            if defaults_raw is not None or not isinstance(value, dict):
                line = lines.find(key, (1, len(lines.lines) + 1))
                why = "given twice" if defaults_raw is not None else "expected a table"
                raise ConfigError(f"{path}:{line}: {key}: {why}")
            defaults_raw, defaults_key = value, key
        elif low in _PROFILE_TABLES:
            if profiles_raw is not None or not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
                line = lines.find(key, (1, len(lines.lines) + 1))
                why = "given twice" if profiles_raw is not None else "expected an array of tables: write [[profile]]"
                if profiles_raw is None:
                    for n, name, _arr in lines.headers:
                        if name == low:
                            line = n
                            break
                raise ConfigError(f"{path}:{line}: {key}: {why}")
            profiles_raw = value
        else:
            top[key] = value

    defaults = _convert_table(path, lines, lines.span(None), top, "the defaults")
    if defaults_raw is not None:
        more = _convert_table(path, lines, lines.span("defaults"), defaults_raw, f"[{defaults_key}]")
        for canon in more:
            if canon in defaults:
                line = lines.find(canon, lines.span("defaults"))
                raise ConfigError(f"{path}:{line}: {canon}: set twice (top level and [{defaults_key}])")
        defaults.update(more)

    base_log = str(data_dir / DEFAULT_LOG_TEMPLATE)

    def build(fields: dict[str, Any]) -> Profile:
        f = dict(fields)
        if "min_disk" in f:
            f["min_disk"], f["min_disk_path"] = f["min_disk"]
        if "cmd_output_logging" in f:
            f["cmd_output_logging"] = str(_path(f["cmd_output_logging"], data_dir, data_dir))
        else:
            f["cmd_output_logging"] = base_log
        if "env" in f:
            f["env"] = dict(f["env"])
        return Profile(source=path, **f)

    if not profiles_raw:
        return [build(defaults)]

    out: list[Profile] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(profiles_raw):
        span = lines.span("profile", i)
        fields = _convert_table(path, lines, span, raw, f"profile {i + 1}")
        if "name" not in fields:
            raise ConfigError(f"{path}:{span[0]}: profile {i + 1}: 'name' is missing")
        name = fields["name"]
        line = lines.find(next(k for k in raw if _BY_NAME.get(k.lower()) == "name"), span)
        if name.lower() in seen:
            raise ConfigError(f"{path}:{line}: name: profile {name!r} is defined twice (also profile {seen[name.lower()]})")
        seen[name.lower()] = i + 1
        merged = {k: v for k, v in defaults.items() if k != "name"}
        merged.update(fields)
        out.append(build(merged))
    return out

