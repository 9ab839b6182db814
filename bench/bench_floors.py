"""floors: what the machine itself costs per command and per spooled task, whatever tractorcli does.

Issue 14 asks for 1,500 trivial commands/s end to end with 2-4 local blades,
and a 100,000-task spool in under 1.2 s, on this 2-core machine.  These
figures measure the parts of those budgets that no change to the blade or the
spooler's client can take away, and the server's SQL on its own:

* `floor_child_ms`: the CPU (user + system) of running `/bin/true` itself,
  from `os.posix_spawn` (the cheapest way Python has): its exec, dynamic
  linking and exit.  `floor_spawn_parent_ms`: the spawning process's own
  share (posix_spawn and waitpid); `floor_spawn_pipe_log_ms`: parent and
  child with what every command needs (`subprocess.Popen`, its output read
  from a pipe and written to a log file of its own on /dev/shm, a session
  of its own).
* `floor_server_N_slots_ms`: the server's CPU per command for claiming and
  finishing commands through the real SQL functions, with nothing else on
  the machine to wait for: one simulated blade of N slots (`farm_sim`,
  hold 0, everything it holds reported and claimed again in one cycle) on a
  queue of 150,000 one-command tasks, vacuumed and analyzed first; each size
  three times in turn, the median.  More slots, more commands a cycle.
* `floor_dispatch_N_slots_rate`: the most commands/s two cores can run when
  a command costs its child, its spawn and the server's floor and nothing
  else (no blade bookkeeping, no log, no idle): 2 / (child + parent +
  server).  An upper bound, not a forecast.
* `floor_spool_100k_server_s`: the backend's CPU to store the rows of a
  spooled 100,000-task job (tasks, commands, ready, the columns the spool
  copies: binary COPY of rows encoded beforehand, in a transaction rolled
  back), with nothing else: parsing, encoding and sending cost nothing
  here.  Best of three.

The budget of 1,500 commands/s on two cores is 1.33 ms of CPU a command.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile

from _common import BenchError, Site, clean_env, cpu_times, figure, log, pick_port, settle

BUDGET_MS = 2 / 1500 * 1000  # ms of CPU a command at 1,500/s on two cores


def _cpu() -> tuple[float, float]:
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def spawn_floor(n: int) -> dict[str, float]:
    """ms of CPU per /bin/true: (child, parent) by posix_spawn; both, through Popen with a pipe and a log."""
    env = dict(os.environ)
    c0, k0 = _cpu()
    for _ in range(n):
        pid = os.posix_spawn("/bin/true", ["/bin/true"], env)
        os.waitpid(pid, 0)
    c1, k1 = _cpu()
    out = {"child": (k1 - k0) / n * 1000, "parent": (c1 - c0) / n * 1000}
    logs = tempfile.mkdtemp(prefix="tractor-bench-floors-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    try:
        c0, k0 = _cpu()
        for i in range(n):
            with open(os.path.join(logs, f"{i}.log"), "wb") as f:
                p = subprocess.Popen(["/bin/true"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
                for chunk in iter(lambda: p.stdout.read1(65536), b""):
                    f.write(chunk)
                p.stdout.close()
                p.wait()
        c1, k1 = _cpu()
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    out["pipe_log"] = ((c1 - c0) + (k1 - k0)) / n * 1000
    return out


def server_floor(site: Site, slots: int, seconds: float) -> float:
    """ms of server CPU per command: one simulated blade of `slots` slots, hold 0."""
    import farm_sim

    farm = farm_sim.Farm(site.settings, 1, pool=1, slots=slots, hold=0.0, data_dir=site.db_data_dir, engine=False)
    r = farm.run(seconds=seconds, warmup=1.0)
    if not r.claims:
        raise BenchError(f"the simulated blade of {slots} slots claimed nothing")
    return r.server_cpu / r.claims * 1000


def _spooled_columns(table: str) -> list[str]:
    """The columns a spool copies into `table`, as its COPY statement (queries.sql) lists them."""
    from tractorcli.db import queries

    text = queries.get(f"spool_copy_{table}")
    return [c.strip() for c in text[text.index("(") + 1:text.index(")")].split(",")]


def spool_server_floor(site: Site, tasks: int, tries: int) -> float:
    """Seconds of the server's CPU to store a spooled job's rows of `tasks` tasks, best of `tries`."""
    from psycopg import sql

    import bench_spool

    path = site.root / f"floor{tasks}.alf"
    bench_spool.write_job(path, tasks)
    subprocess.run([bench_spool.spool_script(), "--configdir", str(site.config_dir), "-q", str(path)],
                   check=True, env=clean_env(), stdin=subprocess.DEVNULL)
    settle(site)
    best = None
    with site.connect(autocommit=True) as conn:
        src = conn.execute("SELECT max(jid) FROM jobs").fetchone()[0]
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        for _ in range(tries):
            new = conn.execute("SELECT nextval('jid_seq')").fetchone()[0]
            data = []
            for table in ("tasks", "commands", "ready"):
                cols = _spooled_columns(table)
                names = sql.SQL(", ").join(map(sql.Identifier, cols))
                picked = sql.SQL(", ").join(
                    sql.SQL("{}::bigint").format(sql.Literal(new)) if c == "jid" else sql.Identifier(c) for c in cols)
                out = bytearray()
                with conn.cursor().copy(sql.SQL("COPY (SELECT {} FROM {} WHERE jid = {}) TO STDOUT (FORMAT BINARY)")
                                        .format(picked, sql.Identifier(table), sql.Literal(src))) as copy:
                    for block in copy:
                        out += block
                data.append((sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), names),
                             bytes(out)))
            conn.execute("BEGIN")
            try:
                # as the spool does: foreign key checks off (the rows are the job's own)
                conn.execute("SET LOCAL session_replication_role = replica")
                c0 = cpu_times(pid)[0]
                for statement, payload in data:
                    with conn.cursor().copy(statement) as copy:
                        copy.write(payload)
                used = cpu_times(pid)[0] - c0
            finally:
                conn.execute("ROLLBACK")
            best = used if best is None else min(best, used)
            settle(site)  # (the rolled-back rows, between tries)
    return best


def run(quick: bool) -> list[dict]:
    out: list[dict] = []
    n = 500 if quick else 3000
    log(f"{n} x /bin/true spawned from Python, alone")
    spawn = spawn_floor(n)
    out += [
        figure("floor_child_ms", round(spawn["child"], 3), "ms/command",
               note="/bin/true's own CPU (exec, linking, exit), by posix_spawn"),
        figure("floor_spawn_parent_ms", round(spawn["parent"], 3), "ms/command",
               note="the spawning Python process's own: posix_spawn and waitpid"),
        figure("floor_spawn_pipe_log_ms", round(spawn["pipe_log"], 3), "ms/command",
               note="parent + child: Popen, output read from a pipe into a log file of its own, own session"),
    ]
    with Site("floors", pick_port(9941)) as site:
        site.dbctl("--start-for-engine", timeout=600)
        import farm_sim

        farm_sim.spool_queue(site.settings, 150_000, 4)
        settle(site)
        # each size three times, in turn (this machine's speed moves by a third from one minute
        # to the next): the median of each
        runs: dict[int, list[float]] = {4: [], 16: [], 64: []}
        server_floor(site, 4, 1.0)  # (a first run warms the server's caches and plans)
        for _ in range(3):
            for slots in runs:
                log(f"server floor: one simulated blade of {slots} slots, hold 0")
                runs[slots].append(server_floor(site, slots, 1.5 if quick else 4.0))
        for slots, measured in runs.items():
            ms = statistics.median(measured)
            bound = 2000 / (spawn["child"] + spawn["parent"] + ms)
            out += [
                figure(f"floor_server_{slots}_slots_ms", round(ms, 3), "ms/command", samples=[round(x, 3) for x in measured],
                       note="server CPU a command claimed and finished, one simulated blade alone (median of 3)"),
                figure(f"floor_dispatch_{slots}_slots_rate", round(bound), "commands/s",
                       note=f"2 cores / (child + spawn + server): the most possible with nothing else; "
                            f"1,500/s allows {BUDGET_MS:.2f} ms a command"),
            ]
        size = 10_000 if quick else 100_000
        log(f"server floor: storing the rows of a {size}-task job")
        secs = spool_server_floor(site, size, 2 if quick else 3)
        label = f"{size // 1000}k"
        out.append(figure(f"floor_spool_{label}_server_s", round(secs, 3), "s",
                          note="the server's CPU for the rows alone (binary COPY of encoded rows), best of tries"))
    return out
