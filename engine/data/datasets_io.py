"""Dataset files (JSONL) to `Example`s, and BIO <-> span conversion.

One row per line: `{"input": ..., "output": ...}` where output is a label (classification), a list
of `{"start", "end", "label"}` character spans or a list of BIO tags (NER; tags align with the
row's `tokens` field, else with the whitespace-split input), or text (generation). Decoders also
take OpenAI-style chat rows `{"messages": [{"role", "content"}, ...]}`. Every error names the file,
the line and the field, so a bad row can be fixed without guessing.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.errors import DatasetError
from engine.records import TASKS, Example, Span
from engine.tasks import task_type

CHAT_ROLES = ("system", "user", "assistant", "tool")
_WORD = re.compile(r"\S+")


# ---------------------------------------------------------------- BIO <-> spans


def whitespace_tokens(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Whitespace tokens of `text` with their character offsets."""
    found = [(m.group(), (m.start(), m.end())) for m in _WORD.finditer(text)]
    return [t for t, _ in found], [o for _, o in found]


def token_offsets(text: str, tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character offsets of `tokens` found in order in `text`; ValueError if one is missing."""
    offsets, pos = [], 0
    for i, token in enumerate(tokens):
        start = text.find(token, pos)
        if start < 0 or not token:
            raise ValueError(f"token #{i} {token!r} is not in the input after character {pos}")
        offsets.append((start, start + len(token)))
        pos = start + len(token)
    return offsets


def _split_tag(tag: str) -> tuple[str, str]:
    """('B'|'I'|'O', type) for a BIO tag; ValueError for anything else."""
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[0] in "BI" and tag[1] in "-_":
        return tag[0], tag[2:]
    raise ValueError(f"tag {tag!r} is not BIO: use 'O', 'B-<type>' or 'I-<type>'")


def bio_to_spans(offsets: Sequence[tuple[int, int]], tags: Sequence[str]) -> tuple[Span, ...]:
    """Spans from per-token BIO tags. An I- tag that does not continue an entity of its type starts
    one (the lenient IOB reading most taggers emit)."""
    if len(offsets) != len(tags):
        raise ValueError(f"{len(tags)} tags for {len(offsets)} tokens: give exactly one tag per token")
    spans: list[Span] = []
    current: tuple[str, int, int] | None = None
    for (start, end), tag in zip(offsets, tags, strict=True):
        prefix, label = _split_tag(tag)
        if prefix == "I" and current is not None and current[0] == label:
            current = (label, current[1], end)
            continue
        if current is not None:
            spans.append(Span(current[1], current[2], current[0]))
        current = (label, start, end) if prefix != "O" else None
    if current is not None:
        spans.append(Span(current[1], current[2], current[0]))
    return tuple(spans)


def spans_to_bio(offsets: Sequence[tuple[int, int]], spans: Iterable[Span]) -> list[str]:
    """Per-token BIO tags: a token overlapping a span is B- if it is the span's first token, else I-."""
    tags = ["O"] * len(offsets)
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        first = True
        for i, (start, end) in enumerate(offsets):
            if start < span.end and end > span.start and end > start:
                tags[i] = f"{'B' if first else 'I'}-{span.label}"
                first = False
    return tags


# ---------------------------------------------------------------- rows


def _fail(where: str, field: str, message: str) -> DatasetError:
    return DatasetError(f"{where}: field '{field}': {message}")


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise _fail(where, key, f"expected a string, got {type(value).__name__}")
    return value


def _spans(text: str, value: list, where: str) -> tuple[Span, ...]:
    spans = []
    for i, item in enumerate(value):
        field = f"output[{i}]"
        if not isinstance(item, dict) or not {"start", "end", "label"} <= item.keys():
            raise _fail(where, field, 'each span must be {"start": int, "end": int, "label": str}')
        start, end, label = item["start"], item["end"], item["label"]
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            raise _fail(where, field, f"start={start!r} end={end!r} must be ints with 0 <= start < end <= "
                                      f"{len(text)} (the input's length)")
        if not isinstance(label, str) or not label.strip():
            raise _fail(where, field, "label must be a non-empty string")
        spans.append(Span(start, end, label))
    spans.sort(key=lambda s: (s.start, s.end))
    for a, b in zip(spans, spans[1:], strict=False):
        if b.start < a.end:
            raise _fail(where, "output", f"spans [{a.start},{a.end}) and [{b.start},{b.end}) overlap: "
                                         "BIO tagging needs non-overlapping entities")
    return tuple(spans)


def _ner_output(row: dict, where: str) -> tuple[str, tuple[Span, ...]]:
    value = row.get("output")
    tokens = row.get("tokens")
    if tokens is not None and (not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)):
        raise _fail(where, "tokens", "expected a list of strings")
    text = " ".join(tokens) if "input" not in row and tokens is not None else _text(row, "input", where)
    if not isinstance(value, list):
        raise _fail(where, "output", "NER output must be a list of spans or of BIO tags")
    if not value or all(isinstance(v, dict) for v in value):
        return text, _spans(text, value, where)
    if not all(isinstance(v, str) for v in value):
        raise _fail(where, "output", "mixes spans and tags: use only spans or only BIO tags")
    try:
        offsets = token_offsets(text, tokens) if tokens is not None else whitespace_tokens(text)[1]
        return text, bio_to_spans(offsets, value)
    except ValueError as exc:
        field = "tokens" if "token #" in str(exc) else "output"
        raise _fail(where, field, str(exc)) from None


