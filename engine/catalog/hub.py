"""Datasets on the Hugging Face Hub, searched by the description's keywords when the Hub is reachable.

The Hub's search matches dataset ids, not meaning, so up to `max_queries` content words of the
description are searched and the catalog ranks what comes back by meaning, like any other card.
One GET per keyword through huggingface_hub's own session (its endpoint, headers and proxies), with a
deadline shared by all of them and no retries: `HfApi.list_datasets` retries with backoff for ~25 s
offline, too long for a step that must say "unreachable" and move on.
"""

from __future__ import annotations

import re
import time
from typing import Any

from engine.catalog.cards import DatasetCard, Listing

UNREACHABLE = "searched local and packaged sources only"
EXPAND = ["description", "tags", "downloads"]
# Hub task categories -> the project's task types.
TASK_CATEGORIES = {
    "text-classification": "classification", "zero-shot-classification": "classification",
    "token-classification": "ner", "text-generation": "generation", "text2text-generation": "generation",
    "question-answering": "generation", "summarization": "generation", "translation": "generation",
}
STOPWORDS = frozenset(
    "a an and are as at be between by can each for from how in into is it its like of on or out sent "
    "such that the their them these this those to up what when where which who whether with without "
    "classify classifying detect detecting flag flagging tag tagging sort sorting find write writing solve "
    "solving label labelling labeling predict recognise recognize extract identify route filter work do "
    "given user users model task data dataset text texts".split())


def keywords(description: str, n: int = 3) -> list[str]:
    """Up to n content words of the description, in order (plural 's' dropped: ids match substrings)."""
    words = []
    for word in re.findall(r"[a-z][a-z0-9-]{2,}", description.lower()):
        if word in STOPWORDS:
            continue
        word = word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word
        if word not in words:
            words.append(word)
    return words[:n]


def card_of(item: Any) -> DatasetCard:
    """A card from a Hub dataset's info (huggingface_hub DatasetInfo)."""
    tags = list(getattr(item, "tags", None) or [])
    tag = lambda prefix: [t.split(":", 1)[1] for t in tags if t.startswith(prefix + ":")]  # noqa: E731
    tasks = [TASK_CATEGORIES[c] for c in tag("task_categories") if c in TASK_CATEGORIES]
    text = " ".join((getattr(item, "description", None) or "").split())[:600]
    size = tag("size_categories")
    return DatasetCard(
        source=f"hf:{item.id}", title=item.id, task=tasks[0] if tasks else None, origin="hub",
        description=text or f"Hugging Face dataset {item.id}; tags: {', '.join(tags[:12])}.",
        license=", ".join(tag("license")) or "unknown", language=", ".join(tag("language")[:3]) or "unknown",
        notes=(*([f"size category {size[0]}"] if size else []), f"{getattr(item, 'downloads', 0) or 0:,} downloads",
               "loads when the repo has JSONL/JSON/CSV/TSV files"))


class HubSource:
    """Search the Hub (`endpoint`, default huggingface_hub's: $HF_ENDPOINT or huggingface.co)."""

    name = "hub"

    def __init__(self, endpoint: str | None = None, *, timeout: float = 4.0, limit: int = 10,
                 max_queries: int = 3) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.limit = limit
        self.max_queries = max_queries

    def listing(self, description: str) -> Listing:
        from huggingface_hub import constants
        from huggingface_hub.hf_api import DatasetInfo
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        if constants.is_offline_mode():
            return Listing((), (f"Hub offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set): {UNREACHABLE}",))

        endpoint = (self.endpoint or constants.ENDPOINT).rstrip("/")
        deadline = time.monotonic() + self.timeout
        found: dict[str, DatasetCard] = {}
        for word in keywords(description, self.max_queries):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                response = get_session().get(f"{endpoint}/api/datasets", headers=build_hf_headers(), timeout=left,
                                             params={"search": word, "limit": self.limit, "expand": EXPAND})
                hf_raise_for_status(response)
                rows = response.json()
            except Exception as exc:  # noqa: BLE001 - network, HTTP status, bad JSON: all mean "unreachable"
                return Listing((), (f"Hub unreachable ({endpoint}: {type(exc).__name__}): {UNREACHABLE}",))
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, dict) and row.get("id"):
                    card = card_of(DatasetInfo(**row))
                    found.setdefault(card.source, card)
        return Listing(tuple(found.values()))
