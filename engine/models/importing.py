"""Bringing in a model trained elsewhere (`pioneer-tui models add`): a transformers folder or a PEFT adapter
that serves traffic today becomes an artifact this project loads like its own.

The folder is copied into the workspace (a later change to the original cannot change the registered
model), a `pioneer.json` manifest is written from its config (labels from `id2label`), and the copy is
loaded and run once before anything is registered: an unsupported architecture, generic labels
(LABEL_0..) or a tokenizer that cannot serve the task fail here, in one line, not in the middle of a run.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.data.datasets_io import example_to_row
from engine.errors import ConfigError
from engine.models.base import MANIFEST, NEGATIVE_LABELS, write_manifest
from engine.models.resolve import resolve_model
from engine.records import Example
from engine.tasks import task_type
from store import Store
from store.artifacts import atomic_write_dir
from store.jsoncols import new_id

FORMAT_VERSION = 1
ADAPTER_CONFIG = "adapter_config.json"
ENCODER_MAX_LENGTH = 128  # what the project's own encoders train and serve with
_GENERIC_LABEL = re.compile(r"LABEL_\d+")
_HEADS = {"classification": "ForSequenceClassification", "ner": "ForTokenClassification",
          "generation": "ForCausalLM"}
_PEFT_TASKS = {"classification": "SEQ_CLS", "ner": "TOKEN_CLS", "generation": "CAUSAL_LM"}


@dataclass(frozen=True)
class ImportedModel:
    """What `inspect_model` read: enough to write the manifest and to check data against the labels."""

    source: Path
    task: str
    method: str  # full | lora
    base_model: str  # the adapter's base, or the folder itself for full weights
    base_model_path: Path
    classes: tuple[str, ...]  # the head's outputs in order (BIO tags for NER); () for a decoder
    labels: tuple[str, ...]  # the answers (entity types for NER)
    max_length: int = ENCODER_MAX_LENGTH

    def manifest(self, backend: str, extra: dict[str, Any]) -> dict[str, Any]:
        fallback = next((c for c in self.labels if c.lower() in NEGATIVE_LABELS), None)
        common = {"format": FORMAT_VERSION, "backend": backend, "task": self.task, "method": self.method,
                  "base_model": self.base_model, "base_model_path": str(self.base_model_path),
                  "imported_from": str(self.source), "config": {"task": self.task, "method": self.method,
                                                                 "base_model": self.base_model}}
        if backend == "encoder":
            common.update(labels=list(self.labels), classes=list(self.classes), fallback_label=fallback,
                          max_length=self.max_length, pooling=None)
        return {**common, **extra}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); is the model folder complete?") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return raw


def inspect_model(source: str, task: str, labels: Sequence[str] = ()) -> ImportedModel:
    """Read a model folder (or a cached Hub id) for `task`; `labels` name an adapter's classes in order
    when its folder carries no config with them."""
    kind = task_type(task)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        folder = resolve_model(source)
    folder = folder.resolve()
    if (folder / ADAPTER_CONFIG).is_file():
        adapter = _read_json(folder / ADAPTER_CONFIG)
        if adapter.get("peft_type") != "LORA":
            raise ConfigError(f"{folder / ADAPTER_CONFIG}: field peft_type: {adapter.get('peft_type')!r}; only LoRA "
                              "adapters can be added")
        if adapter.get("task_type") not in (None, _PEFT_TASKS[task]):
            raise ConfigError(f"{folder / ADAPTER_CONFIG}: field task_type: {adapter['task_type']!r} is not a "
                              f"{task} adapter ({_PEFT_TASKS[task]}); pass the matching --task")
        base = str(adapter.get("base_model_name_or_path") or "")
        if not base:
            raise ConfigError(f"{folder / ADAPTER_CONFIG}: field base_model_name_or_path is empty: the adapter does "
                              "not say which model it adapts")
        base_path = resolve_model(base)
        config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
        config.setdefault("num_labels", _head_size(folder))
        positions = _read_json(base_path / "config.json").get("max_position_embeddings")
        method = "lora"
    else:
        if not (folder / "config.json").is_file():
            raise ConfigError(f"{folder}: no config.json or {ADAPTER_CONFIG}: point at a transformers model folder "
                              "or a PEFT adapter")
        config = _read_json(folder / "config.json")
        architectures = config.get("architectures") or []
        if not any(str(a).endswith(_HEADS[task]) for a in architectures):
            raise ConfigError(f"{folder / 'config.json'}: field architectures: {architectures or 'unset'} has no "
                              f"*{_HEADS[task]} head, which a {task} model needs (is --task right?)")
        base, base_path, method = str(folder), folder, "full"
        positions = config.get("max_position_embeddings")
    if kind.backend == "decoder":
        return ImportedModel(folder, task, method, base, base_path, (), ())
    classes = _classes(config, labels, folder)
    if kind.spans:
        bad = [c for c in classes if c != "O" and not re.fullmatch(r"[BI]-.+", c)]
        if bad:
            raise ConfigError(f"{folder}: NER labels must be BIO tags (O, B-TYPE, I-TYPE); found {bad[0]!r}")
        answers = tuple(dict.fromkeys(c[2:] for c in classes if c != "O"))
    else:
        answers = classes
    max_length = min(ENCODER_MAX_LENGTH, int(positions)) if isinstance(positions, int) else ENCODER_MAX_LENGTH
    return ImportedModel(folder, task, method, base, base_path, classes, answers, max_length)


def _head_size(folder: Path) -> int | None:
    """How many classes an adapter's saved head has (its classifier / score weight rows), if it saved one."""
    from safetensors import safe_open

    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), "pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            if key.endswith(("classifier.weight", "score.weight")):
                return int(f.get_slice(key).get_shape()[0])
    return None


