"""Schema migrations and the state machine's function files.

`db/sql/migrations/NNNN_name.sql` files are applied in order, each in its
own transaction together with its row in `schema_migrations`, so a failed
migration leaves the database at the previous version.  An applied
migration whose file has changed since is an error (the database no longer
matches what the code expects), and so is a database that has migrations
this code does not know: it was upgraded by a newer tractorcli.

Migrations hold tables and data changes.  The functions of the state
machine live in `db/sql/functions/AREA.sql`, each in one file, readable in
one place: after the migrations, every upgrade applies (CREATE OR REPLACE)
the files whose checksum differs from the one recorded in
`schema_functions`, all in one transaction.  A function's signature that
blades call never changes; a new behaviour gets a `_v2`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import SchemaError
from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

MIGRATIONS_DIR = Path(__file__).with_name("sql") / "migrations"
FUNCTIONS_DIR = Path(__file__).with_name("sql") / "functions"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class FunctionFile:
    name: str  # the file's name (queue.sql)
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclasses.dataclass
class Plan:
    current: int  # highest applied version (0: empty database)
    target: int  # highest version this code knows
    pending: list[Migration]
    functions: list[FunctionFile] = dataclasses.field(default_factory=list)  # files to (re)apply

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.functions


def function_files(directory: Path = FUNCTIONS_DIR) -> list[FunctionFile]:
    return [FunctionFile(p.name, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.sql"))]


def applied_function_files(conn: "psycopg.Connection") -> dict[str, str]:
    """{file: checksum} of the function files applied (none before migration 8)."""
    if not conn.execute(queries.get("function_files_table_exists")).fetchone()["present"]:
        return {}
    return {r["file"]: r["checksum"] for r in conn.execute(queries.get("applied_function_files"))}


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if not m:
            raise SchemaError(f"{path}: migration files are named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migrations in {directory} are not numbered 1..{len(found)} without gaps: {versions}")
    return found


def latest_version() -> int:
    return len(available())


def applied(conn: "psycopg.Connection") -> dict[int, dict]:
    row = conn.execute(queries.get("migrations_table_exists")).fetchone()
    if not row["present"]:
        return {}
    return {r["version"]: r for r in conn.execute(queries.get("applied_migrations"))}


def plan(conn: "psycopg.Connection", migrations: list[Migration] | None = None, *,
         functions: bool = True) -> Plan:
    """What an upgrade would do; raises SchemaError when it must not happen."""
    migrations = available() if migrations is None else migrations
    done = applied(conn)
    target = migrations[-1].version if migrations else 0
    current = max(done, default=0)
    if current > target:
        raise SchemaError(
            f"the job database has schema version {current}, newer than this tractorcli "
            f"({__version__}, schema version {target})",
            hint="install the tractorcli that upgraded it (or newer), or restore a backup taken before the upgrade",
        )
    by_version = {m.version: m for m in migrations}
    for version, row in sorted(done.items()):
        m = by_version[version]
        if row["checksum"] != m.checksum:
            raise SchemaError(
                f"migration {version:04d}_{m.name} was applied with checksum {row['checksum'][:12]}, "
                f"but this tractorcli has {m.checksum[:12]}: the database does not match the code",
                hint="reinstall the tractorcli version that built this database",
            )
    changed: list[FunctionFile] = []
    if functions and target >= _FUNCTION_FILES_SINCE:
        recorded = applied_function_files(conn)
        changed = [f for f in function_files() if recorded.get(f.name) != f.checksum]
    return Plan(current, target, [m for m in migrations if m.version not in done], changed)


def upgrade(conn: "psycopg.Connection", migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply pending migrations, each in its own transaction, then the function files that changed
    (one transaction).  Returns the migrations applied."""
    migrations = available() if migrations is None else migrations
    conn.execute(queries.get("create_migrations_table"))
    conn.commit()
    done: list[Migration] = []
    while True:
        with conn.transaction():
            # Re-plan under the lock: another upgrader may have gone first.
            conn.execute(queries.get("lock_migrations"))
            p = plan(conn, migrations)
            if not p.pending:
                if p.functions and p.current >= _FUNCTION_FILES_SINCE:
                    _apply_functions(conn, p.functions)
                return done
            m = p.pending[0]
            conn.execute(m.sql)
            conn.execute(
                queries.get("record_migration"),
                {"version": m.version, "name": m.name, "checksum": m.checksum, "applied_by": f"tractorcli {__version__}"},
            )
        done.append(m)


# the migration that records function files (before it, migrations hold them)
_FUNCTION_FILES_SINCE = 8


def _apply_functions(conn: "psycopg.Connection", files: list[FunctionFile]) -> None:
    conn.execute(queries.get("function_bodies_unchecked"))
    for f in files:
        conn.execute(f.sql)
        conn.execute(queries.get("record_function_file"),
                     {"file": f.name, "checksum": f.checksum, "applied_by": f"tractorcli {__version__}"})


def check_compatible(conn: "psycopg.Connection") -> Plan:
    """Refuse a database newer than the code, or one with no schema yet.  (Every spool and program
    start asks: the function files, which only an upgrade applies, are not read here.)"""
    p = plan(conn, functions=False)
    if p.current == 0:
        raise SchemaError(
            "the job database has no schema yet",
            hint="create it with tractor-dbctl --upgrade (or --start-for-engine)",
        )
    return p
