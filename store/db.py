"""Opening the workspace database: WAL, foreign keys, forward migrations, and a bounded wait for
the write lock that names the process holding it."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from store.errors import SchemaError, StoreBusy
from store.migrations import LATEST, MIGRATIONS

BUSY_TIMEOUT_ENV = "PIONEER_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT_S = 60.0
_BUSY_SLICE_MS = 500  # one attempt's wait inside SQLite; progress is reported between attempts
_REPORT_EVERY_S = 5.0
_WAL_KEEP_BYTES = 64 * 1024 * 1024

BusyReporter = Callable[[float, float, str], None]  # (waited s, limit s, holder description)


def busy_timeout_s() -> float:
    """$PIONEER_BUSY_TIMEOUT (seconds) or the default."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV)
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_BUSY_TIMEOUT_S
    except ValueError:
        raise StoreBusy(f"${BUSY_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


def connect(path: Path | str, *, check_same_thread: bool = False) -> sqlite3.Connection:
    limit = busy_timeout_s()
    conn = sqlite3.connect(str(path), timeout=limit, check_same_thread=check_same_thread,
                           isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(limit * 1000)}")
    if str(path) != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_KEEP_BYTES}")  # a big rolled-back ingest leaves no huge WAL
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
        begin_immediate(conn)
        if schema_version(conn) >= version:  # another process migrated while this one waited
            conn.execute("COMMIT")
            continue
        try:
            for statement in _split(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except Exception as exc:
            conn.execute("ROLLBACK")
            raise SchemaError(f"migration to schema_version {version} failed: {exc}") from exc
    return schema_version(conn)


def begin_immediate(conn: sqlite3.Connection, report: BusyReporter | None = None) -> None:
    """BEGIN IMMEDIATE, waiting at most busy_timeout_s() for another writer, with progress; then
    StoreBusy naming the process that holds the lock."""
    limit = busy_timeout_s()
    started = last_report = time.monotonic()
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_SLICE_MS}")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            waited = time.monotonic() - started
            holder = lock_holder(database_path(conn))
            if waited >= limit:
                raise StoreBusy(f"the workspace database is busy: {holder} holds its write lock and did not "
                                f"release it within {limit:g} s; wait for it to finish (or stop it) and retry "
                                f"(${BUSY_TIMEOUT_ENV} sets the wait in seconds)") from None
            if time.monotonic() - last_report >= _REPORT_EVERY_S:
                last_report = time.monotonic()
                (report or _report_to_stderr)(waited, limit, holder)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(limit * 1000)}")


def _report_to_stderr(waited: float, limit: float, holder: str) -> None:
    print(f"waiting for the workspace database: {holder} holds its write lock ({waited:.0f} s of {limit:g} s)",
          file=sys.stderr, flush=True)


def database_path(conn: sqlite3.Connection) -> str:
    return next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")


def lock_holder(db_path: str) -> str:
    """Which process holds the write lock, from /proc/locks (Linux): SQLite's WAL write lock is byte
    120 of the -shm file; in rollback-journal mode the RESERVED byte of the database file."""
    targets = {}
    for path, start in ((f"{db_path}-shm", "120"), (db_path, "1073741825")):
        try:
            st = os.stat(path)
        except OSError:
            continue
        targets[f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"] = start
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 8 and parts[3] == "WRITE" and targets.get(parts[5]) == parts[6] \
                        and parts[4].isdigit():
                    return describe_process(int(parts[4]))
    except OSError:
        pass
    return "another process"


def describe_process(pid: int) -> str:
    """`process 1234 (pioneer-tui ingest big.jsonl)`, or just the pid when its command is unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"process {pid}"
    command = " ".join(" ".join(Path(a).name if i == 0 else a for i, a in
                                enumerate(raw.decode(errors="replace").rstrip("\0").split("\0"))).split())
    return f"process {pid} ({command[:80]})" if command else f"process {pid}"


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
