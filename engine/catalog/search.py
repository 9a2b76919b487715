"""Matching a task description to dataset cards by meaning, with the task type and labels checked.

Similarity is the cosine between the embedded description and each card's text (title, paragraph,
labels) under the embedded MiniLM encoder. A card is *accepted* only when its similarity reaches the
floor, its task type is the one the description asks for, and it does not lack the labels the
description lists; labels the description names add a small bonus to the rank, never to acceptance.
The floor was calibrated on scripts/bench_catalog.py (see FLOOR).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.catalog.cards import CatalogSource, DatasetCard
from engine.catalog.hub import STOPWORDS, HubSource
from engine.catalog.local import Loader, LocalFolderSource
from engine.catalog.packaged import PackagedSource, SharedDataSource
from engine.diagnosis.embedders import Embedder

# Calibrated on scripts/bench_catalog.py with MiniLM: the right top matches of its 10 descriptions scored
# 0.37-0.69, the most similar same-task card of its 5 no-match descriptions 0.15-0.22; 0.30 is the middle of
# that gap. In-sample (those are the only labelled descriptions there are), so expect a few misses near it.
FLOOR = 0.30
LABEL_BONUS = 0.05        # per label the description names that the card has (at most two count)
SMALL_LABEL_SET = 20      # a card label written in the description counts only in a set this small
                          # (CLINC's 151 intents include 'text', 'time', 'yes': those words name nothing)

_LIST = re.compile(r"\b([\w-]+(?:\s*,\s*[\w-]+)+,?\s+(?:and|or)\s+[\w-]+)")
_PAIR = re.compile(r"\b(?:as|into|is|either|between)\s+(?:either\s+)?([\w-]+)\s+(?:or|and)\s+([\w-]+)", re.I)
_WORD = re.compile(r"[a-z][a-z0-9]+")


def _norm(label: str) -> str:
    return " ".join(label.lower().replace("_", " ").replace("-", " ").split())


def _same_label(a: str, b: str) -> bool:
    """'sport' ~ 'sports', 'tech' ~ 'technology': equal, a plural, or one a prefix (4+ letters) of the other."""
    a, b = _norm(a), _norm(b)
    if a == b or a.rstrip("s") == b.rstrip("s"):
        return True
    short, long_ = sorted((a, b), key=len)
    return len(short) >= 4 and long_.startswith(short)


def listed_labels(description: str) -> tuple[str, ...]:
    """Labels the description lists: 'the sport, business or politics desk' (three or more, commas), or
    'as positive or negative' / 'into spam and ham' (a pair after as / into / is / either / between)."""
    found: list[str] = []
    for m in _LIST.finditer(description):
        found += [w for w in re.split(r"\s*,\s*|\s+(?:and|or)\s+", m.group(1)) if w]
    for m in _PAIR.finditer(description):
        found += [m.group(1), m.group(2)]
    return tuple(dict.fromkeys(w.lower() for w in found if w.lower() not in STOPWORDS))


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word


def content_words(text: str) -> list[str]:
    return list(dict.fromkeys(_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS))


@dataclass(frozen=True)
class Match:
    """One card against the description: its similarity, whether it fits, and why."""

    card: DatasetCard
    similarity: float
    score: float
    task_fits: bool | None
    labels_named: tuple[str, ...]
    labels_missing: tuple[str, ...]
    shared_words: tuple[str, ...]
    labels_conflict: bool
    accepted: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.card.source, "title": self.card.title, "origin": self.card.origin,
                "task": self.card.task, "similarity": round(self.similarity, 4), "score": round(self.score, 4),
                "accepted": self.accepted, "why": self.why, "labels_named": list(self.labels_named),
                "labels_missing": list(self.labels_missing), "card": self.card.to_dict()}


@dataclass(frozen=True)
class CatalogSearch:
    """The ranked matches for one description (accepted first, then by score) and each source's notes."""

    description: str
    task: str | None
    floor: float
    matches: tuple[Match, ...]
    notes: tuple[str, ...] = ()
    searched: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> tuple[Match, ...]:
        return tuple(m for m in self.matches if m.accepted)

    @property
    def best(self) -> Match | None:
        """The match `--approve auto` takes: the highest-ranked accepted one, if any."""
        return self.accepted[0] if self.accepted else None

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "task": self.task, "floor": self.floor, "searched": self.searched,
                "notes": list(self.notes), "matches": [m.to_dict() for m in self.matches]}

    def markdown(self, top: int = 5) -> str:
        """The search as data-curation.md records it: what was searched, the top matches and why."""
        where = ", ".join(f"{name} {n}" for name, n in self.searched.items())
        lines = [f"- searched {sum(self.searched.values())} dataset cards ({where}) for {self.description!r}"
                 + (f" ({self.task})" if self.task else "") + f"; similarity floor {self.floor:.2f}"]
        lines += [f"- {note}" for note in self.notes]
        for m in self.matches[:top]:
            mark = "match" if m.accepted else "not taken"
            lines.append(f"- {mark}: `{m.card.source}` ({m.card.title}; {m.card.task or 'task unknown'}, "
                         f"{m.card.size}, {m.card.license}) — {m.why}")
        if not self.accepted:
            lines.append(f"- no dataset reaches the floor {self.floor:.2f} with the right task type")
        return "\n".join(lines)


