"""A site's dynamic service keys: the "advanced mode" of Tractor's blades.

A blade profile may name a Python file (`keys_plugin = "site_keys.py"` in
blade.toml, relative to the config directory) that changes the service keys
the blade offers, request by request: before each claim the blade calls the
file's function

    def offer(keys, blade):
        # keys: the profile's keys (a list of str)
        # blade: {"name", "profile", "slots", "free_slots", "metrics"}
        return keys + ["ShowA"] if production_db.show_a_has_licences() else keys

and matches the jobs' service expressions against what it returns (any
iterable of strings) for that claim.  The file is loaded when the blade
starts and again when it reloads its profile (tq reloadconfig --blade).

A plug-in that does not load, raises, or returns something that is not a
list of strings is logged (each distinct message once) and the profile's own
keys are offered for that claim: a site's plug-in never stops a blade.  The
database's row of the blade keeps the profile's keys (tq blades, tq trace
show those).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["KeysPlugin"]


class KeysPlugin:
    """The `offer` function of a site's plug-in file, called safely."""

    def __init__(self, path: Path, say: Callable[[str], None]):
        self.path = path
        self.say = say
        self._said: set[str] = set()
        self._offer: Callable[..., Any] | None = None
        self._load()

    def _warn(self, msg: str) -> None:
        if msg not in self._said:  # a plug-in failing at every claim must not flood the log
            self._said.add(msg)
            self.say(f"keys plug-in {self.path}: {msg}; offering the profile's keys")

    def _load(self) -> None:
        name = "tractor_keys_plugin_" + hashlib.sha1(str(self.path).encode()).hexdigest()[:12]
        try:
            spec = importlib.util.spec_from_file_location(name, self.path)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python file")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the site's code: anything may go wrong in it
            self._warn(f"does not load ({type(exc).__name__}: {exc})")
            return
        offer = getattr(module, "offer", None)
        if not callable(offer):
            self._warn("has no offer(keys, blade) function")
            return
        self._offer = offer

    def offer(self, keys: tuple[str, ...], blade: dict[str, Any]) -> tuple[str, ...]:
        """The keys to offer for this claim: the plug-in's answer, or `keys` when it fails."""
        if self._offer is None:
            return keys
        try:
            got = self._offer(list(keys), dict(blade))
            if isinstance(got, str):
                raise TypeError("returned a string, not a list of keys")
            out = tuple(got)
            if not all(isinstance(k, str) for k in out):
                raise TypeError(f"returned {out!r}, not a list of strings")
        except Exception as exc:  # noqa: BLE001 - the site's code
            self._warn(f"offer() failed ({type(exc).__name__}: {exc})")
            return keys
        return out