def _messages(row: dict, where: str) -> tuple[dict, ...]:
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise _fail(where, "messages", "expected a non-empty list of {role, content} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise _fail(where, f"messages[{i}].role", f"must be one of {', '.join(CHAT_ROLES)}")
        if not isinstance(message.get("content"), str):
            raise _fail(where, f"messages[{i}].content", "expected a string")
    if messages[-1]["role"] != "assistant":
        raise _fail(where, "messages", "the last message must be the assistant's answer to learn from")
    return tuple({"role": m["role"], "content": m["content"]} for m in messages)


def parse_row(row: Any, task: str, where: str) -> Example:
    """One JSON object to an Example for `task`; `where` ("file:line") prefixes every error."""
    if task not in TASKS:
        raise DatasetError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
    row_id = row.get("id")
    if row_id is not None and not isinstance(row_id, str | int):
        raise _fail(where, "id", "expected a string or integer")
    row_id = None if row_id is None else str(row_id)
    kind = task_type(task)
    if kind.generative and "messages" in row:
        messages = _messages(row, where)
        prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return Example(prompt, messages[-1]["content"], row_id, messages)
    if "messages" in row:
        raise _fail(where, "messages", f"chat rows are for generation, not {task}: use input/output")
    if "output" not in row:
        raise _fail(where, "output", "missing")
    if kind.spans:
        text, spans = _ner_output(row, where)
        return Example(text, spans, row_id)
    text = _text(row, "input", where)
    output = row["output"]
    if kind.single_label:
        if isinstance(output, bool) or not isinstance(output, str | int) or str(output).strip() == "":
            raise _fail(where, "output", "a classification label must be a non-empty string (or integer)")
        return Example(text, str(output), row_id)
    if not isinstance(output, str):
        raise _fail(where, "output", "generation output must be text")
    return Example(text, output, row_id)


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSONL file. DatasetError
    names the file (and line) of a missing file, non-UTF-8 bytes or invalid JSON; a BOM is accepted."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found; give the path of a JSONL file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a folder; give a JSONL file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 ({exc.reason} at byte {exc.start}); re-save it as UTF-8") \
            from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno}); write one JSON "
                               "object per line") from None


def read_examples(path: str | Path, task: str) -> list[Example]:
    """All rows of a JSONL file as Examples; DatasetError names file/line/field on the first bad row."""
    examples = [parse_row(row, task, f"{path}:{number}") for number, row in jsonl_rows(path)]
    if not examples:
        raise DatasetError(f"{path}: no rows: a dataset needs at least one JSON line")
    return examples


def example_to_row(example: Example) -> dict[str, Any]:
    """The JSONL form of an Example (what read_examples parses back)."""
    if example.messages is not None:
        row: dict[str, Any] = {"messages": [dict(m) for m in example.messages]}
    elif isinstance(example.output, tuple | list):
        row = {"input": example.input,
               "output": [{"start": s.start, "end": s.end, "label": s.label} for s in example.output]}
    else:
        row = {"input": example.input, "output": example.output}
    if example.id is not None:
        row["id"] = example.id
    return row


def train_eval_split(
    examples: Sequence[Example], fraction: float, seed: int, *, by_label: bool = False
) -> tuple[list[Example], list[Example]]:
    """A seeded held-out split. `by_label` (classification) stratifies, so every class with enough
    examples shows up on both sides in its share."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"eval fraction {fraction} must be in (0, 1)")
    rng = random.Random(seed)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        key = ex.output if by_label else None
        groups[key].append(i)
    held: set[int] = set()
    for key in sorted(groups, key=str):
        members = groups[key]
        rng.shuffle(members)
        n = min(round(len(members) * fraction), len(members) - 1)
        held.update(members[:n])
    if not held and len(examples) > 1:
        held.add(rng.randrange(len(examples)))
    train = [ex for i, ex in enumerate(examples) if i not in held]
    return train, [ex for i, ex in enumerate(examples) if i in held]