class Catalog:
    """Cards from every source, matched to a description by meaning."""

    def __init__(self, sources: Sequence[CatalogSource], embedder: Embedder | None = None,
                 floor: float = FLOOR) -> None:
        self.sources = list(sources)
        self._embedder = embedder
        self.floor = floor

    @property
    def embedder(self) -> Embedder:
        """The process-wide MiniLM (shared with cold-start and diagnosis), loaded on first use."""
        if self._embedder is None:
            from engine.diagnosis.embedders import make_embedder

            self._embedder = make_embedder("minilm", (), seed=0)
        return self._embedder

    def cards(self, description: str) -> tuple[list[DatasetCard], list[str], dict[str, int]]:
        cards: dict[str, DatasetCard] = {}
        notes: list[str] = []
        searched: dict[str, int] = {}
        for source in self.sources:
            listing = source.listing(description)
            searched[source.name] = len(listing.cards)
            notes += listing.notes
            for card in listing.cards:
                cards.setdefault(card.source, card)  # the first source to list a path keeps it
        return list(cards.values()), notes, searched

    def search(self, description: str, *, task: str | None = None, labels: Sequence[str] = (),
               top: int | None = 10) -> CatalogSearch:
        """Rank every card for `description`; `task` is the task type the description asks for (cold-start's
        analysis), `labels` any label set the caller already knows (merged with those the text lists)."""
        description = " ".join(description.split())
        cards, notes, searched = self.cards(description)
        if not cards:
            return CatalogSearch(description, task, self.floor, (), tuple(notes), searched)
        vectors = self.embedder.embed([description, *(c.text() for c in cards)])
        sims = vectors[1:] @ vectors[0]
        named = tuple(dict.fromkeys([*(x.lower() for x in labels), *listed_labels(description)]))
        words = content_words(description)
        matches = [self._match(card, float(sim), task, named, description, words)
                   for card, sim in zip(cards, sims, strict=True)]
        matches.sort(key=lambda m: (m.task_fits is not False and not m.labels_conflict, m.score), reverse=True)
        return CatalogSearch(description, task, self.floor, tuple(matches[:top] if top else matches),
                             tuple(notes), searched)

    def _match(self, card: DatasetCard, sim: float, task: str | None, named: Sequence[str], description: str,
               words: Sequence[str]) -> Match:
        fits = None if task is None or card.task is None else card.task == task
        found = [lab for lab in named if any(_same_label(lab, c) for c in card.labels)]
        missing = [lab for lab in named if lab not in found] if card.labels else []
        conflict = len(named) >= 2 and 2 * len(missing) > len(named)
        if len(card.labels) <= SMALL_LABEL_SET:  # a label written in the description, listed or not
            text = f" {_norm(description)} "
            found += [c for c in card.labels if f" {_norm(c)} " in text and not any(_same_label(c, f) for f in found)]
        card_words = set(content_words(card.text(max_labels=SMALL_LABEL_SET)))
        shared = tuple(w for w in words if w in card_words)
        score = sim + LABEL_BONUS * min(len(found), 2)
        accepted = sim >= self.floor and (fits is True or (fits is None and task is None)) and not conflict
        parts = [f"similarity {sim:.2f} {'≥' if sim >= self.floor else '<'} floor {self.floor:.2f}"]
        if fits is True:
            parts.append(f"task {task} fits")
        elif fits is False:
            parts.append(f"task {card.task}, but the description asks for {task}")
        elif card.task is None:
            parts.append("the card does not say its task type")
        if found:
            parts.append(f"labels named: {', '.join(found)}")
        if conflict:
            parts.append(f"the description lists {', '.join(missing)}, which the card does not have")
        parts.append(f"shared words: {', '.join(shared)}" if shared else "meaning only (no shared words)")
        return Match(card, sim, score, fits, tuple(found), tuple(missing), shared, conflict, accepted, "; ".join(parts))


def default_catalog(data_dir: str | Path | None, *, load: Loader, shared_root: str | Path | None = None,
                    hub: bool = True, hub_endpoint: str | None = None, hub_timeout: float = 4.0,
                    embedder: Embedder | None = None, floor: float = FLOOR) -> Catalog:
    """Local folder first (a person's own data wins a tie of paths), then shared data, packages, the Hub.
    `load` is cold-start's file loader (engine.coldstart.registry.load_file)."""
    sources: list[CatalogSource] = []
    if data_dir is not None:
        sources.append(LocalFolderSource(data_dir, load))
    sources += [SharedDataSource(shared_root), PackagedSource()]
    if hub:
        sources.append(HubSource(hub_endpoint, timeout=hub_timeout))
    return Catalog(sources, embedder, floor)
