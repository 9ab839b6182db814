"""This host as the network sees it (the blade's addresses; the engine's, to wake local blades)."""

from __future__ import annotations

import socket

__all__ = ["host_addresses"]


def host_addresses(hostname: str, toward: str | None = None) -> list[str]:
    """This host's IPv4 addresses, the one it reaches the network with first: the one it
    reaches `toward` with (a host name or address: the database's host, for a blade, so the
    engine's host can reach it there), else the one of its default route."""
    out: list[str] = []
    for target in (toward, "192.0.2.1"):
        if not target or target.startswith("/"):
            continue
        try:  # a UDP "connection" sends nothing; it only picks the outgoing address
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))
                out.append(s.getsockname()[0])
        except OSError:
            continue
        if not out[-1].startswith("127."):  # (the database on this host: the default route's first)
            break
    try:
        out += socket.gethostbyname_ex(hostname)[2]
    except OSError:
        pass
    out = [a for a in dict.fromkeys(out) if a and a != "0.0.0.0"]
    out.sort(key=lambda a: a.startswith("127."))
    return out or ["127.0.0.1"]
