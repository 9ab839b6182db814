"""Site administration on the job database (the SQL half of tractor-dbctl).

Each function takes an open connection (autocommit) and performs one
operation in one transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from ..config import SiteSettings
from ..errors import BadInput, StateError
from . import migrate, queries
from .connection import connect, translated

if TYPE_CHECKING:  # pragma: no cover
    import psycopg


def database_exists(settings: SiteSettings) -> bool:
    with connect(settings, dbname="postgres", autocommit=True) as conn, translated(settings):
        return conn.execute(queries.get("database_exists"), {"dbname": settings.db.dbname}).fetchone() is not None


def build(settings: SiteSettings) -> list[migrate.Migration]:
    """Create the job database and its schema (Tractor's --build)."""
    from psycopg import sql

    if database_exists(settings):
        raise StateError(
            f'the job database "{settings.db.dbname}" already exists',
            hint="use --upgrade to bring its schema up to date",
        )
    with connect(settings, dbname="postgres", autocommit=True) as conn, translated(settings):
        conn.execute(sql.SQL(queries.get("create_database")).format(dbname=sql.Identifier(settings.db.dbname)))
    with connect(settings, autocommit=True) as conn, translated(settings):
        applied = migrate.upgrade(conn)
        set_param(conn, "archiving", "1" if settings.db.archiving else "0")
        return applied


def ensure_database(settings: SiteSettings) -> bool:
    """Create the job database when it is missing; True if it was created."""
    if database_exists(settings):
        return False
    from psycopg import sql

    with connect(settings, dbname="postgres", autocommit=True) as conn, translated(settings):
        conn.execute(sql.SQL(queries.get("create_database")).format(dbname=sql.Identifier(settings.db.dbname)))
    return True


def set_role_password(settings: SiteSettings) -> None:
    from psycopg import sql

    with connect(settings, dbname="postgres", autocommit=True) as conn, translated(settings):
        conn.execute(sql.SQL(queries.get("set_role_password")).format(
            role=sql.Identifier(settings.db.user), password=sql.Literal(settings.db.password)))


def pooler_login(settings: SiteSettings) -> str:
    """A new password for the role the site's pooler looks passwords up as (made if missing), set
    on the server; the pooler's userlist gets it (pooler.py).  Made anew at every start of the
    pooler, kept nowhere else."""
    import secrets

    from psycopg import sql

    password = secrets.token_urlsafe(32)
    with connect(settings, dbname="postgres", autocommit=True) as conn, translated(settings):
        conn.execute(queries.get("pooler_role"))
        conn.execute(sql.SQL(queries.get("pooler_login")).format(password=sql.Literal(password)))
    return password


def show_params(conn: "psycopg.Connection") -> list[tuple[str, str]]:
    return [(r["name"], r["value"]) for r in conn.execute(queries.get("show_params"))]


def set_param(conn: "psycopg.Connection", name: str, value: str) -> None:
    conn.execute(queries.get("set_param"), {"name": name, "value": value})


def job_counter(conn: "psycopg.Connection") -> int:
    return int(conn.execute(queries.get("job_counter")).fetchone()["jidcounter"])


def set_job_counter(conn: "psycopg.Connection", value: int) -> int:
    """Continue jids after `value`; refuses to move the counter back (or keep it)."""
    with conn.transaction():
        current = job_counter(conn)
        top = int(conn.execute(queries.get("max_jid")).fetchone()["maxjid"])
        floor = max(current, top)
        if value <= floor:
            raise BadInput(
                f"--set-job-counter {value}: the job counter is already at {floor}; "
                "the new value must be greater, so that no job id is used twice"
            )
        conn.execute(queries.get("set_job_counter"), {"counter": value})
        conn.execute(queries.get("set_jid_floor"), {"counter": value})
    return value


def purge_jobs(conn: "psycopg.Connection", *, reset_counter: bool = False) -> None:
    with conn.transaction():
        conn.execute(queries.get("purge_jobs"))
        conn.execute(queries.get("purge_job_notes"))
        if reset_counter:
            conn.execute(queries.get("reset_job_counter"))
            conn.execute(queries.get("forget_jid_floor"))


def parse_year_month(text: str) -> dt.datetime:
    """`YY-MM` or `YYYY-MM` (years 2000-2099) -> start of the following month, UTC."""
    m = re.fullmatch(r"(\d{2}|\d{4})-(\d{1,2})", text.strip())
    if not m:
        raise BadInput(f"--purge-archive-to-year-month {text!r}: expected YY-MM or YYYY-MM")
    year, month = int(m.group(1)), int(m.group(2))
    if year < 100:
        year += 2000
    if not 2000 <= year <= 2099 or not 1 <= month <= 12:
        raise BadInput(f"--purge-archive-to-year-month {text!r}: year must be 2000-2099 and month 1-12")
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)


def purge_archive_to(conn: "psycopg.Connection", before: dt.datetime) -> int:
    with conn.transaction():
        return conn.execute(queries.get("purge_archive_to"), {"before": before}).rowcount


_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "week": 604800, "weeks": 604800,
    "mo": 2592000, "mon": 2592000, "month": 2592000, "months": 2592000,  # 30 days
    "y": 31536000, "yr": 31536000, "year": 31536000, "years": 31536000,  # 365 days
}


def parse_duration(text: str, option: str = "--clear-history") -> float:
    """A human duration: `30m`, `6h`, `3d`, `2w`, `3mo`, `1yr`; a bare number is seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS and m.group(2):
        raise BadInput(
            f"{option} {text!r}: expected a duration such as 30m, 6h, 3d, 2w, 3mo or 1yr "
            "(a bare number is seconds)"
        )
    return float(m.group(1)) * _UNITS[m.group(2).lower()] if m.group(2) else float(m.group(1))


def clear_history(conn: "psycopg.Connection", older_than_secs: float) -> int:
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=older_than_secs)
    with conn.transaction():
        return conn.execute(queries.get("clear_history"), {"before": before}).rowcount


def vacuum(conn: "psycopg.Connection") -> None:
    conn.execute(queries.get("vacuum_full"))


def exec_sql(conn: "psycopg.Connection", text: str) -> tuple[list[str], list[tuple[Any, ...]], str]:
    """Run an administrator's SQL; returns (column names, rows, status)."""
    from psycopg.rows import tuple_row

    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(text)  # the administrator's own statement, by design of --exec-sql
    cols = [d.name for d in cur.description] if cur.description else []
    rows = cur.fetchall() if cur.description else []
    return cols, rows, cur.statusmessage or ""


def row_counts(conn: "psycopg.Connection") -> dict[str, int]:
    return {r["name"]: int(r["n"]) for r in conn.execute(queries.get("table_row_counts"))}
