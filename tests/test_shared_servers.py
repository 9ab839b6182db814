"""Shared servers (seed 001, "Sharing One Server Check-Out Among Several Commands"): a Task with
-service and -id checked out lazily on one blade; its referring commands land there or name it;
the check-out ends with the last reference.  Simulated blades on a real job database, then real
blades with a stand-in rsh."""

from __future__ import annotations

import os
import sys

import pytest
from test_dispatch import Blade

from tractorcli.blade.launch import _idrefs
from tractorcli.db import dispatch as d
from tractorcli.db.connection import connect
from tractorcli.db.spool import spool_job
from tractorcli.jobs.alfred import parse
from tractorcli.jobs.model import resolve

SEED = """
Job -title {shared} -subtasks {
    Task {SharedServer example} -id {bob} -service {pixarRender} -cmds {
        Cmd {rsh %h mkdir /tmp/somedir} -refersto {bob}
        Cmd {rsh %h render -Progress some.rib} -refersto {bob}
    } -cleanup {
        RemoteCmd {/bin/rm -rf /tmp/somedir} -refersto bob
    } -subtasks {
        Task {before} -cmds { RemoteCmd {prepare} -service {pixarRender} }
    }
}
"""


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def checkouts(conn, jid):
    return [(r["id"], r["bladename"], r["active"]) for r in conn.execute(
        "SELECT * FROM checkouts WHERE jid = %s ORDER BY id, n", (jid,))]


def only(b: Blade) -> tuple[tuple[int, int], d.Claim]:
    got = b.claim()
    assert len(got) == 1, got
    return got[0], b.running[got[0]]


def test_the_seeds_shared_server(conn):
    jid = spool_job(conn, resolve(parse(SEED)), owner="ann", spoolhost="ws1")
    r1 = Blade(conn, name="r1", provides=("pixarRender",), slots=1)
    r2 = Blade(conn, name="r2", provides=("pixarRender",), slots=1)
    ws = Blade(conn, name="ws1", provides=("linux",), slots=2)  # the spooling host: runs the Cmds
    (jt, c) = only(r1)  # the subtask, on r1
    assert ws.claim() == []  # nothing checked out before a referring command is next
    r1.finish(*jt)
    assert checkouts(conn, jid) == []
    # the first Cmd: its client here, the server checked out on a pixarRender blade
    (jt, c) = only(ws)
    assert checkouts(conn, jid) == [("bob", c.info["hosts"][0], True)]
    server = c.info["hosts"][0]
    srv, other = (r1, r2) if server == "r1" else (r2, r1)
    assert c.info["argv"] == ["rsh", "%h", "mkdir", "/tmp/somedir"] and c.numslots == 1
    assert c.info["idrefs"] == {"bob": [server]}  # its text has a % sequence: the job's ids come along
    # the server's one slot is held: nothing else runs there
    filler = spool_job(conn, resolve(parse("Job -subtasks { Task f -cmds { RemoteCmd {x} -service pixarRender } }")),
                       owner="ann", spoolhost="ws1")
    assert srv.claim() == []
    assert other.claim() == [(filler, 1)]
    ws.finish(*jt)
    (jt, c) = only(ws)  # the second Cmd: the same server
    assert c.info["hosts"] == [server]
    ws.finish(*jt)
    # the -cleanup RemoteCmd runs on the server, in its checked-out slot, and on no other blade
    other.finish(filler, 1)
    assert other.claim() == []
    (jt, c) = only(srv)
    assert c.numslots == 0 and c.info["hosts"] == [server] and _idrefs(c.info) == {"bob": [server]}
    assert c.info["idrefs"] is None  # no % sequence in its text: no id to name, none looked up
    assert checkouts(conn, jid) == [("bob", server, True)]
    srv.finish(*jt)
    assert checkouts(conn, jid) == [("bob", server, False)]  # the last reference ended
    assert conn.execute("SELECT phase FROM jobs WHERE jid = %s", (jid,)).fetchone()["phase"] == "finished"
    again = spool_job(conn, resolve(parse("Job -subtasks { Task f -cmds { RemoteCmd {x} -service pixarRender } }")),
                      owner="ann", spoolhost="ws1")
    assert srv.claim() == [(again, 1)]  # its slot is free again


