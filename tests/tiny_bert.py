"""A tiny BERT (hidden 32, 2 layers) and WordPiece vocabulary written to a folder: a real
transformers checkpoint for tests, built from a config with no download."""

from __future__ import annotations

from pathlib import Path

from engine.records import Example, Span

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "the", "a", "is", "in", "to", "what", "weather", "rain", "sunny", "cold", "forecast", "play", "song",
    "music", "album", "track", "score", "game", "team", "match", "won", "lost", "alice", "bob", "carol",
    "lives", "works", "visited", "paris", "london", "berlin", "today", "tomorrow", "please", "my", "and",
    "went", "met", "##s", "##ing", ".", ",",
]
PEOPLE = ["alice", "bob", "carol"]
PLACES = ["paris", "london", "berlin"]


def build_tiny_bert(folder: Path, seed: int = 0, hidden_size: int = 32) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + WORDS) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(vocab), do_lower_case=True)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(SPECIALS) + len(WORDS), hidden_size=hidden_size, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=64)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(folder))
    return folder


def topic_examples(n_per_label: int = 12) -> list[Example]:
    """Three separable topics (weather / music / sports) in short varied sentences."""
    words = {
        "weather": ["weather", "rain", "sunny", "cold", "forecast"],
        "music": ["play", "song", "music", "album", "track"],
        "sports": ["score", "game", "team", "match", "won"],
    }
    fillers = ["the", "a", "today", "tomorrow", "please", "my"]
    rows = []
    for label, vocab in words.items():
        for i in range(n_per_label):
            text = " ".join([fillers[i % 6], vocab[i % 5], vocab[(i + 2) % 5], fillers[(i + 3) % 6]][: 2 + i % 3])
            rows.append(Example(text, label, id=f"{label}-{i}"))
    return rows


def ner_examples(n: int = 18) -> list[Example]:
    """'<person> lives in <place> today' style sentences with person / location spans."""
    verbs = ["lives in", "works in", "visited", "went to"]
    rows = []
    for i in range(n):
        person, place, verb = PEOPLE[i % 3], PLACES[(i // 3) % 3], verbs[i % 4]
        text = f"{person} {verb} {place}" + (" today" if i % 2 else "")
        p_start = text.index(place, len(person))
        rows.append(Example(text, (Span(0, len(person), "person"), Span(p_start, p_start + len(place), "location")),
                            id=f"ner-{i}"))
    return rows
