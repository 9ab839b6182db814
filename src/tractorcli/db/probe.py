"""A readiness probe that speaks just enough of the PostgreSQL protocol.

`tractor-dbctl --status` must answer in well under 150 ms, and importing
psycopg alone costs about that much.  The questions status asks (is
something listening, is it PostgreSQL, is it ready, does our database exist)
are answered by the server's reply to a protocol-3.0 StartupMessage, so we
send one and read the first reply, like `pg_isready` does, but we also tell
"database missing" apart from "ready".
"""

from __future__ import annotations

import enum
import socket
import struct


class Probe(enum.Enum):
    READY = "ready"  # accepted the session: the database exists
    NO_DATABASE = "no database"  # server up, database missing
    STARTING = "starting"  # starting up, shutting down or in recovery
    NEEDS_PASSWORD = "needs password"  # server up, asks for a password
    REJECTED = "rejected"  # server up, refused for another reason
    NO_RESPONSE = "no response"  # nothing listening, or not PostgreSQL


def _startup_message(user: str, dbname: str) -> bytes:
    body = struct.pack("!i", 196608)  # protocol 3.0
    for k, v in (("user", user), ("database", dbname), ("application_name", "tractor-probe")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _error_code(payload: bytes) -> str:
    # ErrorResponse: a list of (1-byte field type, NUL-terminated string).
    for part in payload.split(b"\0"):
        if part[:1] == b"C":
            return part[1:].decode("ascii", "replace")
    return ""


def probe(*, socket_path: str | None = None, host: str = "127.0.0.1", port: int = 5432,
          user: str, dbname: str, timeout: float = 2.0) -> Probe:
    """Ask the server at `socket_path` (or host:port) whether it would serve us."""
    try:
        if socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: object = socket_path
        else:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(info[0], socket.SOCK_STREAM)
            target = info[4]
    except OSError:
        return Probe.NO_RESPONSE
    sock.settimeout(timeout)
    try:
        sock.connect(target)
        sock.sendall(_startup_message(user, dbname))
        # AuthenticationOk comes before the database is even looked up, so
        # read on until ReadyForQuery (all is well) or an ErrorResponse.
        for _ in range(64):
            kind = _recv_exact(sock, 1)
            (length,) = struct.unpack("!i", _recv_exact(sock, 4))
            if not 4 <= length <= 65536:
                return Probe.NO_RESPONSE
            payload = _recv_exact(sock, length - 4)
            if kind == b"R":
                (auth,) = struct.unpack("!i", payload[:4])
                if auth != 0:
                    return Probe.NEEDS_PASSWORD
            elif kind == b"Z":
                try:
                    sock.sendall(b"X\0\0\0\4")  # Terminate
                except OSError:
                    pass
                return Probe.READY
            elif kind == b"E":
                code = _error_code(payload)
                if code == "3D000":  # invalid_catalog_name
                    return Probe.NO_DATABASE
                if code in ("57P03", "57P01"):  # cannot_connect_now, admin_shutdown
                    return Probe.STARTING
                if code.startswith("28"):  # invalid authorization
                    return Probe.NEEDS_PASSWORD
                return Probe.REJECTED
            elif kind not in (b"S", b"K", b"N", b"v"):
                return Probe.NO_RESPONSE
        return Probe.NO_RESPONSE
    except (OSError, ConnectionError, struct.error):
        return Probe.NO_RESPONSE
    finally:
        sock.close()


def probe_login(*, host: str, port: int, user: str, dbname: str, password: str | None,
                timeout: float = 5.0) -> Probe:
    """As `probe`, and where the server asks for a password, log in with `password` (scram needs a
    real client) to tell a served database from a missing one or a refused password."""
    answer = probe(host=host, port=port, user=user, dbname=dbname, timeout=timeout)
    if answer is not Probe.NEEDS_PASSWORD or not password:
        return answer
    import psycopg

    try:
        psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password,
                        connect_timeout=max(1, int(timeout))).close()
    except psycopg.OperationalError as exc:
        text = str(exc).lower()
        if "does not exist" in text and "database" in text:
            return Probe.NO_DATABASE
        if "password" in text or "authentication" in text:
            return Probe.NEEDS_PASSWORD
        return Probe.REJECTED
    return Probe.READY
