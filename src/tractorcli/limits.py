"""Limits (`limits.toml`): how many commands carrying a tag may run at once: the file read and checked.

The counting and the refusals are the database's: the site loads the file
into it (db/limits.py) and the claim asks functions/limits.sql.

Tractor keeps its limits in `limits.config` (JSON, a "Limits" dictionary of
SiteMax, SiteMaxCounting, OwnerMax, OwnerExceptions, BladeMax,
BladeExceptions).  Ours is a TOML file in the site's config directory with
the same names, one table per limit tag, and shares per project and crew:

    [limits.nuke]                   # a tag: a command's -tags, its job's -tags, or its program's name
    SiteMax = 40                    # commands at once on the whole farm (-1 or absent: no maximum)
    OwnerMax = 10                   # for each job owner
    OwnerExceptions = { bob = 2 }   # other maxima for some owners
    BladeMax = 1                    # on each blade
    BladeExceptions = { bighost = 4 }
    ProjectShares = { showA = 0.5, showB = 12 }   # per project: a fraction of SiteMax or a count
    CrewShares = { Lighting = 0.25 }               # per crew (crews.toml) of the job's owner
    Description = "Nuke licences"

    [limits.houdini]
    SiteMax = 25
    SiteMaxCounting = "perHost"     # a host counts once, however many commands it runs

Rules (our choices where Tractor's reference is silent):

* a command's tags are its `-tags`, its job's `-tags` and the base name of
  its program (argv[0]); it may start only when every limit among them has
  room on the site, on the blade, for its owner, for each of its job's
  projects and for each crew of its owner that has a share;
* counts are numbers of running commands (invocations), whatever slots they
  take; `perHost` counts the hosts running at least one;
* a fraction (a number below 1, or 1.0) is of SiteMax, rounded up; it needs
  a SiteMax;
* keys are matched without regard to case; unknown keys and sections, bad
  values and TOML syntax errors are a `ConfigError` naming the file and line.

No click, no rich, no database here.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TomlLines, load_toml
from .errors import ConfigError

__all__ = ["LIMITS_FILE", "COUNTINGS", "Limit", "Limits", "load_limits"]

LIMITS_FILE = "limits.toml"
COUNTINGS = ("perInvocation", "perHost")
_TAG = re.compile(r"[A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class Limit:
    """One limit; -1: no maximum.  Shares and exceptions are counts (fractions resolved)."""

    name: str
    sitemax: int = -1
    sitecounting: str = "perInvocation"
    ownermax: int = -1
    ownerexceptions: dict[str, int] = field(default_factory=dict)
    blademax: int = -1
    bladeexceptions: dict[str, int] = field(default_factory=dict)
    projectshares: dict[str, int] = field(default_factory=dict)
    crewshares: dict[str, int] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Limits:
    """The site's limits; `path` None: no limits.toml."""

    path: Path | None = None
    limits: tuple[Limit, ...] = ()

    @property
    def configured(self) -> bool:
        return self.path is not None


_KEYS = {k.lower(): k for k in ("SiteMax", "SiteMaxCounting", "OwnerMax", "OwnerExceptions", "BladeMax",
                                "BladeExceptions", "ProjectShares", "CrewShares", "Description")}


def _count(path: Path, line: int, where: str, value: Any, sitemax: int | None, *, unlimited: bool = True) -> int:
    """A maximum: an integer (-1: none, where allowed) or a fraction of SiteMax (0 < f <= 1)."""
    if isinstance(value, bool):
        raise ConfigError(f"{path}:{line}: {where}: expected a number, got {value!r}")
    if isinstance(value, int):
        if value < (-1 if unlimited else 0):
            raise ConfigError(f"{path}:{line}: {where}: expected {'-1 (no maximum) or ' if unlimited else ''}"
                              f"a count of 0 or more, got {value}")
        return value
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise ConfigError(f"{path}:{line}: {where}: a fraction of SiteMax is above 0 and at most 1, got {value}")
        if sitemax is None or sitemax < 0:
            raise ConfigError(f"{path}:{line}: {where}: a fraction ({value}) needs a SiteMax to be a fraction of")
        return math.ceil(value * sitemax)
    raise ConfigError(f"{path}:{line}: {where}: expected a number, got {value!r}")


def _counts(path: Path, line: int, where: str, value: Any, sitemax: int | None) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}:{line}: {where}: expected a table of names and counts, "
                          "as in { bob = 2 }")
    return {str(k): _count(path, line, f"{where}.{k}", v, sitemax, unlimited=False) for k, v in value.items()}


def _limit(path: Path, lines: TomlLines, name: str, value: Any) -> Limit:
    section = f"limits.{name}"
    if not _TAG.fullmatch(name):
        raise ConfigError(f"{path}:{lines.header(section)}: {name!r} is not a limit tag "
                          "(letters, digits, '_', '.', '+' or '-')")
    if not isinstance(value, dict):
        raise ConfigError(f"{path}:{lines.key('limits', name)}: {section}: expected a table: write [{section}]")
    raw: dict[str, tuple[int, Any]] = {}
    for key, v in value.items():
        canon = _KEYS.get(key.lower())
        line = lines.key(section, key)
        if canon is None:
            raise ConfigError(f"{path}:{line}: {section}: unknown key {key!r} "
                              f"(known: {', '.join(_KEYS.values())})")
        if canon in raw:
            raise ConfigError(f"{path}:{line}: {section}: {key} set twice")
        raw[canon] = (line, v)

    def get(key: str):
        return raw.get(key, (lines.header(section), None))

    line, v = get("SiteMax")
    sitemax = -1 if v is None else _count(path, line, f"{section}.SiteMax", v, None)
    line, v = get("SiteMaxCounting")
    counting = "perInvocation"
    if v is not None:
        match = [c for c in COUNTINGS if isinstance(v, str) and v.lower() == c.lower()]
        if not match:
            raise ConfigError(f"{path}:{line}: {section}.SiteMaxCounting: expected perInvocation or perHost, "
                              f"got {v!r}")
        counting = match[0]
    line, v = get("Description")
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"{path}:{line}: {section}.Description: expected a string, got {v!r}")
    out: dict[str, Any] = {"sitemax": sitemax, "sitecounting": counting, "description": v or ""}
    for key, attr in (("OwnerMax", "ownermax"), ("BladeMax", "blademax")):
        line, v = get(key)
        if v is not None:
            out[attr] = _count(path, line, f"{section}.{key}", v, sitemax)
    for key, attr in (("OwnerExceptions", "ownerexceptions"), ("BladeExceptions", "bladeexceptions"),
                      ("ProjectShares", "projectshares"), ("CrewShares", "crewshares")):
        line, v = get(key)
        if v is not None:
            out[attr] = _counts(path, line, f"{section}.{key}", v, sitemax)
    return Limit(name=name, **out)


def load_limits(config_dir: str | os.PathLike) -> Limits:
    """The limits of the site whose config directory is `config_dir`.

    No limits.toml there: `Limits()` (not configured).
    Raises `ConfigError` naming `file:line` for anything malformed.
    """
    path = Path(config_dir) / LIMITS_FILE
    if not path.is_file():
        return Limits()
    text, data = load_toml(path)
    lines = TomlLines(text)
    for key, value in data.items():
        if key != "limits":
            raise ConfigError(f"{path}:{lines.header(key)}: unknown section or key {key!r} "
                              "(limits.toml has [limits.TAG] tables)")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}:{lines.key(None, key)}: limits: expected tables: write [limits.TAG]")
    return Limits(path=path, limits=tuple(_limit(path, lines, name, value)
                                          for name, value in data.get("limits", {}).items()))
