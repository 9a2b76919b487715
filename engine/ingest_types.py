"""What every trace reader shares: the trace fields, a record as read (`Raw`), where it came from
(`Source`), and the two ways one fails (`RowInvalid` for a record, `IngestTimeout` for the source).

Its own module so the readers (engine/ingest_formats.py, ingest_adapters.py, ingest_arrow.py), the
field map (ingest_map.py) and the ingest loop (ingest.py) can share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import IngestError

FIELDS = ("id", "ts", "model_id", "task", "input", "prediction", "verdict", "correction", "reasoning",
          "metadata", "human_verdict", "human_output", "latency_ms", "stage", "source")
REQUIRED = ("ts", "model_id", "input", "prediction", "verdict")
META_EXTRA = "\0metadata"  # record key collecting `--map src=metadata.KEY` values
# flat records: jsonl, csv, sqlite, parquet, hf; adapters that translate a foreign record: openai, otel, langfuse
FORMATS = ("jsonl", "csv", "sqlite", "parquet", "hf", "openai", "otel", "langfuse")
TABULAR = frozenset(("csv", "sqlite", "parquet", "hf"))  # columns; numbers and metadata may arrive as text


class RowInvalid(Exception):
    """A single record is invalid; the ingest loop turns it into an IngestError or a reject."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


@dataclass
class Raw:
    line: int  # the record's number in its source's unit (line, row, span or item)
    record: dict[str, Any] | None  # None when the line could not be parsed
    problem: RowInvalid | None = None
    text: str | None = None  # the undecodable / unparsable line, kept for the rejects file


@dataclass(frozen=True)
class Source:
    """Where records come from. `table` is a SQLite table or a Hugging Face split; `unit` is what
    a record's number counts: "line" (text files), "row" (tables), "span" or "item" (in one JSON document)."""

    path: Path
    format: str
    table: str | None = None
    unit: str = "line"

    @property
    def label(self) -> str:
        if not self.table:
            return str(self.path)
        return f"{self.path} {'split' if self.format == 'hf' else 'table'} {self.table!r}"

    @property
    def default_source(self) -> str:
        return f"{self.path.name}:{self.table}" if self.table else self.path.name


class IngestTimeout(IngestError):
    """The ingest ran past its time limit (a source that never ends, or one that never returns a row)."""

    def __init__(self, source: Source, timeout_s: float) -> None:
        super().__init__(f"{source.label}: stopped after {timeout_s:g} s, the time limit; nothing was written "
                         f"(raise --timeout for a source this slow)", path=str(source.path))