def test_an_error_ends_the_check_out(conn):
    jid = spool_job(conn, resolve(parse(SEED)), owner="ann", spoolhost="ws1")
    r1 = Blade(conn, name="r1", provides=("pixarRender",), slots=1)
    ws = Blade(conn, name="ws1", provides=("pixarRender",), slots=2)  # it may serve itself
    for jt in r1.claim():
        r1.finish(*jt)
    (jt, c) = only(ws)
    assert c.info["hosts"] == ["ws1"]  # a second free slot here: checked out on the spooling host's blade
    assert ws.finish(*jt, rcode=1) == "error"
    assert checkouts(conn, jid) == [("bob", "ws1", False)]
    # retried, it checks the server out anew
    d.retry(conn, jid, [1])
    (jt, c) = only(ws)
    assert [a for a, _, active in checkouts(conn, jid) if active] == ["bob"]
    assert len(checkouts(conn, jid)) == 2


def test_a_lost_server_is_checked_out_again(conn):
    jid = spool_job(conn, resolve(parse(SEED)), owner="ann", spoolhost="ws1")
    r1 = Blade(conn, name="r1", provides=("pixarRender",), slots=1)
    r2 = Blade(conn, name="r2", provides=("pixarRender",), slots=1)
    ws = Blade(conn, name="ws1", provides=("linux",), slots=1)
    for jt in r1.claim():
        r1.finish(*jt)
    r2.claim()  # (r2 has matched the service once)
    (jt, c) = only(ws)
    first = c.info["hosts"][0]
    ws.finish(*jt)
    conn.execute("UPDATE blades SET status = 'lost' WHERE name = %s", (first,))
    (jt, c) = only(ws)
    assert c.info["hosts"][0] != first
    assert [(b, a) for _, b, a in checkouts(conn, jid)] == [(first, False), (c.info["hosts"][0], True)]


# --- real blades --------------------------------------------------------------------------------

RSH = """\
#!{python}
# A stand-in rsh: records the host it was asked for and runs the command here.
import os, shutil, subprocess, sys
with open(os.path.join({work!r}, "rsh.log"), "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
sys.exit(subprocess.call(sys.argv[2:]) if shutil.which(sys.argv[2]) else 0)
"""


def test_real_blades_run_the_seeds_shared_server(db_settings, tmp_path):
    from test_blade import Site

    s = Site(db_settings)
    try:
        bin_dir = s.root / "bin"
        bin_dir.mkdir()
        (bin_dir / "rsh").write_text(RSH.format(python=sys.executable, work=str(s.work)))
        (bin_dir / "rsh").chmod(0o755)
        somedir = s.root / "somedir"
        text = SEED.replace("/tmp/somedir", str(somedir)).replace("RemoteCmd {prepare}", "RemoteCmd {/bin/true}")
        from tractorcli.submit import default_host

        jid = spool_job(s.conn, resolve(parse(text)), owner="ann", spoolhost=default_host(), spoolcwd=str(s.work))
        env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
        for name in ("srvA", "srvB"):
            s.blade("--name", name, "--slots", "1", env=env)
        s.wait(lambda: s.one("SELECT phase FROM jobs WHERE jid = %s", jid)["phase"] == "finished", timeout=60,
               msg="the shared-server job")
        assert s.one("SELECT numerror FROM jobs WHERE jid = %s", jid)["numerror"] == 0
        ((_, host, active),) = checkouts(s.conn, jid)
        assert not active
        calls = (s.work / "rsh.log").read_text().splitlines()
        assert calls == [f"{host} mkdir {somedir}", f"{host} render -Progress some.rib"]
        # the -cleanup ran on the server's blade and removed the directory
        cleanup = s.one("SELECT i.bladename FROM invocations i JOIN commands c USING (jid, cid) "
                        "WHERE i.jid = %s AND c.runtype = 'cleanup'", jid)
        assert cleanup["bladename"] == host
        assert not somedir.exists()
    finally:
        s.close()


def test_id_host_names_the_blades_a_command_with_that_id_ran_on(conn):
    from tractorcli.blade.launch import BladeSide, prepare

    job = parse("""Job -subtasks {
        Task {use} -subtasks { Task {srv} -cmds { RemoteCmd {start} -id server } } -cmds {
            RemoteCmd {client %server(host) %server(-host) %{server}(host).cfg}
        }
    }""")
    jid = spool_job(conn, resolve(job), owner="ann", spoolhost="ws1")
    b1 = Blade(conn, name="b1", slots=1)
    b2 = Blade(conn, name="b2", slots=1)
    (jt, c) = only(b1)
    assert jt[0] == jid
    b1.finish(*jt)
    (jt, c) = only(b2)
    assert c.info["cmdrefs"] == {"server": ["b1"]}
    spec = prepare(c.info, c, BladeSide(name="b2", hostname="b2", zone="nfs"))
    assert spec.argv == ["client", "b1", "-h", "b1", "b1.cfg"]
