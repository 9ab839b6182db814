#!/usr/bin/env python
"""Farm monitor: the blades that are up, and how one job's commands ran, as JSON for a dashboard.

    monitor.py JID
"""

from __future__ import print_function

import json
import sys
from datetime import datetime, timedelta

import tractor.api.query as tq

STAMP = "%Y-%m-%d %H:%M:%S"


def parse(value):
    # Tractor's timestamps carry fractional seconds: '2018-07-22 14:17:13.046+02'
    return datetime.strptime(value.split(".")[0], STAMP)


def main():
    jid = int(sys.argv[1])
    out = {"blades": [], "invocations": []}
    for row in tq.blades("up", columns=["slotsinuse"]):
        out["blades"].append({
            "name": row["name"],
            "profile": row["profile"],
            "numslots": row["numslots"],
            "slotsinuse": row["BladeUse.slotsinuse"],
            "heartbeat": parse(row["heartbeattime"]).strftime(STAMP),
        })
    for row in tq.invocations("jid=%d" % jid, columns=["Blade.profile", "Job.title"],
                              sortby=[["starttime", 1]]):
        start = parse(row["starttime"])
        stop = parse(row["stoptime"]) if row["stoptime"] else None
        elapsed = timedelta(seconds=row["elapsedreal"])
        out["invocations"].append({
            "jid": row["jid"], "tid": row["tid"], "cid": row["cid"],
            "job": row["Job.title"],
            "profile": row["Blade.profile"],
            "rcode": row["rcode"],
            "start": start.strftime(STAMP),
            "stop": stop.strftime(STAMP) if stop else None,
            "wall": (stop - start).total_seconds() if stop else None,
            "elapsed": round(elapsed.total_seconds(), 3),
            "elapsed_text": format(row["elapsedreal"], ".1f"),
        })
    tq.closeEngineClient()
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