def _classes(config: dict[str, Any], labels: Sequence[str], folder: Path) -> tuple[str, ...]:
    if labels:
        n = config.get("num_labels") or len(config.get("id2label") or {}) or len(labels)
        if n != len(labels):
            raise ConfigError(f"--labels names {len(labels)} classes but {folder} has {n}")
        return tuple(labels)
    id2label = config.get("id2label") or {}
    classes = tuple(str(id2label[k]) for k in sorted(id2label, key=int)) if id2label else ()
    if not classes or all(_GENERIC_LABEL.fullmatch(c) for c in classes):
        found = f"generic ({', '.join(classes[:3])} ...)" if classes else "not in its config"
        raise ConfigError(f"{folder}: the labels are {found}; set id2label in its config.json or pass "
                          "--labels a,b,c in the head's order")
    return classes


def copy_model(model: ImportedModel, target: Path) -> None:
    """The model's files and the manifest in `target` (a fresh temp folder of atomic_write_dir)."""
    for path in model.source.iterdir():
        if path.name == MANIFEST or path.name.startswith("."):
            continue
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, target / path.name)
    tokenizer_from = model.source if any(model.source.glob("tokenizer*")) else model.base_model_path
    if tokenizer_from != model.source:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(str(target))
    if task_type(model.task).backend == "decoder":
        from transformers import AutoTokenizer, GenerationConfig

        from engine.models.decoder import stop_token_ids

        tokenizer = AutoTokenizer.from_pretrained(str(target))
        try:
            generation = GenerationConfig.from_pretrained(str(model.base_model_path))
        except OSError:
            generation = None
        extra = {"weights": "full" if model.method == "full" else "peft", "system_prompt": None,
                 "stop_token_ids": stop_token_ids(tokenizer, generation),
                 "load": "as trained elsewhere; imported by `pioneer-tui models add`"}
        write_manifest(target, model.manifest("decoder", extra))
    else:
        write_manifest(target, model.manifest("encoder", {"load": "as trained elsewhere; imported by "
                                                                  "`pioneer-tui models add`"}))


def add_model(store: Store, source: str, task: str, *, name: str | None = None, labels: Sequence[str] = (),
              data: Sequence[Example] = (), data_note: str = "") -> tuple[str, dict[str, Any]]:
    """Copy, check and register `source` as the deployed model for `task` (a model deployed before is
    retired, as a promotion would); `data` (what it was trained on) becomes its dataset version, D_parent for
    production mode, and is scored once as a sanity check. Returns the model id and its metrics on `data`."""
    model = inspect_model(source, task, labels)
    kind = task_type(task)
    if data and not kind.generative:
        seen = {lab for ex in data for lab in kind.labels(ex.output)}
        unknown = sorted(seen - set(model.labels))
        if unknown:
            raise ConfigError(f"the data's labels {', '.join(unknown[:5])} are not among the model's "
                              f"({', '.join(model.labels[:8])}{' ...' if len(model.labels) > 8 else ''}): is it the "
                              "data this model was trained on?")
    if name and (taken := store.models.get(name)) is not None:
        raise ConfigError(f"--name {name} is taken by model {taken['id']} ({taken['status']}): choose another name")
    if name and kind.single_label:
        _check_traces(store, name, model)
    model_id = new_id("m")
    target = store.artifacts / "models" / model_id
    metrics: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        from engine.models.factory import evaluate
        from engine.models.predictor import load_predictor

        copy_model(model, tmp)
        try:
            predictor = load_predictor(tmp)
            predictor.predict([ex.input for ex in data[:2]] or ["hello"])
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever transformers / peft raise means "cannot serve it"
            raise ConfigError(f"{model.source}: cannot be loaded and run as a {task} model "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None
        if data:
            metrics.update(evaluate(predictor, list(data), task))

    atomic_write_dir(target, build)
    with store.transaction():
        version = store.datasets.create([example_to_row(ex) for ex in data], name=f"{name or model_id} training data",
                                        task=task, note=data_note or f"D_parent of {source}") if data else None
        current = store.models.deployed()
        if current is not None:  # one deployed model at a time, as a promotion leaves it
            store.models.set_status(current["id"], "retired")
        store.models.register(base_model=model.base_model, artifact_path=target, task=task, method=model.method,
                              dataset_version_id=version, metrics={**metrics, "imported_from": str(model.source)},
                              status="deployed", name=name, model_id=model_id)
    return model_id, metrics


def _check_traces(store: Store, name: str, model: ImportedModel) -> None:
    """Traces already ingested under `name` must be answers this model can give."""
    rows = store.conn.execute("SELECT DISTINCT prediction FROM traces WHERE model_id = ? LIMIT 1000", (name,))
    unknown = sorted(p for (p,) in rows if p is not None and p not in model.labels)
    if unknown:
        raise ConfigError(f"the traces of {name} predict {', '.join(unknown[:5])}, which this model cannot output "
                          f"(its labels: {', '.join(model.labels[:8])}): is --name the model that served them?")
