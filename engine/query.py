"""Read-only SQL over the workspace, for people and for agents (the paper's `query_traces`).

Read-only by construction, three layers deep: a separate `mode=ro` connection, `PRAGMA query_only`,
and an authorizer that allows only reads (SELECT, column reads, functions other than
load_extension, recursive CTEs, and schema-reading pragmas such as table_info, also as
pragma_table_info()). It reads the `traces` view and every other workspace table: the store
redacts secrets before writing, so there is none to read. Limits that hold whatever the SQL: a
progress handler enforces the time limit, no single value may exceed MAX_VALUE_BYTES (SQLite
fails the statement, except printf()/format(), which SQLite turns into NULL), sorts spill to temp
files, and fetching stops at the row limit or at max_bytes of values, whichever comes first. The
full result is written to a file under artifacts/queries/ and only a short summary is returned, so
an agent's context holds a summary and a path, not 10,000 rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from engine.errors import QueryError
from engine.ingest_formats import MAX_FIELD_BYTES as MAX_VALUE_BYTES
from store import Store
from store.artifacts import atomic_open

__all__ = ["DEFAULT_LIMIT", "DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT_S", "MAX_VALUE_BYTES", "QueryError", "QueryResult",
           "Rows", "query_traces"]

DEFAULT_LIMIT = 100_000
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # text and BLOB bytes fetched; the process holds about twice this
_SIZED = frozenset((str, bytes))
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula
_PROGRESS_EVERY = 1000  # SQLite VM instructions between time-limit checks
_PREVIEW_CHARS = 200
_MMAP_BYTES = 1 << 30

_ACTIONS = {getattr(sqlite3, f"SQLITE_{name}"): name for name in (
    "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE", "CREATE_TEMP_TRIGGER",
    "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "DELETE", "DROP_INDEX", "DROP_TABLE",
    "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW", "DROP_TRIGGER",
    "DROP_VIEW", "INSERT", "PRAGMA", "READ", "SELECT", "TRANSACTION", "UPDATE", "ATTACH", "DETACH",
    "ALTER_TABLE", "REINDEX", "ANALYZE", "CREATE_VTABLE", "DROP_VTABLE", "FUNCTION", "SAVEPOINT",
    "RECURSIVE")}
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
# Preparing a pragma table-valued function (pragma_table_info) asks to UPDATE sqlite_master; SQLite never
# lets a statement write that table (writable_schema is a denied pragma) and the connection is read-only.
_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema"}
# Pragmas that only describe the schema (they take a table name, never a value to set).
_SCHEMA_PRAGMAS = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
_DENIED_FUNCTIONS = {"load_extension", "fts3_tokenizer"}


@dataclass(frozen=True)
class Rows:
    """The full result handed to a postprocess callable."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.rows)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def write_csv(self, fh: IO[str], spreadsheet_safe: bool = False) -> None:
        """`spreadsheet_safe`: text cells that a spreadsheet would run as a formula (`=cmd|...`) get a
        leading apostrophe (the OWASP guard against CSV injection); the data itself is unchanged."""
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(map(_defused, self.columns) if spreadsheet_safe else self.columns)
        rows = self._plain_rows()
        writer.writerows(([_defused(v) for v in row] for row in rows) if spreadsheet_safe else rows)

    def write_jsonl(self, fh: IO[str]) -> None:
        encode = json.JSONEncoder(ensure_ascii=False).encode
        fh.writelines(encode(dict(zip(self.columns, row, strict=True))) + "\n" for row in self._plain_rows())

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.write_csv(buf)
        return buf.getvalue()

    def _plain_rows(self) -> Iterable[tuple[Any, ...] | list[Any]]:
        """BLOBs as hex text, one row at a time (a copy of a large result would double its memory); the
        value types are checked in C first, since rows almost never hold one."""
        if bytes not in set(map(type, chain.from_iterable(self.rows))):
            return self.rows
        return ([_plain(v) for v in row] for row in self.rows)


