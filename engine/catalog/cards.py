"""Dataset cards, the protocol every catalog source implements, and the sidecar card format.

A card is what the search reads about a dataset: the source id cold-start's `--data` accepts, the
task type, the labels (or entity types), the size, licence and language, and a paragraph written for
matching. Sources produce cards; they never load data for training (cold-start does that from
`card.source` with `card.options`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.errors import DatasetError
from engine.records import TASKS
from engine.tasks import task_type

ORIGINS = ("packaged", "shared", "local", "hub")
CARD_SUFFIX = ".card.json"
CARD_FIELDS = ("title", "description", "task", "labels", "rows", "license", "language", "options")


@dataclass(frozen=True)
class DatasetCard:
    """One dataset as the search sees it. `rows` is None for generated or unknown-size sources."""

    source: str
    title: str
    task: str | None  # None: the source does not say (a Hub dataset without task categories)
    description: str
    labels: tuple[str, ...] = ()
    rows: int | None = None
    license: str = "unknown"
    language: str = "en"
    origin: str = "packaged"
    options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise DatasetError(f"card {self.source}: field task: {self.task!r} is not one of {', '.join(TASKS)}")
        if self.origin not in ORIGINS:
            raise DatasetError(f"card {self.source}: field origin: {self.origin!r} is not one of {', '.join(ORIGINS)}")

    @property
    def size(self) -> str:
        return f"{self.rows:,} rows" if self.rows is not None else "size unknown"

    def text(self, max_labels: int = 12) -> str:
        """The text embedded for matching: title and paragraph, then the labels (the first few)."""
        labels = ", ".join(label.replace("_", " ") for label in self.labels[:max_labels])
        more = f" and {len(self.labels) - max_labels} more" if len(self.labels) > max_labels else ""
        kind = task_type(self.task).label_noun if self.task is not None else "labels"
        return f"{self.title}. {self.description}" + (f" {kind.capitalize()}: {labels}{more}." if labels else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DatasetCard:
        return cls(**{**raw, "labels": tuple(raw.get("labels") or ()), "notes": tuple(raw.get("notes") or ())})


@dataclass(frozen=True)
class Listing:
    """What one source lists, and what it could not (a file it skipped, the Hub unreachable), one line each."""

    cards: tuple[DatasetCard, ...]
    notes: tuple[str, ...] = ()


class CatalogSource(Protocol):
    """Somewhere datasets are listed. `listing` may use the description (a remote search does); it
    never raises for an unreachable or partly unreadable source: it says so in the notes."""

    name: str

    def listing(self, description: str) -> Listing: ...


# ---------------------------------------------------------------------------------------------
# Sidecar cards: NAME.card.json beside a local dataset file NAME.<ext>
# ---------------------------------------------------------------------------------------------

def read_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar card's fields, validated; every field is optional (the file fills the rest)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the card ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object with fields {', '.join(CARD_FIELDS)}")
    unknown = sorted(set(raw) - set(CARD_FIELDS))
    if unknown:
        raise DatasetError(f"{path}: field {unknown[0]}: unknown; a card has {', '.join(CARD_FIELDS)}")
    for key in ("title", "description", "task", "license", "language"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise DatasetError(f"{path}: field {key}: expected non-empty text")
    if "task" in raw and raw["task"] not in TASKS:
        raise DatasetError(f"{path}: field task: {raw['task']!r} is not one of {', '.join(TASKS)}")
    if "labels" in raw and not (isinstance(raw["labels"], list) and all(isinstance(x, str) and x for x in raw["labels"])):
        raise DatasetError(f"{path}: field labels: expected a list of non-empty strings")
    if "rows" in raw and not (isinstance(raw["rows"], int) and not isinstance(raw["rows"], bool) and raw["rows"] >= 0):
        raise DatasetError(f"{path}: field rows: expected a whole number >= 0")
    if "options" in raw and not isinstance(raw["options"], dict):
        raise DatasetError(f"{path}: field options: expected a JSON object (loader options, e.g. {{\"oos\": false}})")
    return raw
