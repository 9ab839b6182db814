"""Identities: the database roles people and blades log in as.

The person is the authenticated database user.  On the server's host each
local account connects through the socket as the role of its name (peer
authentication, no password); over the network with the role's password
(scram-sha-256).  `tractor-dbctl --add-user NAME` makes a person's role (a
member of `tractor_people`), `--add-blade-login NAME` a blade's (a member of
`tractor_blades`); a site may give every render host its own blade login or
share one.  The groups and what they may do are made by migration 0009 and
the function files: reading is open to both, writing goes through the
functions the programs call.  The site's own role (db.toml `user`, the site
owner) is the only superuser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BadInput, NotFound, StateError
from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

PEOPLE = "tractor_people"
BLADES = "tractor_blades"
KINDS = {"person": PEOPLE, "blade": BLADES}

# a role name is an account name or a host-like name; nothing that needs quoting
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.@-]{0,62}\Z")


@dataclass(frozen=True)
class Login:
    name: str
    kind: str  # person | blade
    password: bool  # may log in over the network


def check_name(name: str, where: str) -> str:
    if not _NAME.match(name):
        raise BadInput(f"{where} {name!r}: a user name is a letter or _ then letters, digits, _ . @ - "
                       "(at most 63)")
    if name.startswith("pg_") or name in (PEOPLE, BLADES):
        raise BadInput(f"{where} {name!r}: a name PostgreSQL or tractorcli keeps for itself")
    return name


def add_login(conn: "psycopg.Connection", name: str, kind: str, password: str | None, site_role: str) -> bool:
    """Create (True) or update (False) the login role `name` of `kind`, with `password` (None: the
    socket only, no password).  The site's own role cannot be made a person or a blade."""
    from psycopg import sql

    check_name(name, "--add-user" if kind == "person" else "--add-blade-login")
    if name == site_role:
        raise StateError(f"{name!r} is the site's own role (db.toml user), the site owner's")
    group = KINDS[kind]
    other = BLADES if group == PEOPLE else PEOPLE
    role = sql.Identifier(name)
    with conn.transaction():
        row = conn.execute(queries.get("login_role"), {"name": name}).fetchone()
        if row is not None and row["superuser"]:
            raise StateError(f"{name!r} is a superuser role; tractorcli gives people and blades no such role")
        if row is not None and other in row["groups"]:
            raise StateError(f"{name!r} is a {'blade' if other == BLADES else 'person'} login already",
                             hint="--remove-user it first")
        if row is None:
            conn.execute(sql.SQL(queries.get("create_login_role")).format(role=role, group=sql.Identifier(group)))
        else:
            conn.execute(sql.SQL(queries.get("grant_login_group")).format(role=role, group=sql.Identifier(group)))
        if password is not None:
            conn.execute(sql.SQL(queries.get("set_login_password")).format(role=role, password=sql.Literal(password)))
        elif row is None:
            conn.execute(sql.SQL(queries.get("clear_login_password")).format(role=role))
    return row is None


def remove_login(conn: "psycopg.Connection", name: str) -> None:
    from psycopg import sql

    row = conn.execute(queries.get("login_role"), {"name": name}).fetchone()
    if row is None or not set(row["groups"]) & {PEOPLE, BLADES}:
        raise NotFound(f"no person or blade login {name!r}", hint="tractor-dbctl --list-users lists them")
    conn.execute(sql.SQL(queries.get("drop_login_role")).format(role=sql.Identifier(name)))


def list_logins(conn: "psycopg.Connection") -> list[Login]:
    return [Login(r["name"], "blade" if r["grp"] == BLADES else "person", r["has_password"])
            for r in conn.execute(queries.get("list_logins"))]
