"""Trace ingestion: validate every record of a trace source, write all or nothing.

The sources (flat JSONL / CSV / SQLite / Parquet / Hugging Face datasets, and the OpenAI chat,
OpenTelemetry and Langfuse adapters) are read in engine/ingest_sources.py; the format is documented in
the README ("Trace format"). Default: the first invalid record stops
the ingest, nothing is written, and IngestError names the file, line and field. With
`skip_invalid`, valid records go in and every reject is written, with its reason, to a JSONL file.
Ids are the file's own or a hash of the trace's identity (ts, model_id, task, input, prediction),
and an id already stored is left as it is, so re-ingesting a file (or a re-export of it with new
judge annotations) never duplicates a trace.

Limits that hold for any source, even a SQLite view that never ends: `timeout_s` for the whole
ingest, `max_rows` records, MAX_FIELD_BYTES per line / cell / value; past one, nothing is written.
Rejects stream to their file (never held in memory), which may not be the input or a workspace file.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from engine.errors import IngestError
from engine.ingest_formats import MAX_FIELD_BYTES, SQLITE_MAGIC, loads_strict
from engine.ingest_map import FieldMap
from engine.ingest_sources import detect_source, open_records
from engine.ingest_types import (
    FIELDS,
    FORMATS,
    META_EXTRA,
    REQUIRED,
    TABULAR,
    IngestTimeout,
    Raw,
    RowInvalid,
    Source,
)
from store import Store
from store.artifacts import atomic_open
from store.jsoncols import now
from store.traces import TRACE_COLUMNS

__all__ = ["DEFAULT_MAX_ROWS", "DEFAULT_TIMEOUT_S", "FIELDS", "FORMATS", "MAX_FIELD_BYTES", "REQUIRED", "FieldMap",
           "IngestError", "IngestResult", "ingest_traces"]

VERDICTS = ("pass", "fail")
_KNOWN = frozenset((*FIELDS, META_EXTRA))
_OPTIONAL_TEXT = ("task", "correction", "reasoning", "human_output", "stage", "source")
_HASH = TRACE_COLUMNS.index("content_hash")  # rows are tuples in TRACE_COLUMNS order
_JSON = json.JSONEncoder(ensure_ascii=False).encode  # reused: json.dumps re-creates one per call
_JSON_SORTED = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False).encode
CHUNK = 5000  # rows per executemany; also the unit of the "already stored?" lookup
_CHUNK_BYTES = 64 * 1024 * 1024  # ... or fewer rows, when they are this large
_TEXT = itemgetter(*(TRACE_COLUMNS.index(c) for c in ("input", "prediction", "correction", "reasoning", "metadata")))
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_ROWS = 2_000_000  # the in-file duplicate check holds ~200 bytes per record: ~400 MB at the cap
_LOOKUP = 500  # ids per IN (...) lookup


@dataclass
class IngestResult:
    path: str
    format: str
    read: int = 0  # records seen (blank lines and skipped records excluded)
    inserted: int = 0
    duplicates: int = 0  # same id and same content: already stored, or repeated in the file
    conflicts: int = 0  # id already stored with different content: the stored trace is kept
    rejected: int = 0
    skipped: int = 0  # records that are no model call: an OpenTelemetry HTTP span, a Langfuse SPAN observation
    rejects_path: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.inserted} inserted", f"{self.duplicates} duplicates skipped"]
        if self.conflicts:
            parts.append(f"{self.conflicts} already stored with different content (kept as stored)")
        parts.append(f"{self.rejected} rejected" + (f" (reasons in {self.rejects_path})" if self.rejected else ""))
        if self.skipped:
            parts.append(f"{self.skipped} skipped (not a model call)")
        return f"{self.path}: {', '.join(parts)} in {self.seconds:.2f} s"


def ingest_traces(
    store: Store,
    path: str | Path,
    *,
    format: str | None = None,
    table: str | None = None,
    mapping: FieldMap | dict[str, str] | None = None,
    skip_invalid: bool = False,
    rejects_path: str | Path | None = None,
    encoding: str = "utf-8",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> IngestResult:
    """Ingest one file into the workspace's traces in a single transaction."""
    started = time.perf_counter()
    path = Path(path)
    _check_readable(path)
    if timeout_s <= 0 or max_rows < 1:
        raise IngestError(f"--timeout ({timeout_s:g} s) and --max-rows ({max_rows}) must be positive", path=str(path))
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise IngestError(f"--encoding {encoding!r}: unknown encoding; use e.g. utf-8 or latin-1",
                          path=str(path)) from None
    fields = mapping if isinstance(mapping, FieldMap) else FieldMap(mapping)
    source = detect_source(path, format, table)
    target = _rejects_target(store, path, rejects_path) if skip_invalid else None
    result = IngestResult(path=str(path), format=source.format)
    with store.transaction(), ExitStack() as rejects:
        writer = _Writer(store, source, result, skip_invalid, timeout_s, max_rows,
                         lambda: rejects.enter_context(atomic_open(target, "w", encoding="utf-8")))
        with open_records(source, fields, encoding, timeout_s) as raws:
            writer.consume(raws)
        writer.flush()
        if result.read == 0:
            why = f"its {result.skipped} records are no model calls" if result.skipped else \
                "empty or only blank lines / a header"
            raise IngestError(f"{source.label}: no traces in the file ({why})", path=str(path))
        if result.rejected:
            result.rejects_path = str(target)
    result.seconds = time.perf_counter() - started
    return result


