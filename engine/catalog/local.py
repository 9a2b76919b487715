"""Datasets in a local folder (`--data-dir`, default the workspace's `datasets/`).

Every dataset file in the folder or one level of subfolders (.jsonl .ndjson .json .csv .tsv .conll
.bio .txt) gets a card. The card is inferred from the file as cold-start would load it (rows, task:
spans are NER, a small set of short repeated answers is classification, anything else generation;
labels by frequency; field names; a few sample inputs), and a sidecar `NAME.card.json` beside
`NAME.<ext>` overrides any of its fields; write one with at least a `description` so the search can
match the dataset by meaning:

    {"title": "Support tickets", "description": "Customer e-mails to a helpdesk, each routed to ...",
     "task": "classification", "labels": ["billing", "refund"], "license": "internal", "language": "en"}

The folder's files are loaded with the loader cold-start uses (injected: the catalog sits below the
modes), so a card describes exactly what `--data FILE` will train on, and a file that does not load
is skipped with its one-line error as a note.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.catalog.cards import CARD_SUFFIX, DatasetCard, Listing, read_sidecar
from engine.errors import PioneerError
from engine.records import Example

DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".conll", ".bio", ".txt")
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_LABELS = 300        # the same thresholds as cold-start's task analysis (analysis.DataSchema)
LABEL_REPEAT = 3.0
LONG_ANSWER_WORDS = 6
SAMPLES = 3


class Loaded(Protocol):
    """What cold-start's loader returns (engine.coldstart.registry.LoadedData), as far as a card needs."""

    splits: Mapping[str, Sequence[Example]]
    fields: Mapping[str, str]
    format: str


Loader = Callable[[Path], Loaded]


def infer_task(examples: Sequence[Example]) -> tuple[str, tuple[str, ...]]:
    """(task, labels by frequency) from the answers, by cold-start's rule: spans are NER; a small set
    of short answers, each repeated, is classification; anything else is generation."""
    outputs = [ex.output for ex in examples]
    if outputs and all(isinstance(o, tuple | list) for o in outputs):
        return "ner", tuple(label for label, _ in Counter(s.label for o in outputs for s in o).most_common())
    counts = Counter(" ".join(str(o).split()) for o in outputs)
    avg_words = sum(len(str(o).split()) for o in outputs) / max(len(outputs), 1)
    if 2 <= len(counts) <= MAX_LABELS and len(outputs) / len(counts) >= LABEL_REPEAT \
            and avg_words <= LONG_ANSWER_WORDS:
        return "classification", tuple(label for label, _ in counts.most_common())
    return "generation", ()


def _title(path: Path) -> str:
    return " ".join(re.split(r"[_\-.\s]+", path.stem)).strip() or path.name


def _inferred(path: Path, data: Loaded, folder: Path) -> dict[str, Any]:
    examples = [ex for split in data.splits.values() for ex in split]
    task, labels = infer_task(examples)
    what = {"ner": "entity-tagged sentences", "classification": f"texts labelled with {len(labels)} classes",
            "generation": "inputs with free-text answers"}[task]
    fields = f" Text field '{data.fields['input']}', answer field '{data.fields['output']}'." \
        if data.fields.get("input") and data.fields.get("output") else ""
    samples = "; ".join(f'"{" ".join(ex.input.split())[:100]}"' for ex in examples[:SAMPLES])
    return {"source": str(path.resolve()), "title": _title(path), "task": task, "labels": labels,
            "rows": len(examples), "license": "unknown", "language": "unknown", "origin": "local",
            "description": f"Local dataset {path.relative_to(folder)} ({data.format}): {len(examples):,} {what}."
                           f"{fields} Sample inputs: {samples}."}


class LocalFolderSource:
    """Cards for the dataset files in `folder`, each loaded once per (size, mtime) and remembered."""

    name = "local"

    def __init__(self, folder: str | Path, load: Loader) -> None:
        self.folder = Path(folder).expanduser()
        self.load = load
        self._cache: dict[tuple[str, int, int, int, int], tuple[DatasetCard | None, str | None]] = {}

    def files(self) -> list[Path]:
        found = [*self.folder.glob("*"), *self.folder.glob("*/*")]
        return sorted(p for p in found if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                      and not p.name.endswith(CARD_SUFFIX) and not p.name.startswith("."))

    def listing(self, description: str) -> Listing:
        if not self.folder.is_dir():
            return Listing((), (f"local: {self.folder} does not exist; put datasets there (or pass --data-dir) "
                                "to have them searched",))
        cards, notes = [], []
        for path in self.files():
            card, note = self.card(path)
            if card is not None:
                cards.append(card)
            if note:
                notes.append(note)
        return Listing(tuple(cards), tuple(notes))

    def card(self, path: Path) -> tuple[DatasetCard | None, str | None]:
        """The file's card (sidecar over inferred), or None and why the file was skipped."""
        sidecar = path.with_name(path.stem + CARD_SUFFIX)
        stat = path.stat()
        side = sidecar.stat() if sidecar.is_file() else None
        key = (str(path), stat.st_size, stat.st_mtime_ns, side.st_size if side else -1, side.st_mtime_ns if side else -1)
        if key not in self._cache:
            self._cache[key] = self._build(path, sidecar if side else None, stat.st_size)
        return self._cache[key]

    def _build(self, path: Path, sidecar: Path | None, size: int) -> tuple[DatasetCard | None, str | None]:
        if size > MAX_FILE_BYTES:
            return None, f"local: skipped {path}: {size / 2**20:.0f} MB is over the {MAX_FILE_BYTES // 2**20} MB " \
                         "a card is inferred from; pass it with --data"
        try:
            overrides = read_sidecar(sidecar) if sidecar else {}
            inferred = _inferred(path, self.load(path), self.folder)
        except PioneerError as exc:
            return None, f"local: skipped {path}: {exc}"
        if "description" in overrides:  # the sidecar's paragraph is the one written for matching
            inferred["description"] = overrides["description"]
        notes = () if sidecar else ("card inferred from the file (no sidecar NAME.card.json)",)
        return DatasetCard.from_dict({**inferred, **overrides, "origin": "local", "notes": notes}), None
