"""Opening the workspace database: WAL, foreign keys, and forward migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from store.migrations import LATEST, MIGRATIONS


class SchemaError(RuntimeError):
    """The database was written by a newer Pioneer TUI, or a migration failed."""


def connect(path: Path | str, *, check_same_thread: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=check_same_thread,
                           isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    if str(path) != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> int:
    """Apply migrations up to `target`, each in its own transaction with the version bump."""
    current = schema_version(conn)
    if current > LATEST:
        raise SchemaError(
            f"database schema_version {current} is newer than this Pioneer TUI ({LATEST}): upgrade pioneer-tui"
        )
    for version in range(current + 1, target + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _split(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except Exception as exc:
            conn.execute("ROLLBACK")
            raise SchemaError(f"migration to schema_version {version} failed: {exc}") from exc
    return schema_version(conn)


def _split(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit mid-migration)."""
    statements, buf = [], ""
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def open_db(path: Path | str, *, migrate_to: int = LATEST) -> sqlite_utils.Database:
    conn = connect(path)
    migrate(conn, migrate_to)
    return sqlite_utils.Database(conn)
