#!/usr/bin/env python
"""Morning wrangling: retry the error tasks of the last day's jobs, highest priority first.

    wrangler_retry.py USER

Prints one line per job looked at, then a JSON summary on the last line:
{"retried": [[jid, tid], ...], "refused": [jid, ...], "order": [jid, ...]}.
"""

from __future__ import print_function

import json
import sys

import tractor.api.query as tq


def main():
    user = sys.argv[1]
    tq.setEngineClientParam(user=user)
    summary = {"retried": [], "refused": [], "order": []}
    for job in tq.jobs("error and spooltime > -1d", columns=["jid", "title"], sortby=["-priority"], limit=0):
        jid = int(job["jid"])
        summary["order"].append(jid)
        tasks = tq.tasks("jid=%d and state=error" % jid, columns=["Job.owner"])
        if not tasks:
            continue
        first, rest = tasks[0], tasks[1:]
        try:
            # one task as a bare dict, the others as the result rows themselves
            rv = tq.retry({"jid": first["jid"], "tid": first["tid"]})
            assert rv is None, "retry returned %r" % (rv,)
            if rest:
                rv = tq.retry(rest)
                assert rv is None, "retry returned %r" % (rv,)
        except tq.TractorQueryError as err:
            print("job %d (%s, owner %s): not retried: %s" % (jid, job["title"], first["Job.owner"], err))
            summary["refused"].append(jid)
            continue
        for t in tasks:
            summary["retried"].append([int(t["jid"]), int(t["tid"])])
        print("job %d (%s): retried %d task(s)" % (jid, job["title"], len(tasks)))
    tq.closeEngineClient()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