@dataclass
class QueryResult:
    sql: str
    columns: list[str]
    row_count: int
    truncated: bool  # a limit stopped the fetch; the file holds the first `row_count` rows
    path: str
    elapsed_ms: float  # end to end: query_ms (run the statement, fetch every row) + save_ms (write the file)
    query_ms: float = 0.0
    save_ms: float = 0.0
    preview: list[dict[str, Any]] = field(default_factory=list)  # first rows, long values shortened
    post: Any = None  # the postprocess callable's return value
    truncated_by: str | None = None  # "rows" (the row limit) or "bytes" (max_bytes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        cols = ", ".join(self.columns)
        more = f" ({self.truncated_by[:-1]} limit reached: the result is cut off; aggregate or add WHERE / LIMIT)" \
            if self.truncated_by else ""
        lines = [f"{self.row_count} rows x {len(self.columns)} columns ({cols}) in {self.elapsed_ms:.0f} ms{more}",
                 f"full result: {self.path}"]
        if self.preview:
            lines.append(f"first {len(self.preview)} rows:")
            lines += [f"  {json.dumps(row, ensure_ascii=False, default=str)}" for row in self.preview]
        if self.post is not None:
            post = self.post if isinstance(self.post, str) else json.dumps(self.post, ensure_ascii=False, default=str)
            lines.append(f"postprocess: {post if len(post) <= 2000 else post[:2000] + '...'}")
        return "\n".join(lines)


def query_traces(
    store_or_db_path: Store | str | Path,
    sql: str,
    *,
    postprocess: Callable[[Rows], Any] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    out_dir: str | Path | None = None,
    fmt: str = "csv",
    preview_rows: int = 5,
    max_bytes: int = DEFAULT_MAX_BYTES,
    spreadsheet_safe: bool = False,
) -> QueryResult:
    """Run one read-only statement; save the full result (CSV or JSONL) and return its summary."""
    if limit < 1 or timeout_s <= 0 or max_bytes < 1:
        raise QueryError(f"limit ({limit}), timeout ({timeout_s} s) and byte limit ({max_bytes}) must be positive")
    if fmt not in ("csv", "jsonl"):
        raise QueryError(f"output format {fmt!r}: use csv or jsonl")
    if not sql.strip():
        raise QueryError("empty query; write e.g. SELECT id, input FROM traces WHERE verdict = 'fail'")
    db_path = _db_path(store_or_db_path)
    out = Path(out_dir) if out_dir else db_path.parent / "artifacts" / "queries"
    started = time.perf_counter()
    conn = _read_only(db_path)
    denied: list[str] = []
    oversized = _bound_printf(conn)
    conn.set_authorizer(_authorizer(denied))
    deadline = started + timeout_s
    conn.set_progress_handler(lambda: int(time.perf_counter() > deadline), _PROGRESS_EVERY)
    try:
        cur = conn.execute(sql)
        columns = _unique([d[0] for d in cur.description or ()])
        rows: list[tuple[Any, ...]] = []
        keep = rows.append
        fetched_bytes, truncated_by = 0, None
        for row in cur:  # row by row: the byte limit is overshot by one row at most
            if len(rows) == limit:
                truncated_by = "rows"
                break
            keep(row)
            for value in row:
                if value.__class__ in _SIZED:
                    fetched_bytes += len(value)
            if fetched_bytes > max_bytes:
                truncated_by = "bytes"
                break
    except UnicodeEncodeError:
        raise QueryError("the query text holds an unpaired surrogate; fix its encoding") from None
    except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:
        if "one statement" in str(exc):
            raise QueryError("refused: one statement per query (found more after the first ';')") from None
        raise QueryError(f"query failed: {exc}") from None
    except sqlite3.DatabaseError as exc:
        if denied or "may not be modified" in str(exc) or "readonly" in str(exc):
            what = denied[0] if denied else "writing"
            raise QueryError(f"refused: queries are read-only; {what} is not allowed "
                             f"(write one SELECT, e.g. SELECT ... FROM traces)") from None
        if "too big" in str(exc) or oversized:
            raise QueryError(f"stopped: a value would be larger than {MAX_VALUE_BYTES:,} bytes, the limit for one "
                             f"value; build smaller values") from None
        if str(exc) == "interrupted" and time.perf_counter() > deadline:
            raise QueryError(f"stopped: the query ran past the {timeout_s:g} s time limit; narrow it with "
                             f"WHERE / LIMIT or raise the timeout") from None
        raise QueryError(f"query failed: {exc}") from None
    finally:
        conn.close()
    if not columns:
        raise QueryError("the statement returns no rows; write a SELECT")
    fetched = time.perf_counter()
    result = Rows(tuple(columns), rows)
    path = out / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{hashlib.sha256(sql.encode()).hexdigest()[:8]}.{fmt}"
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            result.write_csv(fh, spreadsheet_safe)
        else:
            result.write_jsonl(fh)
    done = time.perf_counter()
    summary = QueryResult(
        sql=sql, columns=list(columns), row_count=len(result), truncated=truncated_by is not None,
        truncated_by=truncated_by, path=str(path),
        elapsed_ms=(done - started) * 1000, query_ms=(fetched - started) * 1000, save_ms=(done - fetched) * 1000,
        preview=[{c: _short(v) for c, v in zip(columns, row, strict=True)} for row in result.rows[:preview_rows]])
    if postprocess is not None:
        try:
            summary.post = postprocess(result)
        except Exception as exc:
            raise QueryError(f"postprocess failed ({type(exc).__name__}: {exc}); the full result is saved "
                             f"at {path}") from exc
    return summary


