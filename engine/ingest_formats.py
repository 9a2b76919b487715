"""Readers for the three trace sources (JSONL, CSV, a table of another SQLite file).

A reader turns a file into `Raw` records: a dict of field -> value plus where it came from, or
the reason the line could not be read at all (bad bytes, bad JSON). File-level problems (missing
file, UTF-16, not a database, no such table, bad CSV header) raise IngestError at once; line-level
problems are handed to the caller, which either stops (default) or rejects the line
(--skip-invalid). Field validation lives in engine/ingest.py.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine.errors import IngestError

FIELDS = ("id", "ts", "model_id", "task", "input", "prediction", "verdict", "correction", "reasoning",
          "metadata", "human_verdict", "human_output", "latency_ms", "stage", "source")
REQUIRED = ("ts", "model_id", "input", "prediction", "verdict")
META_EXTRA = "\0metadata"  # record key collecting `--map src=metadata.KEY` values
FORMATS = ("jsonl", "csv", "sqlite")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
             ".db": "sqlite", ".sqlite": "sqlite", ".sqlite3": "sqlite"}
SQLITE_MAGIC = b"SQLite format 3\x00"
_UTF8_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32",
              b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}
MAX_FIELD_BYTES = 64 * 1024 * 1024  # one JSONL line, CSV cell or SQLite value; bounds the memory one record takes
_SQLITE_PROGRESS_EVERY = 10_000  # VM instructions between deadline checks while SQLite computes a row


class IngestTimeout(IngestError):
    """The ingest ran past its time limit (a source that never ends, or one that never returns a row)."""

    def __init__(self, source: Source, timeout_s: float) -> None:
        super().__init__(f"{source.label}: stopped after {timeout_s:g} s, the time limit; nothing was written "
                         f"(raise --timeout for a source this slow)", path=str(source.path))


class RowInvalid(Exception):
    """A single record is invalid; the ingest loop turns it into an IngestError or a reject."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


@dataclass
class Raw:
    line: int
    record: dict[str, Any] | None  # None when the line could not be parsed
    problem: RowInvalid | None = None
    text: str | None = None  # the undecodable / unparsable line, kept for the rejects file


@dataclass(frozen=True)
class Source:
    """Where records come from: `unit` is "line" for text files and "row" for SQLite tables."""

    path: Path
    format: str
    table: str | None = None

    @property
    def label(self) -> str:
        return f"{self.path} table {self.table!r}" if self.table else str(self.path)

    @property
    def unit(self) -> str:
        return "row" if self.format == "sqlite" else "line"

    @property
    def default_source(self) -> str:
        return f"{self.path.name}:{self.table}" if self.table else self.path.name


