"""Fuzzing run of the parsers (issue 13): every generated input must parse or fail with the
project's own error (a TractorError: one line, with its place); any other exception is a crash.

Not part of the timed test suite.  Run:

    python bench/fuzz.py              # 100,000 inputs per parser
    python bench/fuzz.py -n 5000      # fewer
    python bench/fuzz.py --only alfred clauses

Inputs are mutations of seeds (the corpus of real job scripts, JSON forms of them, tq clauses,
service expressions, configuration files, command words with substitutions): characters and
tokens of each language inserted, deleted, repeated and spliced, from a fixed random seed so a
crash can be replayed (its input is written to bench/results/fuzz-crashes/).  Prints a table and
writes bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CORPUS = REPO.parent / "shared" / "corpus" / "alf"
OUT = BENCH_DIR / "results"


# --- the parsers, each fed one text --------------------------------------------------------


def _alfred(text: str) -> None:
    from tractorcli.jobs import alfred

    alfred.parse(text, "fuzz.alf")


def _json(text: str) -> None:
    from tractorcli.jobs import jsonjob

    jsonjob.from_json(text, "fuzz.json")


def _clause(text: str) -> None:
    from tractorcli.errors import TractorError
    from tractorcli.query.sql import compile_clause

    refusal = None
    for entity in ("job", "task", "command", "invocation", "blade"):  # parsed when one entity takes it
        try:
            compile_clause(entity, text, user="ann")
            return
        except TractorError as exc:
            refusal = exc
    raise refusal


def _service(text: str) -> None:
    from tractorcli.service import parse

    parse(text)


_CFG_DIR = Path(tempfile.mkdtemp(prefix="fuzz-config-"))


def _config(text: str) -> None:
    """The text as each configuration file in turn; parsed when one of them takes it."""
    from tractorcli.blade.profile import load_profiles
    from tractorcli.config import load_settings
    from tractorcli.crews import load_crews
    from tractorcli.errors import TractorError
    from tractorcli.limits import load_limits

    refusal = None
    for name, load in (("tractor.toml", lambda: load_settings(_CFG_DIR, join_host_site=False)),
                       ("db.toml", lambda: load_settings(_CFG_DIR, join_host_site=False)),
                       ("blade.toml", lambda: load_profiles(_CFG_DIR)),
                       ("limits.toml", lambda: load_limits(_CFG_DIR)),
                       ("crews.toml", lambda: load_crews(_CFG_DIR))):
        for p in _CFG_DIR.iterdir():
            p.unlink()
        (_CFG_DIR / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load()
            return
        except TractorError as exc:
            refusal = exc
    raise refusal


def _subst(text: str) -> None:
    from tractorcli.subst import LaunchContext, expand_argv

    ctx = LaunchContext(jid=7, tid=3, cid=9, hostname="b1", hosts=("b1", "b2"), slots=2,
                        idrefs={"srv": ("b2",)}, dirmaps=(("/a", "/b", "linux"),), zone="linux", home="/home/ann",
                        owner="ann", spoolhost="ws1")
    expand_argv(text.split(" "), ctx)


# --- seeds and alphabets ---------------------------------------------------------------------


def _corpus() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(CORPUS.rglob("*")) if p.is_file()] if CORPUS.is_dir() else []


def _json_seeds() -> list[str]:
    from tractorcli.jobs import alfred, jsonjob

    out = []
    for text in _corpus()[:6]:
        try:
            out.append(jsonjob.dumps(alfred.parse(text, "seed.alf")))
        except Exception:  # noqa: BLE001 - a seed that does not convert is skipped
            pass
    return out or ['{"title": "t", "children": [{"title": "a", "commands": [{"argv": ["echo", "a"]}]}]}']


SEEDS = {
    "alfred": (_corpus, ["{", "}", "[", "]", "$", "\\", '"', ";", "\n", " ", "Task", "-subtasks", "-cmds",
                         "RemoteCmd", "Cmd", "Instance", "Iterate", "-from", "-to", "-by", "-template", "Assign",
                         "set", "format", "%d", "%c", "%x", "%999d", "expr", "1e400", "inf", "nan", "list",
                         "string repeat", "append", "lappend", "0x", "\x00", "\ud800", "\t", "#", "Job"]),
    "json": (_json_seeds, ["{", "}", "[", "]", '"', ":", ",", "null", "true", "1e400", "-0", '"\\u0000"',
                           '"\\ud800"', '"argv"', '"children"', '"commands"', '"title"', "NaN", "Infinity"]),
    "clauses": (lambda: ["jid=3 and error", "owner in [ann bob] or not done", "spooltime > -2h",
                         "title like ^shot and priority >= 100", "nimby", "slotsinuse = 2 and name like ^b",
                         "tags has lic", "(a=1 or b=2) and not c"],
                ["and", "or", "not", "(", ")", "[", "]", "=", "!=", "<", ">=", "like", "in", "has", "'", '"',
                 "-3d", "10am", "jid", "owner", "title", "1e999", "\\", " ", "*", "%"]),
    "service": (lambda: ["PixarRender", "linux && !gpu", "(A || B) && C", "@.nCPUs >= 4 && @.mem > 8",
                         "prman,nuke", "Blade*", "@.disk > 10 || @.load < 2"],
                ["&&", "||", "!", "(", ")", ",", "@.", "nCPUs", "mem", ">=", "<", "==", "*", "1e400", " ",
                 "-", "+", "/", "0", "\x00"]),
    "config": (lambda: ['port = 9876\ndata_dir = "/tmp/x"\n', '[defaults]\nprovides = ["A"]\nslots = 2\n',
                        '[limits.nuke]\nSiteMax = 40\nOwnerMax = 0.25\n', '[crews]\nLighting = ["ann"]\n',
                        '[tiers]\nrush = 99\n', 'engine_name = "e"\nmax_list_rows = 10\n'],
                ["=", "[", "]", "{", "}", '"', "'", "\n", ",", ".", "1e400", "-1", "true", "inf", "nan",
                 "SiteMax", "slots", "port", "0x", "#"]),
    "subst": (lambda: ["render %h -n %n", "%H %J %T %C", "%ID(srv) %ID(-srv) %{h}", "%D(/a/x) %r %R %q",
                       "$HOME ${USER} %%", "%(TR_ENV) x"],
              ["%", "%h", "%H", "%n", "%ID(", ")", "%{", "}", "%D(", "$", "${", "%q", "%R", "(", "\\", " "]),
}

PARSERS = {"alfred": _alfred, "json": _json, "clauses": _clause, "service": _service, "config": _config,
           "subst": _subst}


def mutate(rng: random.Random, seeds: list[str], alphabet: list[str]) -> str:
    text = rng.choice(seeds)
    if len(text) > 20000:  # a window of a long script keeps each input quick
        start = rng.randrange(len(text) - 2000)
        text = text[start:start + rng.randint(200, 4000)]
    for _ in range(rng.randint(1, 3)):
        i = rng.randint(0, len(text))
        kind = rng.random()
        if kind < 0.4:
            text = text[:i] + rng.choice(alphabet) + text[i:]
        elif kind < 0.6:
            text = text[:i] + text[i + rng.randint(1, 8):]
        elif kind < 0.75:
            j = min(len(text), i + rng.randint(1, 30))
            text = text[:i] + text[i:j] * rng.randint(2, 5) + text[j:]
        elif kind < 0.9:
            other = rng.choice(seeds)
            k = rng.randint(0, len(other))
            text = text[:i] + other[k:k + rng.randint(1, 60)] + text[i:]
        else:
            text = text[:i] + chr(rng.randint(1, 0x2FF)) + text[i:]
    return text


def run(name: str, n: int, rng: random.Random) -> dict:
    from tractorcli.errors import TractorError

    make_seeds, alphabet = SEEDS[name]
    seeds = make_seeds() or [""]
    parse = PARSERS[name]
    ok = refused = 0
    crashes: dict[str, str] = {}  # exception type and place -> an input
    t0 = time.perf_counter()
    for _ in range(n):
        text = mutate(rng, seeds, alphabet)
        try:
            parse(text)
            ok += 1
        except TractorError:
            refused += 1
        except Exception as exc:  # noqa: BLE001 - what the run counts
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {Path(tb.filename).name}:{tb.lineno}"
            crashes.setdefault(key, text)
    took = time.perf_counter() - t0
    if crashes:
        d = OUT / "fuzz-crashes"
        d.mkdir(parents=True, exist_ok=True)
        for i, (key, text) in enumerate(sorted(crashes.items())):
            (d / f"{name}-{i}.txt").write_text(f"# {key}\n{text}", encoding="utf-8", errors="surrogatepass")
    return {"parser": name, "inputs": n, "parsed": ok, "refused": refused,
            "crashes": n - ok - refused, "distinct_crashes": sorted(crashes), "seconds": round(took, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="inputs per parser (default 100,000)")
    ap.add_argument("--only", nargs="*", choices=sorted(PARSERS), help="these parsers only")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    results = []
    for name in args.only or list(PARSERS):
        r = run(name, args.n, random.Random(f"{args.seed}-{name}"))
        results.append(r)
        print(f"{name:8} {r['inputs']:>8,} inputs  {r['parsed']:>8,} parsed  {r['refused']:>8,} refused  "
              f"{r['crashes']:>6,} crashes  {r['seconds']:>7.1f} s", flush=True)
        for key in r["distinct_crashes"]:
            print(f"         crash: {key}")
    OUT.mkdir(exist_ok=True)
    (OUT / "fuzz.json").write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    raise SystemExit(main())
