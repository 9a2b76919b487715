"""Which format a trace source is in, and its records: the one place that knows every reader.

The format comes from `--format`, else from the path: a folder written by `Dataset.save_to_disk` is
`hf`; `.parquet` is Parquet, `.csv` CSV, `.db .sqlite .sqlite3` SQLite; a `.jsonl .ndjson .json` file
is sniffed from its first record (`resourceSpans`: OpenTelemetry; `messages`: OpenAI chat; a Langfuse
trace or observation: Langfuse; anything else: flat JSONL traces); other extensions by magic bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import IngestError
from engine.ingest_adapters import classify, read_adapted
from engine.ingest_arrow import hf_split, is_hf_folder, read_hf, read_parquet
from engine.ingest_formats import (
    MAX_FIELD_BYTES,
    SQLITE_MAGIC,
    json_lines,
    loads_strict,
    open_sqlite,
    read_csv,
    read_jsonl,
    resolve_table,
)
from engine.ingest_map import FieldMap
from engine.ingest_types import FORMATS, Raw, RowInvalid, Source

_SUFFIXES = {".csv": "csv", ".db": "sqlite", ".sqlite": "sqlite", ".sqlite3": "sqlite", ".parquet": "parquet",
             ".pq": "parquet"}
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 1 << 20  # a pretty-printed document is classified from its first MiB


def detect_source(path: Path, explicit: str | None, table: str | None) -> Source:
    """The Source for `path`: its format, the table or split to read, and what a record's number counts."""
    fmt = _format(path, explicit)
    if table and fmt not in ("sqlite", "hf"):
        raise IngestError(f"{path}: --table applies to SQLite sources only (a table), and to Hugging Face dataset "
                          f"folders (a split)", path=str(path))
    if fmt == "sqlite":
        return Source(path, fmt, resolve_table(path, table), "row")
    if fmt == "hf":
        return Source(path, fmt, hf_split(path, table), "row")
    if fmt == "parquet":
        return Source(path, fmt, None, "row")
    if fmt == "otel":
        return Source(path, fmt, None, "span")
    if fmt == "langfuse":
        return Source(path, fmt, None, "line" if json_lines(path) else "item")
    return Source(path, fmt)


@contextmanager
def open_records(source: Source, fields: FieldMap, encoding: str, timeout_s: float) -> Iterator[Iterator[Raw]]:
    """The records of `source`, `--map` applied, each a Raw for the ingest loop to validate."""
    if source.format == "sqlite":
        with open_sqlite(source, fields, timeout_s) as rows:
            yield rows
    elif source.format == "csv":
        yield read_csv(source, encoding, fields)
    elif source.format == "parquet":
        yield read_parquet(source, fields)
    elif source.format == "hf":
        yield read_hf(source, fields)
    elif source.format == "jsonl":
        yield _mapped(read_jsonl(source, encoding), fields)
    else:
        yield read_adapted(source, encoding, fields)


def _mapped(raws: Iterator[Raw], fields: FieldMap) -> Iterator[Raw]:
    if not fields.pairs:
        yield from raws
        return
    for raw in raws:
        if raw.record is not None:
            try:
                raw.record = fields.apply(raw.record)
            except RowInvalid as exc:
                raw.record, raw.problem = None, exc
                raw.text = None
        yield raw


def _format(path: Path, explicit: str | None) -> str:
    if explicit and explicit not in FORMATS:
        raise IngestError(f"{path}: unknown format {explicit!r}; use one of {', '.join(FORMATS)}", path=str(path))
    if path.is_dir():
        if explicit in (None, "hf") and is_hf_folder(path):
            return "hf"
        raise IngestError(f"{path}: is a folder; give one trace file (.jsonl, .csv, .parquet or a SQLite database) "
                          f"or a folder written by Dataset.save_to_disk", path=str(path))
    if explicit == "hf":
        raise IngestError(f"{path}: --format hf takes a folder written by Dataset.save_to_disk", path=str(path))
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if suffix in _JSON_SUFFIXES:
        return _sniff(path)
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        return "sqlite"
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    raise IngestError(f"{path}: cannot tell the format from the extension {path.suffix!r}; "
                      f"pass --format {'|'.join(FORMATS)}", path=str(path))


def _sniff(path: Path) -> str:
    """The adapter a JSON file's first record looks like; flat JSONL when none does (or it cannot be read:
    the JSONL reader then says what is wrong, line by line)."""
    with open(path, "rb") as fh:
        if json_lines(path):
            first = next((line for line in iter(lambda: fh.readline(MAX_FIELD_BYTES), b"") if line.strip()), b"")
            try:
                value = loads_strict(first.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace"))
            except (ValueError, RowInvalid):
                return "jsonl"
        else:
            value = _document_head(fh.read(_SNIFF_BYTES))
    return classify(value) or "jsonl"


def _document_head(head: bytes) -> object:
    """Enough of a pretty-printed document to classify it: the whole of it when it fits the sniff window,
    else a marker object built from the keys that tell the formats apart."""
    text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    try:
        return loads_strict(text)
    except (ValueError, RowInvalid):
        markers = ("resourceSpans", "projectId", "project_id", "htmlPath", "observations")  # no chat: it is JSONL
        return {m: [] for m in markers if f'"{m}"' in text} or None