def detect_format(path: Path, explicit: str | None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise IngestError(f"{path}: unknown format {explicit!r}; use one of {', '.join(FORMATS)}",
                              path=str(path))
        return explicit
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt:
        return fmt
    with open(path, "rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
            return "sqlite"
    raise IngestError(f"{path}: cannot tell the format from the extension {path.suffix!r}; "
                      f"pass --format jsonl|csv|sqlite", path=str(path))


def _decoded_lines(path: Path, encoding: str) -> Iterator[tuple[int, str | None, RowInvalid | None, bool]]:
    """Yield (line number, text or None, problem, ends with newline) reading bytes, so one bad byte
    is reported with its line and byte offset instead of failing the whole file."""
    offset = 0
    with open(path, "rb") as fh:
        for n, raw in enumerate(iter(lambda: fh.readline(MAX_FIELD_BYTES + 1), b""), 1):
            if len(raw) > MAX_FIELD_BYTES and not raw.endswith(b"\n"):
                size = len(raw) + _skip_line(fh)
                start, offset = offset, offset + size
                yield n, None, RowInvalid(None, f"the line is {size:,} bytes long, more than the "
                                                f"{MAX_FIELD_BYTES:,} a record may take; shorten or split it"), True
                continue
            start, offset = offset, offset + len(raw)
            if n == 1:
                for bom, name in _WIDE_BOMS.items():
                    if raw.startswith(bom):
                        raise IngestError(
                            f"{path}: the file is {name} (byte-order mark {bom.hex()}); re-encode it as UTF-8, "
                            f"e.g. iconv -f {name} -t UTF-8", path=str(path))
                if raw.startswith(_UTF8_BOM):
                    raw, start = raw[len(_UTF8_BOM):], start + len(_UTF8_BOM)
            nul = raw.find(b"\x00")
            if nul >= 0:
                yield n, None, RowInvalid(None, f"NUL byte at byte offset {start + nul}; "
                                                f"remove NUL bytes from the file (e.g. tr -d '\\000')"), True
                continue
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                bad = raw[exc.start:exc.start + 1].hex()
                yield n, None, RowInvalid(None, f"byte 0x{bad} at byte offset {start + exc.start} is not valid "
                                                f"{encoding}; re-encode the file as UTF-8 or pass --encoding "
                                                f"(e.g. --encoding latin-1)"), True
                continue
            yield n, text, None, raw.endswith(b"\n")


def _skip_line(fh: Any) -> int:
    """Read past the rest of an over-long line without holding it; returns the bytes skipped."""
    skipped = 0
    while chunk := fh.readline(1 << 20):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RowInvalid(key, f"key {key!r} appears twice in one object; keep one")
            seen.add(key)
    return obj


def loads_strict(text: str) -> Any:
    """json.loads that refuses duplicate keys (silently last-wins by default). NaN / Infinity parse as
    floats so the field validators can name the field they appear in. Nesting deeper than the parser's
    recursion limit and integers longer than Python converts become a RowInvalid naming the field."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        field, depth = _culprit(text, digits=False)
        raise RowInvalid(field, f"nested {depth:,} levels deep, deeper than the JSON parser allows "
                                f"(about {sys.getrecursionlimit():,}); flatten it") from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int("9" * 5000): Python refuses to convert that many digits
        field, digits = _culprit(text, digits=True)
        raise RowInvalid(field, f"a number with {digits:,} digits (more than {sys.get_int_max_str_digits():,}); "
                                f"write it as a string") from None


_TOKEN = re.compile(r'("(?:[^"\\]|\\.)*")(\s*:)?|[{}\[\]]|\d+')


def _culprit(text: str, digits: bool) -> tuple[str | None, int]:
    """The top-level field holding the deepest nesting (or the longest number), and that depth (or
    length), found by a tokenizer that needs no recursion."""
    depth, key, best, where = 0, None, 0, None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            if depth == 1 and match.group(2):
                key = _key(match.group(1))
        elif token in "{[":
            depth += 1
            if not digits and depth > best:
                best, where = depth, key
        elif token in "}]":
            depth -= 1
        elif digits and len(token) > best:
            best, where = len(token), key
    return where, best - (where is not None and not digits)  # a field's depth counts from its own value


def _key(token: str) -> str:
    try:
        return json.loads(token)
    except ValueError:
        return token[1:-1]


def read_jsonl(source: Source, encoding: str) -> Iterator[Raw]:
    first_content = True
    for n, text, problem, complete in _decoded_lines(source.path, encoding):
        if problem:
            yield Raw(n, None, problem)
            continue
        assert text is not None
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            obj = loads_strict(text)
        except RowInvalid as exc:
            yield Raw(n, None, exc, text)
            continue
        except json.JSONDecodeError as exc:
            yield Raw(n, None, RowInvalid(None, _json_reason(exc, text, complete, first_content)), text)
            continue
        finally:
            first_content = False
        if not isinstance(obj, dict):
            yield Raw(n, None, RowInvalid(None, f"expected a JSON object, got {_json_type(obj)}"), text)
            continue
        yield Raw(n, obj)


def _json_reason(exc: json.JSONDecodeError, text: str, complete: bool, first: bool) -> str:
    if not complete:
        return f"the last line looks truncated (no newline at the end, and {exc.msg.lower()} at column " \
               f"{exc.colno}): complete or delete it"
    if first and text.lstrip().startswith("["):
        return "this looks like a JSON array; JSONL needs one object per line (e.g. jq -c '.[]' FILE)"
    return f"invalid JSON at column {exc.colno}: {exc.msg}"


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


class FieldMap:
    """`--map src=dst`: rename a foreign field to a trace field, to `metadata.KEY`, or drop it (`src=`)."""

    def __init__(self, pairs: dict[str, str] | None = None) -> None:
        self.pairs = dict(pairs or {})
        targets: dict[str, str] = {}
        for src, dst in self.pairs.items():
            if dst and dst not in FIELDS and not (dst.startswith("metadata.") and len(dst) > len("metadata.")):
                raise IngestError(f"--map {src}={dst}: {dst!r} is not a trace field; use one of "
                                  f"{', '.join(FIELDS)}, metadata.KEY, or nothing to drop it", path="--map",
                                  field=dst)
            if dst and dst in targets:
                raise IngestError(f"--map: both {targets[dst]!r} and {src!r} map to {dst!r}; keep one",
                                  path="--map", field=dst)
            targets[dst] = src

    @staticmethod
    def parse(specs: list[str] | None) -> FieldMap:
        pairs: dict[str, str] = {}
        for spec in specs or []:
            src, eq, dst = spec.partition("=")
            if not eq or not src.strip():
                raise IngestError(f"--map {spec!r}: write SRC=DST (e.g. --map label=verdict), or SRC= to drop",
                                  path="--map")
            pairs[src.strip()] = dst.strip()
        return FieldMap(pairs)

    def name(self, column: str) -> str | None:
        """The trace field a column feeds, or None when it is dropped."""
        return self.pairs.get(column, column) or None

    def names(self, columns: list[str], source: Source) -> list[str | None]:
        """Map a header once; a field fed by two columns or an unknown column is a file-level error."""
        names = [self.name(c) if c else None for c in columns]  # an unnamed column (trailing comma) is ignored
        where = f"{source.label} {'header' if source.format == 'sqlite' else 'line 1'}"
        seen: dict[str, str] = {}
        for column, name in zip(columns, names, strict=True):
            if name is None:
                continue
            if name not in FIELDS and not name.startswith("metadata."):
                raise IngestError(f"{where}, field {column!r}: unknown column; rename it with --map "
                                  f"{column}=FIELD, keep it with --map {column}=metadata.{column}, or drop it "
                                  f"with --map {column}=", path=str(source.path), line=1, field=column)
            if name in seen:
                raise IngestError(f"{where}, field {name!r}: given by both columns {seen[name]!r} and "
                                  f"{column!r}; drop one with --map", path=str(source.path), line=1, field=name)
            seen[name] = column
        missing = [f for f in REQUIRED if f not in seen]
        if missing:
            raise IngestError(f"{where}, field {missing[0]!r}: no such column (required: {', '.join(REQUIRED)}); "
                              f"rename yours with --map COLUMN={missing[0]}", path=str(source.path), line=1,
                              field=missing[0])
        return names

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        if not self.pairs:
            return record
        out: dict[str, Any] = {}
        for key, value in record.items():
            name = self.name(key)
            if name is None:
                continue
            if name in out or (name.startswith("metadata.") and name[9:] in out.get(META_EXTRA, {})):
                raise RowInvalid(name, f"given twice (once as {key!r}); drop one with --map")
            put(out, name, value)
        return out


def put(record: dict[str, Any], name: str, value: Any) -> None:
    if name.startswith("metadata."):
        record.setdefault(META_EXTRA, {})[name[len("metadata."):]] = value
    else:
        record[name] = value


def read_csv(source: Source, encoding: str, fields: FieldMap) -> Iterator[Raw]:
    """CSV with a header row of field names. An empty cell means the field is absent (for
    `prediction`, the empty string: the column is required, an empty output is legitimate)."""
    csv.field_size_limit(MAX_FIELD_BYTES)  # default is 128 KiB; a 10 MB field is a real trace
    problems: list[tuple[int, RowInvalid]] = []

    def text_lines() -> Iterator[str]:
        for n, text, problem, _ in _decoded_lines(source.path, encoding):
            if problem:
                problems.append((n, problem))
                yield "\n"  # keeps the reader's line count in step; the problem is reported below
            else:
                yield text  # type: ignore[misc]

    reader = csv.reader(text_lines())
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise IngestError(f"{source.path} line 1: unreadable CSV header ({exc})", path=str(source.path),
                          line=1) from exc
    if header is None:
        return
    if problems:
        n, problem = problems[0]
        raise IngestError(f"{source.path} line {n}: {problem.reason}", path=str(source.path), line=n)
    names = fields.names([h.strip() for h in header], source)
    unnamed = [i for i, h in enumerate(header) if not h.strip()]
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Raw(start, None, RowInvalid(None, f"unreadable CSV ({exc})"))
            start = reader.line_num + 1
            continue
        if problems:
            n, problem = problems[0]
            problems.clear()
            yield Raw(n, None, problem)
        elif len(cells) != len(names) and cells:
            yield Raw(start, None, RowInvalid(None, f"{len(cells)} cells but the header has {len(names)} "
                                                    f"columns; quote cells that contain commas"),
                      ",".join(cells))
        elif cells and any(cells[i] for i in unnamed):
            yield Raw(start, None, RowInvalid(None, f"cell {next(i for i in unnamed if cells[i]) + 1} has a value "
                                                    f"but its column has no name in the header; name it"),
                      ",".join(cells))
        elif cells:
            rec: dict[str, Any] = {}
            for name, cell in zip(names, cells, strict=True):
                if name is not None and (cell or name == "prediction"):
                    put(rec, name, cell)
            yield Raw(start, rec)
        start = reader.line_num + 1


@contextmanager
def open_sqlite(source: Source, fields: FieldMap, timeout_s: float) -> Iterator[Iterator[Raw]]:
    """Rows of `source.table` read through a read-only connection; NULL means the field is absent.
    A view can compute forever or build huge values: SQLite stops after `timeout_s` even before a row
    comes back, and at MAX_FIELD_BYTES per value."""
    deadline = time.monotonic() + timeout_s
    conn = sqlite3.connect(f"file:{quote(str(source.path.resolve()))}?mode=ro", uri=True)
    # Bad UTF-8 in one cell must fail that row and field, not the whole read: keep the bytes as lone
    # surrogates, which the validator reports with the row and the field.
    conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_FIELD_BYTES)
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _SQLITE_PROGRESS_EVERY)
    read = 0
    try:
        cur = conn.execute(f'SELECT * FROM "{str(source.table).replace(chr(34), chr(34) * 2)}"')
        names = fields.names([d[0] for d in cur.description], source)

        def rows() -> Iterator[Raw]:
            nonlocal read
            for read, values in enumerate(cur, 1):  # noqa: B007 - `read` names the failing row below
                rec: dict[str, Any] = {}
                for name, value in zip(names, values, strict=True):
                    if name is not None and value is not None:
                        put(rec, name, value)
                yield Raw(read, rec)

        yield rows()
    except sqlite3.DatabaseError as exc:
        if str(exc) == "interrupted" and time.monotonic() > deadline:
            raise IngestTimeout(source, timeout_s) from None
        if "too big" in str(exc):
            raise IngestError(f"{source.label} row {read + 1}: a value is larger than {MAX_FIELD_BYTES:,} bytes; "
                              f"shorten it in the source", path=str(source.path), line=read + 1) from None
        raise IngestError(f"{source.label}: cannot read it ({exc})", path=str(source.path)) from exc
    finally:
        conn.close()


def resolve_table(path: Path, table: str | None) -> str:
    """The table to read: the one named, or the only one there is."""
    with open(path, "rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise IngestError(f"{path}: not a SQLite database (no SQLite header); pass --format jsonl or csv",
                              path=str(path))
    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
    except sqlite3.DatabaseError as exc:
        raise IngestError(f"{path}: not a readable SQLite database ({exc})", path=str(path)) from exc
    finally:
        conn.close()
    listing = ", ".join(tables) or "(none)"
    if table is None:
        if len(tables) != 1:
            raise IngestError(f"{path}: pass --table to choose one of: {listing}", path=str(path))
        return tables[0]
    if table not in tables:
        raise IngestError(f"{path}: no table {table!r}; tables: {listing}", path=str(path))
    return table