def _check_readable(path: Path) -> None:
    """A regular file or a folder (a Hugging Face dataset's; engine/ingest_sources.py checks): a FIFO or
    device is named as such (a FIFO could block forever)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise IngestError(f"{path}: no such file", path=str(path)) from None
    except OSError as exc:
        raise IngestError(f"{path}: cannot read it ({exc.strerror})", path=str(path)) from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise IngestError(f"{path}: is not a regular file (a FIFO, socket or device); save the traces to a file "
                          f"and ingest that", path=str(path))


def _rejects_target(store: Store, path: Path, explicit: str | Path | None) -> Path:
    """Where rejects go. The default is per input path (two inputs with one name keep their own); a
    path given may not be the input, a file of the workspace outside artifacts/, a database, or a
    file that is not an earlier rejects file: writing there would destroy data."""
    if explicit is None:
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        return store.artifacts / "ingest" / f"{path.name}.{digest}.rejects.jsonl"
    target = Path(explicit).resolve()
    refuse = None
    if target == path.resolve() or (target.exists() and target.samefile(path)):
        refuse = "it is the input file"
    elif target.is_relative_to(store.workspace.root.resolve()) and \
            not target.is_relative_to(store.artifacts.resolve()):
        refuse = "it is inside the workspace, next to its database (use a path outside it or under artifacts/)"
    elif target.exists() and not target.is_file():
        refuse = "it is not a regular file"
    elif target.is_file() and target.stat().st_size:
        with open(target, "rb") as fh:
            head = fh.readline(1 << 16)
        if head.startswith(SQLITE_MAGIC):
            refuse = "it is a SQLite database"
        elif not _is_reject_line(head):
            refuse = "it holds something other than rejects from an earlier ingest"
    if refuse:
        raise IngestError(f"--rejects {explicit}: refusing to overwrite it: {refuse}; choose another path",
                          path=str(path), field="rejects")
    return target


def _is_reject_line(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and {"reason", "field"} <= record.keys()


def _reject_line(reject: dict[str, Any]) -> str:
    line = json.dumps(reject, ensure_ascii=False) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from bad input: escape it so the file stays UTF-8
        line = json.dumps(reject, ensure_ascii=True) + "\n"
    return line


class _Writer:
    """Validates records, catches duplicates, and writes them in chunks inside the caller's transaction;
    enforces the time and row limits; streams rejects to the file `open_rejects()` opens."""

    def __init__(self, store: Store, source: Source, result: IngestResult, skip_invalid: bool, timeout_s: float,
                 max_rows: int, open_rejects: Callable[[], IO[str]]) -> None:
        self.store, self.source, self.result, self.skip_invalid = store, source, result, skip_invalid
        self.timeout_s, self.deadline = timeout_s, time.monotonic() + timeout_s
        self.max_rows, self.open_rejects = max_rows, open_rejects
        self.loose = source.format in TABULAR  # tables may carry numbers and metadata as text
        self.ingested_at = now()
        self.seen: dict[str, tuple[int, str]] = {}  # id -> (line, content hash) for this file
        self.pending: list[tuple[Any, ...]] = []
        self.pending_chars = 0
        self.rejects: IO[str] | None = None

    def consume(self, raws: Iterator[Raw]) -> None:
        for raw in raws:
            if raw.record is None and raw.problem is None:  # not a trace (an adapter skipped it)
                self.result.skipped += 1
                continue
            self.result.read += 1
            if self.result.read % 1024 == 0 and time.monotonic() > self.deadline:
                raise IngestTimeout(self.source, self.timeout_s)
            if self.result.read > self.max_rows:
                raise IngestError(f"{self.source.label}: more than {self.max_rows:,} records; nothing was written "
                                  f"(split the source, or raise --max-rows)", path=str(self.source.path),
                                  line=raw.line)
            try:
                if raw.problem is not None:
                    raise raw.problem
                row = to_row(raw.record, self.source.default_source, self.ingested_at, self.loose)  # type: ignore[arg-type]
                self._dedupe(raw.line, row)
            except RowInvalid as exc:
                self._reject(raw, exc)
                continue
            if len(self.pending) >= CHUNK or self.pending_chars >= _CHUNK_BYTES:
                self.flush()

    def _dedupe(self, line: int, row: tuple[Any, ...]) -> None:
        trace_id, digest = row[0], row[_HASH]
        earlier = self.seen.get(trace_id)
        if earlier is None:
            self.seen[trace_id] = (line, digest)
            self.pending.append(row)
            self.pending_chars += sum(map(len, filter(None, _TEXT(row))))
        elif earlier[1] == digest:
            self.result.duplicates += 1
        else:
            raise RowInvalid("id", f"id {trace_id!r} is also on {self.source.unit} {earlier[0]} with different "
                                   f"content; give each trace its own id or delete one")

    def _reject(self, raw: Raw, exc: RowInvalid) -> None:
        where = f"{self.source.label} {self.source.unit} {raw.line}"
        if exc.field:
            where += f", field {exc.field!r}"
        if not self.skip_invalid:
            raise IngestError(f"{where}: {exc.reason}", path=str(self.source.path), line=raw.line,
                              field=exc.field) from None
        self.result.rejected += 1
        record = None
        if raw.record is not None:
            record = {("metadata_from_map" if k == META_EXTRA else k): v for k, v in raw.record.items()}
        if self.rejects is None:
            self.rejects = self.open_rejects()
        self.rejects.write(_reject_line({"file": str(self.source.path), self.source.unit: raw.line,
                                         "field": exc.field, "reason": exc.reason, "record": record,
                                         "text": raw.text}))

    def flush(self) -> None:
        if not self.pending:
            return
        rows, self.pending, self.pending_chars = self.pending, [], 0
        conn = self.store.conn
        stored: dict[str, str] = {}
        for i in range(0, len(rows), _LOOKUP):
            ids = [r[0] for r in rows[i:i + _LOOKUP]]
            stored.update(conn.execute(
                f"SELECT id, content_hash FROM trace_records WHERE id IN ({','.join('?' * len(ids))})", ids))
        if stored:
            fresh = [r for r in rows if r[0] not in stored]
            same = sum(1 for r in rows if stored.get(r[0]) == r[_HASH])
            self.result.duplicates += same
            self.result.conflicts += len(rows) - len(fresh) - same
            rows = fresh
        self.result.inserted += self.store.traces.insert_many(rows)


# --- validation ------------------------------------------------------------------------------------

def to_row(rec: dict[str, Any], default_source: str, ingested_at: str, loose: bool) -> tuple[Any, ...]:
    """One validated record as a tuple in store.traces.TRACE_COLUMNS order (raises RowInvalid)."""
    unknown = rec.keys() - _KNOWN
    if unknown:
        name = sorted(unknown)[0]
        raise RowInvalid(name, f"unknown field; rename it with --map {name}=FIELD, keep it with "
                               f"--map {name}=metadata.{name}, or drop it with --map {name}=")
    for name in REQUIRED:
        if rec.get(name) is None:
            raise RowInvalid(name, f"missing; every trace needs {', '.join(REQUIRED)}")
    ts = _timestamp(rec["ts"])
    model_id = _text(rec, "model_id", nonempty=True)
    input_ = _text(rec, "input", nonempty=True)
    prediction = _text(rec, "prediction")
    verdict = _verdict(rec, "verdict")
    human_verdict = _verdict(rec, "human_verdict") if rec.get("human_verdict") is not None else None
    task, correction, reasoning, human_output, stage, source = (
        _text(rec, name) if rec.get(name) is not None else None for name in _OPTIONAL_TEXT)
    metadata = _metadata(rec, loose)
    latency = _latency(rec["latency_ms"], loose) if rec.get("latency_ms") is not None else None
    trace_id = _id(rec.get("id"))
    try:
        identity = _JSON([ts, model_id, task, input_, prediction]).encode("utf-8")
        rest = _JSON([correction, verdict, reasoning, metadata, human_verdict, human_output, latency, stage,
                      source, trace_id]).encode("utf-8")
    except UnicodeEncodeError:  # SQLite would refuse the text later, without naming the field
        raise _surrogate_field(rec) from None
    digest = hashlib.sha256(identity + b"\n" + rest).hexdigest()
    if trace_id is None:
        trace_id = hashlib.sha256(identity).hexdigest()[:32]
    return (trace_id, ts, model_id, task, input_, prediction, correction, verdict, reasoning, metadata,
            human_verdict, human_output, latency, stage, source or default_source, digest, ingested_at)


def _text(rec: dict[str, Any], name: str, *, nonempty: bool = False) -> str:
    value = rec[name]
    if not isinstance(value, str):
        raise RowInvalid(name, f"expected a string, got {_type_name(value)} {_short(value)}")
    if nonempty and not value.strip():
        raise RowInvalid(name, "empty; give a non-empty string")
    if "\x00" in value:
        raise RowInvalid(name, f"contains a NUL character at position {value.index(chr(0))}; remove it")
    return value


_BAD_TEXT = "invalid text: bytes that are not UTF-8, or an unpaired surrogate escape such as \\ud800; fix its encoding"


def _surrogate_field(rec: dict[str, Any]) -> RowInvalid:
    for name, value in rec.items():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return RowInvalid(name, _BAD_TEXT)
    return RowInvalid(None, _BAD_TEXT)


def _verdict(rec: dict[str, Any], name: str) -> str:
    value = rec[name]
    verdict = value.strip().lower() if isinstance(value, str) else None
    if verdict not in VERDICTS:
        raise RowInvalid(name, f"{_short(value)} is not a verdict; use \"pass\" or \"fail\" "
                               f"(map other labels before ingesting)")
    return verdict  # type: ignore[return-value]


def _timestamp(value: Any) -> str:
    if not isinstance(value, str):
        raise RowInvalid("ts", f"expected an ISO-8601 string such as 2026-01-31T12:00:00Z, got "
                               f"{_type_name(value)} {_short(value)}")
    try:
        ts = datetime.fromisoformat(value.strip())
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (ValueError, OverflowError):
        raise RowInvalid("ts", f"{_short(value)} is not an ISO-8601 timestamp; write e.g. "
                               f"2026-01-31T12:00:00Z") from None
    return ts.isoformat(timespec="milliseconds" if ts.microsecond % 1000 == 0 else "microseconds")


def _metadata(rec: dict[str, Any], loose: bool) -> str:
    value = rec.get("metadata")
    if value is None:
        value = {}
    elif loose and isinstance(value, str):
        try:
            value = loads_strict(value)
        except json.JSONDecodeError as exc:
            raise RowInvalid("metadata", f"not valid JSON ({exc.msg} at column {exc.colno}); write a JSON "
                                         f"object such as {{\"judge\": \"gpt-4o\"}}") from None
        except RowInvalid as exc:
            raise RowInvalid("metadata", exc.reason) from None
    if not isinstance(value, dict):
        raise RowInvalid("metadata", f"expected a JSON object, got {_type_name(value)} {_short(value)}")
    extra = rec.get(META_EXTRA)
    if extra:
        clash = extra.keys() & value.keys()
        if clash:
            raise RowInvalid("metadata", f"key {sorted(clash)[0]!r} is given both in metadata and by --map")
        value = {**value, **extra}
    try:
        return _JSON_SORTED(value)
    except ValueError:
        raise RowInvalid("metadata", "contains NaN or Infinity, which JSON cannot hold; write null or a string") \
            from None


def _latency(value: Any, loose: bool) -> float:
    if loose and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RowInvalid("latency_ms", f"{_short(value)} is not a number; write milliseconds, e.g. 120.5") \
                from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowInvalid("latency_ms", f"expected a number of milliseconds, got {_type_name(value)} "
                                       f"{_short(value)}")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or value < 0:
        raise RowInvalid("latency_ms", f"{_short(value)} is not a finite, non-negative number of milliseconds")
    return value


def _id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowInvalid("id", f"expected a string or integer, got {_type_name(value)} {_short(value)}")
    text = str(value).strip()
    if not text or "\x00" in text:
        raise RowInvalid("id", "empty or contains NUL; omit the field to get a content-hash id")
    return text


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "an array",
             dict: "an object", bytes: "a BLOB", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr) if not isinstance(value, bytes) else f"<{len(value)} bytes>"
    return text if len(text) <= 40 else text[:37] + "..."
