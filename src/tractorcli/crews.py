"""Crews (`crews.toml`): who may use `tq --force` on whose jobs: the file read and checked.

The rules themselves are the database's: the site loads the file into it
(db/crews.py) and functions/permissions.sql decides.

Tractor keeps its crews in `crews.config` (JSON): named crews of users, the
reserved crews Administrators and Wranglers, crews that name other crews.
Ours is a TOML file in the site's config directory:

    [crews]
    Administrators = ["root"]
    Wranglers = ["wendy"]
    Lighting = ["carol", "dave"]
    Lookdev = ["erin", "Lighting"]     # a crew may include other crews

    [force]
    # members of (crew or user) = [crews or users whose jobs they may force on]; "*" = anyone's
    Lighting = ["Lighting"]
    dave = ["erin"]

Rules (our choices where Tractor's reference is silent):

* no `crews.toml` at all: only the site owner (the site's role) may use --force;
* with one: members of Administrators and Wranglers may force on anyone's
  jobs; everyone else only as `[force]` allows; one's own jobs never need
  --force;
* a name in a crew list or in `[force]` is a crew when `[crews]` defines a
  crew of that name, else a user name (so a crew hides a user of the same
  name); `"*"` in a `[force]` list means anyone's jobs, and `"*"` as a
  `[force]` key means every user;
* a crew that includes itself, directly or through other crews, is an error,
  as are unknown sections, values that are not lists of names, and TOML
  syntax errors: a `ConfigError` naming the file and line.

No click, no rich, no database here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TomlLines as _Lines
from .config import load_toml
from .errors import ConfigError

__all__ = ["ADMINISTRATORS", "CREWS_FILE", "WRANGLERS", "Crews", "load_crews"]

CREWS_FILE = "crews.toml"
ADMINISTRATORS = "Administrators"
WRANGLERS = "Wranglers"
ANYONE = "*"
_SECTIONS = ("crews", "force")


@dataclass(frozen=True)
class Crews:
    """The site's crews, nested crews expanded, and its `[force]` rules.

    `path` is None when the site has no crews.toml.
    """

    path: Path | None = None
    # crew -> the users in it, nested crews expanded
    crews: dict[str, frozenset[str]] = field(default_factory=dict)
    # crew, user or "*" -> the crews, users or "*" whose jobs they may force on
    force: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return self.path is not None

    def members(self, crew: str) -> frozenset[str]:
        """The users of `crew` (nested crews expanded); empty for an unknown crew."""
        return self.crews.get(crew, frozenset())

    def crews_of(self, user: str) -> list[str]:
        """The crews `user` belongs to, directly or through nested crews, sorted."""
        return sorted(c for c, users in self.crews.items() if user in users)

    def is_member(self, user: str, crew: str) -> bool:
        return user in self.members(crew)


# --- loading -----------------------------------------------------------------------------


def _names(path: Path, line: int, where: str, value: Any, *, anyone: bool) -> tuple[str, ...]:
    if isinstance(value, str):  # "carol, dave" as in Tractor's comma-separated lists
        value = [s for s in re.split(r"[,\s]+", value) if s]
    if not isinstance(value, list) or not all(isinstance(s, str) and s.strip() for s in value):
        raise ConfigError(f"{path}:{line}: {where}: expected a list of names, got {value!r}")
    names = tuple(s.strip() for s in value)
    if not anyone and ANYONE in names:
        raise ConfigError(f"{path}:{line}: {where}: \"*\" (anyone) is only for [force]")
    return names


def _expand(path: Path, lines: _Lines, raw: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}

    def visit(crew: str, trail: list[str]) -> frozenset[str]:
        if crew in out:
            return out[crew]
        if crew in trail:
            cycle = trail[trail.index(crew):] + [crew]
            raise ConfigError(f"{path}:{lines.key('crews', cycle[0])}: crew cycle: {' -> '.join(cycle)}")
        users: set[str] = set()
        for name in raw[crew]:
            if name in raw:
                users |= visit(name, trail + [crew])
            else:
                users.add(name)
        out[crew] = frozenset(users)
        return out[crew]

    for crew in raw:
        visit(crew, [])
    return out


def load_crews(config_dir: str | os.PathLike) -> Crews:
    """The crews of the site whose config directory is `config_dir`.

    No crews.toml there: `Crews()` (not configured).
    Raises `ConfigError` naming `file:line` for anything malformed.
    """
    path = Path(config_dir) / CREWS_FILE
    if not path.is_file():
        return Crews()
    text, data = load_toml(path)
    lines = _Lines(text)
    for key, value in data.items():
        if key not in _SECTIONS:
            raise ConfigError(f"{path}:{lines.header(key)}: unknown section or key {key!r} "
                              f"(crews.toml has [crews] and [force])")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}:{lines.key(None, key)}: {key}: expected a table: write [{key}]")
    raw: dict[str, tuple[str, ...]] = {}
    for crew, value in data.get("crews", {}).items():
        line = lines.key("crews", crew)
        if not crew.strip() or crew == ANYONE:
            raise ConfigError(f"{path}:{line}: {crew!r} is not a crew name")
        raw[crew] = _names(path, line, f"crews.{crew}", value, anyone=False)
    force: dict[str, tuple[str, ...]] = {}
    for who, value in data.get("force", {}).items():
        line = lines.key("force", who)
        if not who.strip():
            raise ConfigError(f"{path}:{line}: force: an empty name")
        force[who] = _names(path, line, f"force.{who}", value, anyone=True)
    return Crews(path=path, crews=_expand(path, lines, raw), force=force)
