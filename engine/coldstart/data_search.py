"""Finding the data from the description alone (issue 18), before a cold-start run opens.

When neither `--data` nor an earlier choice is set, the description's task type (engine.coldstart.analysis)
and the description itself go to the dataset catalog (engine.catalog); the reviewer chooses from the
ranked matches (headless `auto`: the best above the floor; `never`: none). The choice becomes the run's
`data_sources` (so a resumed run loads exactly it) and, once the run is open, a "Data search" curation
note and a `data` decision (so data-curation.md and a replay show which data and why).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.catalog import Catalog, CatalogSearch, Match, default_catalog
from engine.coldstart.analysis import classify_description
from engine.coldstart.registry import TEACHER_HINT, DataUnavailable, load_file
from engine.coldstart.setup import ColdStartConfig
from engine.errors import ConfigError
from engine.events import CurationNote, EventBus
from engine.search.reviewer import Reviewer, record_decision

SECTION = "Data search"


@dataclass(frozen=True)
class DataChoice:
    """The search and what the reviewer took from it (nothing: the teacher writes seed data)."""

    search: CatalogSearch
    chosen: tuple[Match, ...]
    who: str

    def sources(self) -> tuple[dict[str, Any], ...]:
        return tuple({"source": m.card.source, "options": dict(m.card.options), "title": m.card.title,
                      "similarity": round(m.similarity, 4)} for m in self.chosen)

    def reason(self) -> str:
        if not self.chosen:
            return f"no dataset chosen by {self.who}: the teacher writes seed examples"
        return "; ".join(f"{m.card.source} ({m.card.title}): {m.why}" for m in self.chosen)

    def markdown(self) -> str:
        if self.chosen:
            took = ", ".join(f"`{m.card.source}`" for m in self.chosen)
            verdict = f"- **chosen** by {self.who}: {took}" + (" (combined)" if len(self.chosen) > 1 else "")
        else:
            verdict = f"- **none chosen** by {self.who}: the teacher writes seed examples"
        return f"{self.search.markdown()}\n{verdict}"


def catalog_for(config: ColdStartConfig, workspace_datasets: Path) -> Catalog:
    """The run's catalog: `--data-dir` (default the workspace's datasets/), shared and packaged data, the Hub."""
    data_dir = Path(config.data_dir).expanduser() if config.data_dir else workspace_datasets
    return default_catalog(data_dir, load=load_file, hub=config.hub)


def find_data(config: ColdStartConfig, reviewer: Reviewer, catalog: Catalog) -> tuple[ColdStartConfig, DataChoice | None]:
    """The config with the chosen `data_sources`, and the choice (None when the config already names data).
    Raises DataUnavailable, listing the closest matches, when nothing is chosen and there is no teacher."""
    if config.data or config.data_sources:
        return config, None
    task = config.task or classify_description(config.description)[0]
    search = catalog.search(config.description, task=task)
    chosen = tuple(reviewer.choose_data(search))
    tasks = sorted({str(m.card.task) for m in chosen})
    if len(tasks) > 1:
        raise ConfigError(f"the chosen datasets are of different task types ({', '.join(tasks)}): combine only "
                          "datasets of one task type")
    if not chosen and not config.llm:
        raise DataUnavailable(refusal(search))
    choice = DataChoice(search, chosen, reviewer.who)
    return replace(config, data_sources=choice.sources()), choice


def refusal(search: CatalogSearch) -> str:
    """One line: nothing was taken, the closest matches with their similarity, and what to do."""
    closest = ", ".join(f"{m.card.source} ({m.similarity:.2f}{'' if m.accepted else ', not taken'})"
                        for m in search.matches[:3])
    found = f"the closest: {closest}" if closest else "the catalog lists nothing"
    return (f"no dataset chosen for {search.description!r} (floor {search.floor:.2f}; {found}); "
            f"name one with --data SOURCE, or {TEACHER_HINT}")


def record_choice(bus: EventBus, choice: DataChoice) -> None:
    """The search as data-curation.md's first section, and the choice as a `data` decision."""
    with bus.store.transaction():
        bus.emit(CurationNote(section=SECTION, markdown=choice.markdown(), search=choice.search.to_dict(),
                              chosen=list(choice.sources())))
        record_decision(bus, "data", "approve" if choice.chosen else "refuse", choice.who, reason=choice.reason(),
                        diff={"chosen": [s["source"] for s in choice.sources()]})
