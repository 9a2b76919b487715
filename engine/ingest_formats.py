"""Readers for the text and SQLite trace sources (JSONL, CSV, a table of another SQLite file), and the
byte-level reading of JSON that the adapters (engine/ingest_adapters.py) share.

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
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine.errors import IngestError
from engine.ingest_map import FieldMap, put
from engine.ingest_types import IngestTimeout, Raw, RowInvalid, Source

SQLITE_MAGIC = b"SQLite format 3\x00"
_UTF8_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32",
              b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}
MAX_FIELD_BYTES = 64 * 1024 * 1024  # one JSONL line, CSV cell or SQLite value; bounds the memory one record takes
_SQLITE_PROGRESS_EVERY = 10_000  # VM instructions between deadline checks while SQLite computes a row


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


def json_lines(path: Path) -> bool:
    """Whether the file is JSON Lines: its first non-blank line is a complete JSON value (a
    pretty-printed document's first line is not)."""
    with open(path, "rb") as fh:
        for raw in iter(lambda: fh.readline(MAX_FIELD_BYTES), b""):
            if raw.strip():
                try:
                    json.loads(raw.removeprefix(_UTF8_BOM))
                except ValueError:
                    return False
                return True
    return False


def read_document(path: Path, encoding: str) -> Any:
    """A whole JSON document (an OpenTelemetry or Langfuse export that is not JSONL), at most
    MAX_FIELD_BYTES. It is one unit, so any problem with it is a file-level IngestError."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_FIELD_BYTES + 1)
    if len(data) > MAX_FIELD_BYTES:
        raise IngestError(f"{path}: a JSON document larger than {MAX_FIELD_BYTES:,} bytes; export it as JSONL "
                          f"(one object per line) instead", path=str(path))
    for bom, name in _WIDE_BOMS.items():
        if data.startswith(bom):
            raise IngestError(f"{path}: the file is {name} (byte-order mark {bom.hex()}); re-encode it as UTF-8, "
                              f"e.g. iconv -f {name} -t UTF-8", path=str(path))
    try:
        text = data.removeprefix(_UTF8_BOM).decode(encoding)
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: byte 0x{data[exc.start:exc.start + 1].hex()} at byte offset {exc.start} is not "
                          f"valid {encoding}; re-encode the file as UTF-8 or pass --encoding", path=str(path)) from None
    if "\x00" in text:
        raise IngestError(f"{path}: NUL byte at offset {text.index(chr(0))}; remove NUL bytes from the file",
                          path=str(path))
    try:
        return loads_strict(text)
    except json.JSONDecodeError as exc:
        raise IngestError(f"{path} line {exc.lineno}: invalid JSON at column {exc.colno}: {exc.msg}",
                          path=str(path), line=exc.lineno) from None
    except RowInvalid as exc:
        raise IngestError(f"{path}, field {exc.field!r}: {exc.reason}", path=str(path), field=exc.field) from None


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
    columns = [h.strip() for h in header]
    names = fields.names(columns, source)
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
            if fields.pulls:
                fields.pull(rec, {h: c for h, c in zip(columns, cells, strict=True) if c})
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
        columns = [d[0] for d in cur.description]
        names = fields.names(columns, source)

        def rows() -> Iterator[Raw]:
            nonlocal read
            for read, values in enumerate(cur, 1):  # noqa: B007 - `read` names the failing row below
                rec: dict[str, Any] = {}
                for name, value in zip(names, values, strict=True):
                    if name is not None and value is not None:
                        put(rec, name, value)
                if fields.pulls:
                    fields.pull(rec, dict(zip(columns, values, strict=True)))
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
