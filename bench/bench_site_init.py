"""site_init: how long it takes to bring up a brand-new site, and to stop and start one.

Each round makes a new scratch site and times, with the installed
`tractor-dbctl`:

* `--start-for-engine` on an empty data directory: initdb, start, create the
  job database, apply the schema (start_for_engine_new);
* `--stop`, `--start`, `--stop` again;
* `--start-for-engine` on the existing, stopped site (start + schema check);
* `--init` alone on another empty data directory, to split the first figure
  into initdb and the rest.

Medians over the rounds.
"""

from __future__ import annotations

from _common import Site, figure, log, pick_port, summary

ROUNDS_FULL = 3
ROUNDS_QUICK = 2


def run(quick: bool) -> list[dict]:
    rounds = ROUNDS_QUICK if quick else ROUNDS_FULL
    port = pick_port(9922)
    t: dict[str, list[float]] = {k: [] for k in ("sfe_new", "stop", "start", "sfe_existing", "init")}
    for i in range(rounds):
        log(f"round {i + 1}/{rounds} (port {port})")
        with Site("init", port) as site:
            t["sfe_new"].append(site.timed("--start-for-engine"))
            t["stop"].append(site.timed("--stop"))
            t["start"].append(site.timed("--start"))
            t["stop"].append(site.timed("--stop"))
            t["sfe_existing"].append(site.timed("--start-for-engine"))
            t["stop"].append(site.timed("--stop"))
        with Site("initonly", port) as site:
            t["init"].append(site.timed("--init"))

    def fig(name: str, key: str, note: str) -> dict:
        s = summary(t[key])
        return figure(name, s.pop("value"), "s", None, note=note, **s)

    out = [
        fig("start_for_engine_new", "sfe_new", "--start-for-engine on an empty data dir: initdb + start + createdb + schema"),
        fig("init_only", "init", "--init on an empty data dir (initdb and our config files)"),
        fig("start", "start", "--start of a stopped site, until it answers"),
        fig("stop", "stop", "--stop (fast shutdown) of a running site"),
        fig("start_for_engine_existing", "sfe_existing", "--start-for-engine on an initialized, stopped site"),
    ]
    rest = out[0]["value"] - out[1]["value"] - out[2]["value"]
    out.append(figure("createdb_and_schema_estimate", round(rest, 4), "s", None,
                      note="start_for_engine_new - init_only - start: create database + migrations + program overhead"))
    return out
