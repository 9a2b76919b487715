"""Persistence on SQLite (sqlite-utils). Imports none of engine, widgets, pioneer_tui or textual."""

from store.artifacts import atomic_write_bytes, atomic_write_jsonl, atomic_write_text, content_hash, file_hash
from store.errors import PioneerError, SchemaError, StoreBusy
from store.runlog import Event
from store.workspace import Store, Workspace

__all__ = [
    "Event", "PioneerError", "SchemaError", "Store", "StoreBusy", "Workspace", "atomic_write_bytes", "atomic_write_jsonl",
    "atomic_write_text", "content_hash", "file_hash",
]
