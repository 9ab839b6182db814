"""Launch-time substitutions and the launch environment of a command.

A blade applies these to each argv word of a command just before it runs it
(reference §4.6; Tractor's "Process Launch and Tracking" page).  The argv was
tokenised once at spool time, so substitution never splits or joins words,
with one exception: a word that is *only* a host-list sequence (`%h`, `%H`,
`%{h}`, `%ID(host)`, `%ID(-host)`, `%ID`) becomes one argv word per item, so that
`netrender %H scene.rib` runs `netrender -h a -h b scene.rib`.  Embedded in
a longer word, the items are joined with spaces.

| sequence        | expands to                                                    |
|-----------------|---------------------------------------------------------------|
| `~`, `~user`    | at the start of a word: the (blade user's / named user's) home |
| `%h`            | the host names bound to the command, blank separated           |
| `%H`            | the same as `-h host` pairs (netrender style)                  |
| `%n`            | the number of slots bound to the command                      |
| `%j` `%t` `%c`  | jid, tid, cid                                                  |
| `%r`            | recover mode: 0 for a fresh start, >= 1 when resuming          |
| `%R`            | the `-resumewhile` loop count (from 0)                        |
| `%q`            | the quality hint (`1.0` final, less when a subtask only checkpointed) |
| `%ID(host)`     | the host names bound to the command or task with `-id ID`     |
| `%ID(-host)`    | the same as `-h host` pairs                                   |
| `%ID`           | (no suffix, ID not a built-in name) like `%ID(host)`          |
| `%D(path)`      | `path` mapped by the job's dirmaps for the blade's zone       |
| `%%`            | one `%`                                                       |

Names are the longest run of letters, digits, `_` and `.` after the `%` (a
trailing `.` is not part of a name), exactly as Tractor's documentation
warns: `%h.settings` names the id `h.settings`; write `%{h}.settings`.
Braces delimit a name anywhere: `%{t}`, `%{bob}(host)`.

Anything else is kept literally, character for character: a `%` before a
character that cannot start a name (`% `, `%-`, a trailing `%`), an unknown
name (`%04d`, `%s`, `%t.exr`), an id that the context does not know, an
unterminated `%D(`.  Tractor's docs leave this open; keeping the text means a
printf-style pattern passes through untouched and a mistake is visible in
the command line.  Pass `unknown=[]` to collect such sequences (a blade logs
them as a hint).

`%D(...)`: the text inside the parentheses (up to the matching `)`) is first
substituted itself, then the first dirmap of the blade's zone (compared
without case) whose source is a prefix of it replaces that prefix; with no
match the path is used unchanged.  Values put in are never scanned again.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from .errors import BadInput

__all__ = [
    "LaunchContext",
    "EnvKeyHandler",
    "expand_argv",
    "expand_word",
    "expand_text",
    "escape",
    "dirmap",
    "launch_env",
    "expand_vars",
    "default_zone",
]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_BUILTINS = frozenset("hHnjtcrRq")
_HOSTLIST = re.compile(r"%(?:([hH])|\{([hH])\}|(?:\{([A-Za-z0-9_.]+)\}|([A-Za-z0-9_.]*[A-Za-z0-9_]))(\((-?)host\))?)\Z")
_TILDE_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?\Z")


def default_zone() -> str:
    """The dirmap zone of a blade whose profile names none: `unc` on Windows, else `nfs`."""
    return "unc" if sys.platform.startswith("win") else "nfs"


@dataclass(frozen=True)
class LaunchContext:
    """Everything substitutions and the launch environment need to know.

    `hosts` are the hosts bound to the command (`%h`); empty means just this
    blade (`hostname`), which is the case for every ordinary RemoteCmd.
    `idrefs` maps `-id` names to their bound hosts.  `home` is the home of the
    account the command runs as (None: the current user's).
    """

    jid: int
    tid: int
    cid: int
    hostname: str = ""
    hosts: Sequence[str] = ()
    slots: int = 1
    recover: int = 0  # %r
    resume_count: int = 0  # %R
    quality: float = 1.0  # %q
    idrefs: Mapping[str, Sequence[str]] = field(default_factory=dict, hash=False)
    dirmaps: Sequence[Sequence[str]] = ()  # (src, dst, zone) triples
    zone: str = field(default_factory=default_zone)
    home: str | None = None
    owner: str = ""
    spoolhost: str = ""
    projects: Sequence[str] = ("default",)
    tractor_root: str = field(default_factory=lambda: sys.prefix)

    def bound_hosts(self) -> list[str]:
        if self.hosts:
            return [str(h) for h in self.hosts]
        return [self.hostname] if self.hostname else []


def _hpairs(hosts: Iterable[str]) -> list[str]:
    out: list[str] = []
    for h in hosts:
        out += ("-h", h)
    return out


def _builtin(name: str, ctx: LaunchContext) -> str:
    if name == "j":
        return str(ctx.jid)
    if name == "t":
        return str(ctx.tid)
    if name == "c":
        return str(ctx.cid)
    if name == "n":
        return str(ctx.slots)
    if name == "r":
        return str(ctx.recover)
    if name == "R":
        return str(ctx.resume_count)
    if name == "q":
        return repr(float(ctx.quality))
    if name == "h":
        return " ".join(ctx.bound_hosts())
    return " ".join(_hpairs(ctx.bound_hosts()))  # "H"


def dirmap(path: str, dirmaps: Iterable[Sequence[str]], zone: str) -> str:
    """`path` with the first matching source prefix of `zone`'s dirmaps replaced.

    Entries that are not three strings are ignored (as Tractor's blade does).
    """
    z = zone.lower()
    for m in dirmaps:
        if len(m) != 3 or not all(isinstance(x, str) for x in m):
            continue
        src, dst, mzone = m
        if mzone.lower() == z and src and path.startswith(src):
            return dst + path[len(src):]
    return path


def _matching_paren(s: str, i: int) -> int:
    """Index of the `)` closing the `(` at `i`, or -1."""
    depth = 0
    for k in range(i, len(s)):
        c = s[k]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return k
    return -1


def _expand(s: str, ctx: LaunchContext, unknown: list[str] | None) -> str:
    out: list[str] = []
    i = 0
    while True:
        j = s.find("%", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        out.append(s[i:j])
        i = _one(s, j, ctx, out, unknown)


def _one(s: str, j: int, ctx: LaunchContext, out: list[str], unknown: list[str] | None) -> int:
    """Expand the sequence starting with the `%` at `j`; return where to go on."""
    n = len(s)
    k = j + 1
    if k >= n:
        out.append("%")
        return n
    c = s[k]
    if c == "%":
        out.append("%")
        return k + 1
    if c == "{":
        close = s.find("}", k + 1)
        name = s[k + 1:close] if close > 0 else ""
        if not name or not all(ch in _NAME_CHARS for ch in name):
            out.append("%")
            if unknown is not None:
                unknown.append(s[j:close + 1] if close > 0 else s[j:])
            return k
        end = close + 1
    elif c in _NAME_CHARS:
        e = k
        while e < n and s[e] in _NAME_CHARS:
            e += 1
        while e > k and s[e - 1] == ".":
            e -= 1
        if e == k:  # "%." and the like
            out.append("%")
            return k
        name, end = s[k:e], e
    else:
        out.append("%")
        return k

    if name == "D" and end < n and s[end] == "(":
        close = _matching_paren(s, end)
        if close < 0:
            out.append(s[j:end])
            if unknown is not None:
                unknown.append(s[j:])
            return end
        out.append(dirmap(_expand(s[end + 1:close], ctx, unknown), ctx.dirmaps, ctx.zone))
        return close + 1

    if s.startswith("(host)", end) or s.startswith("(-host)", end):
        ids = ctx.idrefs.get(name) if ctx.idrefs else None
        if ids is not None:
            pairs = s[end + 1] == "-"
            hosts = [str(h) for h in ids]
            out.append(" ".join(_hpairs(hosts) if pairs else hosts))
            return end + (7 if pairs else 6)
    if name in _BUILTINS:
        out.append(_builtin(name, ctx))
        return end
    ids = ctx.idrefs.get(name) if ctx.idrefs else None
    if ids is not None:
        out.append(" ".join(str(h) for h in ids))
        return end
    out.append(s[j:end])
    if unknown is not None:
        unknown.append(s[j:end])
    return end


def _tilde(word: str, ctx: LaunchContext) -> tuple[str, str] | None:
    """(home, rest) when `word` starts with an expandable `~` or `~user`."""
    slash = word.find("/")
    prefix, rest = (word, "") if slash < 0 else (word[:slash], word[slash:])
    user = prefix[1:]
    if not user:
        return (ctx.home if ctx.home is not None else os.path.expanduser("~")), rest
    if not _TILDE_USER.match(user):
        return None
    try:
        import pwd

        return pwd.getpwnam(user).pw_dir, rest
    except (ImportError, KeyError):
        return None


def expand_text(text: str, ctx: LaunchContext, *, unknown: list[str] | None = None) -> str:
    """`%` substitutions in free text (a `-msg`): no `~`, host lists joined by spaces."""
    if "%" not in text:
        return text
    return _expand(text, ctx, unknown)


def expand_word(word: str, ctx: LaunchContext, *, unknown: list[str] | None = None) -> str:
    """One argv word with `~` and `%` substitutions (host lists joined by spaces)."""
    if word.startswith("~"):
        t = _tilde(word, ctx)
        if t is not None:
            home, rest = t
            return home + expand_text(rest, ctx, unknown=unknown)
    return expand_text(word, ctx, unknown=unknown)


def expand_argv(argv: Iterable[str], ctx: LaunchContext, *, unknown: list[str] | None = None) -> list[str]:
    """The argv a blade executes: every word substituted (see the module doc).

    Never raises on odd text: whatever is not a known sequence is kept.
    A word that is exactly a host list (`%h`, `%H`, `%{h}`, `%ID(host)`,
    `%ID(-host)`, `%ID`) becomes one word per item.
    """
    out: list[str] = []
    for word in argv:
        if "%" not in word and not word.startswith("~"):
            out.append(word)
            continue
        m = _HOSTLIST.match(word) if word.startswith("%") else None
        if m is not None:
            letter = m.group(1) or m.group(2)
            if letter:
                hosts = ctx.bound_hosts()
                out += _hpairs(hosts) if letter == "H" else hosts
                continue
            name = m.group(3) or m.group(4)
            ids = ctx.idrefs.get(name) if ctx.idrefs else None
            if ids is not None and (m.group(5) or name not in _BUILTINS):
                hosts = [str(h) for h in ids]
                out += _hpairs(hosts) if m.group(6) else hosts
                continue
        out.append(expand_word(word, ctx, unknown=unknown))
    return out


def escape(text: str) -> str:
    """`text` protected from `%` substitution: `expand_text(escape(t), ctx) == t`."""
    return text.replace("%", "%%")


# --- the launch environment ------------------------------------------------


@dataclass(frozen=True)
class EnvKeyHandler:
    """One entry of a blade profile's `envkeys` (Tractor's `EnvKeys`).

    `keys` are glob patterns matched (case-sensitively) against the envkeys a
    command carries; the handler named "default" applies to every command.
    `environment` values may refer to variables as `$NAME` or `${NAME}`.
    `name` is Tractor's `envhandler` (a Python handler there); only the
    environment dictionary is applied here.
    """

    keys: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict, hash=False)
    name: str = ""

    def matches(self, key: str) -> bool:
        return any(fnmatchcase(key, p) for p in self.keys)


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def expand_vars(value: str, env: Mapping[str, str]) -> str:
    """`$NAME` and `${NAME}` replaced from `env`; an unset variable gives ""."""
    if "$" not in value:
        return value
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _setenv(key: str, env: dict[str, str]) -> None:
    from .jobs.tcl import TclError, split_list

    rest = key.strip()[len("setenv"):]
    try:
        words = split_list(rest)
    except TclError:
        words = rest.split()
    for w in words:
        name, eq, value = w.partition("=")
        if not eq or not _ENV_NAME.match(name):
            raise BadInput(f"envkey {key!r}: {w!r} is not NAME=value")
        env[name] = expand_vars(value, env)


def _handlers(handlers) -> list[EnvKeyHandler]:
    if not handlers:
        return []
    if isinstance(handlers, Mapping):
        return [EnvKeyHandler((str(k),), dict(v)) for k, v in handlers.items()]
    return list(handlers)


def launch_env(
    base_env: Mapping[str, str],
    ctx: LaunchContext,
    envkeys: Iterable[str] | str = (),
    handlers: Sequence[EnvKeyHandler] | Mapping[str, Mapping[str, str]] = (),
    *,
    unmatched: list[str] | None = None,
) -> dict[str, str]:
    """The environment a command is launched with.

    In order, each step seeing the result of the previous ones:

    1. a copy of `base_env` (the blade's own environment);
    2. the job context: `TR_ENV_JID`, `TR_ENV_TID`, `TR_ENV_CID`,
       `TR_ENV_JOB_PROJECT` (the projects, blank separated),
       `TR_ENV_TRACTOR_ROOT`, and when the spooling host is known
       `TR_SPOOLHOST` and `REMOTEHOST` (what Tractor's default handler sets);
    3. the handler whose keys match `default` (every command);
    4. each of the command's envkeys in order: `setenv A=x B=y` sets those
       variables; any other key selects the first handler whose patterns
       match it.  A `NAME=value` key that a handler matches (Tractor's
       `"SHOT=*"` style) also sets `NAME` before that handler's environment
       is applied, so `$SHOT` can be used there.  Keys no handler matches
       are appended to `unmatched` (and otherwise ignored).

    Handler values may refer to variables (`$PATH`, `${RMANTREE}`), expanded
    against the environment built so far; unset ones give "".
    A `handlers` mapping (`{"key": {"VAR": "value"}}`) is taken as one
    handler per key.  Raises `BadInput` for a malformed `setenv` key.
    """
    env = dict(base_env)
    env["TR_ENV_JID"] = str(ctx.jid)
    env["TR_ENV_TID"] = str(ctx.tid)
    env["TR_ENV_CID"] = str(ctx.cid)
    env["TR_ENV_JOB_PROJECT"] = " ".join(ctx.projects)
    env["TR_ENV_TRACTOR_ROOT"] = ctx.tractor_root
    if ctx.spoolhost:
        env["TR_SPOOLHOST"] = ctx.spoolhost
        env["REMOTEHOST"] = ctx.spoolhost
    hs = _handlers(handlers)

    def apply(h: EnvKeyHandler) -> None:
        for name, value in h.environment.items():
            env[name] = expand_vars(str(value), env)

    for h in hs:
        if h.matches("default"):
            apply(h)
            break
    if isinstance(envkeys, str):
        envkeys = (envkeys,)
    for key in envkeys:
        k = key.strip()
        if not k or k == "default":
            continue
        if k == "setenv" or k.startswith(("setenv ", "setenv\t", "setenv\n")):
            _setenv(k, env)
            continue
        for h in hs:
            if h.matches(k):
                name, eq, value = k.partition("=")
                if eq and _ENV_NAME.match(name):
                    env[name] = value
                apply(h)
                break
        else:
            if unmatched is not None:
                unmatched.append(k)
    return env