def _db_path(target: Store | str | Path) -> Path:
    if isinstance(target, Store):
        return target.workspace.db_path
    path = Path(target)
    return path / "pioneer.db" if path.is_dir() else path


def _read_only(db_path: Path) -> sqlite3.Connection:
    if not db_path.is_file():
        raise QueryError(f"{db_path}: no workspace database; run `pioneer-tui ingest FILE` first")
    conn = sqlite3.connect(f"file:{quote(str(db_path.resolve()))}?mode=ro", uri=True, isolation_level=None,
                           timeout=30.0)
    if hasattr(conn, "enable_load_extension"):  # absent when SQLite was built without it
        conn.enable_load_extension(False)
    conn.execute("PRAGMA query_only = ON")
    conn.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")  # page reads without a syscall each: ~2x on big slices
    conn.execute("PRAGMA temp_store = FILE")  # a huge sort or DISTINCT spills to disk, not to memory
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    return conn


_PRINTF_SPEC = re.compile(r"%[-+ #0!,]*(\*|\d*)(?:\.(\*|\d*))?(?:ll|l)?([a-zA-Z%])")


def _bound_printf(conn: sqlite3.Connection) -> list[int]:
    """printf()/format() with their width and precision capped at MAX_VALUE_BYTES. SQLite's own
    pads one character per step inside a single VM instruction, so `%.*c` with 10^9 would run for
    seconds where neither the progress handler nor interrupt() can stop it (and then return NULL).
    The checked call runs the real printf on a private in-memory connection. Returns the list in
    which an over-wide call leaves its width, for the error message."""
    oversized: list[int] = []
    real = sqlite3.connect(":memory:", check_same_thread=False)
    real.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)

    def checked(fmt: Any, *args: Any) -> Any:
        if isinstance(fmt, str):
            arg = 0
            for spec in _PRINTF_SPEC.finditer(fmt):
                for size in spec.group(1, 2):
                    value = args[arg] if size == "*" and arg < len(args) else size
                    arg += size == "*"
                    try:
                        width = abs(int(value or 0))
                    except (TypeError, ValueError):
                        width = 0
                    if width > MAX_VALUE_BYTES:
                        oversized.append(width)
                        raise ValueError("printf width or precision too big")
                arg += spec.group(3) != "%"
        return real.execute(f"SELECT printf({','.join('?' * (len(args) + 1))})", (fmt, *args)).fetchone()[0]

    for name in ("printf", "format"):
        conn.create_function(name, -1, checked, deterministic=True)
    return oversized


def _authorizer(denied: list[str]) -> Callable[..., int]:
    def authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
            denied.append(f"the function {arg2}()")
        elif action in _ALLOWED or (action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES):
            return sqlite3.SQLITE_OK
        elif action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _SCHEMA_PRAGMAS:
            return sqlite3.SQLITE_OK
        else:
            denied.append(_describe(action, arg1, arg2))
        return sqlite3.SQLITE_DENY

    return authorize


def _describe(action: int, arg1: str | None, arg2: str | None) -> str:
    """Name a denied action the way the user wrote it (DDL shows up first as a write to sqlite_master)."""
    name = _ACTIONS.get(action, f"action {action}").replace("_", " ")
    if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE) and (
            arg1 or "").startswith(("sqlite_master", "sqlite_temp_master", "sqlite_schema")):
        return "changing the schema (CREATE / DROP / ALTER)"
    if action == sqlite3.SQLITE_ATTACH:
        return f"ATTACH / VACUUM INTO {arg1!r}" if arg1 else "VACUUM"
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}" + (f" = {arg2}" if arg2 else "")
    if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
        return f"{name} {arg1 or ''}".strip()
    return f"{name} on {arg1}" if arg1 else name


def _unique(names: list[str]) -> list[str]:
    """Duplicate column names (SELECT a.id, b.id) would collide as dict keys in JSONL."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _defused(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _plain(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _short(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, str) and len(value) > _PREVIEW_CHARS:
        return value[:_PREVIEW_CHARS] + f"... ({len(value)} chars)"
    return value
