"""Shipping a registered model (`pioneer-tui export`): a folder that plain transformers / peft (or
sentence-transformers, for a mean-pooled linear probe) load without this project, with its labels and a
model card filled from the registry.

Formats:
- `hf` (default): standard weights. A LoRA adapter is merged into its base; a token-level linear probe
  becomes a standard token classifier (the same linear head over the same hidden states); a mean-pooled
  classification probe has no transformers class, so it is written as a sentence-transformers model
  (Transformer -> mean Pooling -> Dense to the labels' logits).
- `peft`: a LoRA adapter as trained, its base named by its Hugging Face id and the head's labels in the
  card's loading code. Full fine-tunes and probes have no adapter.
- `gguf`: a Llama-architecture decoder (the embedded SmolLM2, full or LoRA) as one `.gguf` file for
  llama.cpp, converted from the `hf` folder by engine.models.gguf_export (f16 by default, or f32 / q8_0).
  Any other model is refused with a one-line ConfigError naming `--format hf`.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.escape import code
from engine.models.base import MANIFEST
from engine.models.gguf_export import ARCHITECTURE, GGUF_TYPES, check_convertible, convert, file_name
from engine.models.resolve import hub_id
from engine.tasks import task_type
from store import Store
from store.artifacts import atomic_write_dir

FORMATS = ("hf", "peft", "gguf")
CARD = "README.md"


@dataclass(frozen=True)
class Exported:
    folder: Path
    format: str
    loader: str  # the Python that loads it, as written in the card
    file: Path | None = None  # the .gguf file, for --format gguf

    def to_dict(self) -> dict[str, Any]:
        found = {"folder": str(self.folder), "format": self.format, "loader": self.loader}
        return {**found, "file": str(self.file)} if self.file else found


def export_model(store: Store, model: str, target: Path, fmt: str = "hf", gguf_type: str | None = None) -> Exported:
    """Write `model` (an id or name) into `target`, which must not exist or be empty. `gguf_type` (f16 when
    not given) is for `fmt` gguf only."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if gguf_type is not None and fmt != "gguf":
        raise ConfigError("--gguf-type is for --format gguf")
    gguf_type = gguf_type or GGUF_TYPES[0]
    if gguf_type not in GGUF_TYPES:
        raise ConfigError(f"--gguf-type {gguf_type!r} is not one of {', '.join(GGUF_TYPES)}")
    row = store.models.get(model)
    if row is None:
        raise ConfigError(f"model {model!r} is not in the registry (see `pioneer-tui models`)")
    if not row["artifact_path"] or not Path(row["artifact_path"]).is_dir():
        raise ConfigError(f"model {row['id']} has no artifact (status {row['status']}): nothing to export")
    target = Path(target).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"--to {target}: exists and is not empty; choose a new folder")
    from engine.models.predictor import read_manifest

    source = Path(row["artifact_path"])
    manifest = read_manifest(source)
    method = manifest["method"]
    if fmt == "peft" and method not in ("lora", "qlora"):
        raise ConfigError(f"model {row['id']} is a {method} model, not an adapter: export it with --format hf")
    gguf_file = None
    if fmt == "gguf":
        _check_gguf(row, source, manifest)
        gguf_file = file_name(row["name"], gguf_type)
    box: dict[str, str] = {}

    def build(tmp: Path) -> None:
        if fmt == "peft":
            box["loader"] = _adapter(source, tmp, manifest)
        elif fmt == "gguf":
            box["loader"] = _gguf(source, tmp / gguf_file, manifest, row["name"], gguf_type)
        else:
            box["loader"] = _hf(source, tmp, manifest)
        card = model_card(store, row, manifest, fmt, box["loader"], gguf_file=gguf_file)
        (tmp / CARD).write_text(card, encoding="utf-8")

    atomic_write_dir(target, build)
    return Exported(target, fmt, box["loader"], target / gguf_file if gguf_file else None)


def _hf(source: Path, target: Path, manifest: dict[str, Any]) -> str:
    """The `hf` folder: full weights copied, an adapter merged, a probe as a standard model."""
    if manifest["method"] == "full":
        _copy(source, target)
        return _full_loader(manifest)
    if manifest["backend"] == "decoder" or manifest["method"] in ("lora", "qlora"):
        return _merged(source, target, manifest)
    return _probe(source, target, manifest)


def _check_gguf(row: dict[str, Any], source: Path, manifest: dict[str, Any]) -> None:
    """Refuse before writing anything what the GGUF converter does not handle."""
    if manifest["backend"] != "decoder":
        raise ConfigError(f"--format gguf is for llama-architecture decoders ({ARCHITECTURE}); model {row['id']} "
                          f"is a {manifest['task']} model ({manifest['backend']} backend): use --format hf")
    folder = source if manifest["method"] == "full" else _base_path(manifest)
    check_convertible(json.loads((folder / "config.json").read_text(encoding="utf-8")))


def _gguf(source: Path, out: Path, manifest: dict[str, Any], name: str, gguf_type: str) -> str:
    """The `hf` folder (in a scratch dir), converted to the one GGUF file `out`."""
    with tempfile.TemporaryDirectory(prefix="pioneer-gguf-") as scratch:
        _hf(source, Path(scratch), manifest)
        convert(Path(scratch), out, name, gguf_type)
    return ("from transformers import AutoModelForCausalLM, AutoTokenizer  # and `pip install gguf`\n"
            f"model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file={out.name!r})\n"
            f"tokenizer = AutoTokenizer.from_pretrained(FOLDER, gguf_file={out.name!r})"
            "  # prompt with tokenizer.apply_chat_template")


def _copy(source: Path, target: Path) -> None:
    for path in source.iterdir():
        if path.name not in (MANIFEST, CARD):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, target / path.name)


def _auto_class(manifest: dict[str, Any]) -> str:
    if manifest["backend"] == "decoder":
        return "AutoModelForCausalLM"
    return "AutoModelForTokenClassification" if task_type(manifest["task"]).spans else "AutoModelForSequenceClassification"


def _full_loader(manifest: dict[str, Any]) -> str:
    cls = _auto_class(manifest)
    if manifest["backend"] == "decoder":
        return (f"from transformers import {cls}, AutoTokenizer\nmodel = {cls}.from_pretrained(FOLDER)\n"
                "tokenizer = AutoTokenizer.from_pretrained(FOLDER)  # prompt with tokenizer.apply_chat_template")
    kind = "token-classification" if task_type(manifest["task"]).spans else "text-classification"
    return f"from transformers import pipeline\nclassify = pipeline(\"{kind}\", model=FOLDER)"


def _label_kwargs(manifest: dict[str, Any]) -> dict[str, Any]:
    classes = list(manifest.get("classes") or [])
    return {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
            "label2id": {c: i for i, c in enumerate(classes)}} if classes else {}


def _merged(source: Path, target: Path, manifest: dict[str, Any]) -> str:
    """LoRA merged into a full-precision base: standard weights (a 4-bit base is dequantised first)."""
    import torch
    import transformers
    from peft import PeftModel
    from transformers import AutoTokenizer

    cls = getattr(transformers, _auto_class(manifest))
    base = _base_path(manifest)
    model = cls.from_pretrained(str(base), dtype=torch.float32, **_label_kwargs(manifest))
    merged = PeftModel.from_pretrained(model, str(source)).merge_and_unload()
    merged.save_pretrained(str(target), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(target))
    return _full_loader(manifest)


def _base_path(manifest: dict[str, Any]) -> Path:
    from engine.models.resolve import resolve_model

    base = Path(manifest["base_model_path"])
    return base if (base / "config.json").is_file() else resolve_model(manifest["base_model"])


def _adapter(source: Path, target: Path, manifest: dict[str, Any]) -> str:
    """The adapter as trained, naming its base by Hub id (a local path would not exist elsewhere)."""
    _copy(source, target)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    base = hub_id(manifest["base_model"])
    config["base_model_name_or_path"] = base
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    cls = _auto_class(manifest)
    labels = _label_kwargs(manifest)
    head = f", num_labels={labels['num_labels']}, id2label={labels['id2label']!r}" if labels else ""
    return (f"from peft import PeftModel\nfrom transformers import {cls}, AutoTokenizer\n"
            f"base = {cls}.from_pretrained({base!r}{head})\nmodel = PeftModel.from_pretrained(base, FOLDER)\n"
            "tokenizer = AutoTokenizer.from_pretrained(FOLDER)")


def _probe(source: Path, target: Path, manifest: dict[str, Any]) -> str:
    """A frozen encoder plus the probe's linear head, as a standard model of the same outputs."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer

    from engine.models.encoder import PROBE_HEAD

    head = load_file(str(source / PROBE_HEAD))
    base = _base_path(manifest)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if task_type(manifest["task"]).spans:
        model = AutoModelForTokenClassification.from_pretrained(str(base), dtype=torch.float32,
                                                                **_label_kwargs(manifest))
        with torch.no_grad():
            model.classifier.weight.copy_(head["weight"])
            model.classifier.bias.copy_(head["bias"])
        model.save_pretrained(str(target), safe_serialization=True)
        tokenizer.save_pretrained(str(target))
        return _full_loader(manifest)
    from sentence_transformers import SentenceTransformer, models

    encoder = models.Transformer(str(base), max_seq_length=int(manifest.get("max_length") or 128))
    dim = AutoModel.from_pretrained(str(base)).config.hidden_size
    dense = models.Dense(dim, len(manifest["classes"]), bias=True, activation_function=torch.nn.Identity())
    with torch.no_grad():
        dense.linear.weight.copy_(head["weight"])
        dense.linear.bias.copy_(head["bias"])
    SentenceTransformer(modules=[encoder, models.Pooling(dim, pooling_mode="mean"), dense]).save(str(target))
    (target / "labels.json").write_text(json.dumps(list(manifest["classes"])), encoding="utf-8")
    return ("import json\nfrom sentence_transformers import SentenceTransformer\n"
            "model = SentenceTransformer(FOLDER)\nlabels = json.load(open(f\"{FOLDER}/labels.json\"))\n"
            "logits = model.encode([\"some text\"])  # one row of logits per text, in labels' order\n"
            "predicted = [labels[row.argmax()] for row in logits]")


def _versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    found = {}
    for package in ("torch", "transformers", "peft", "sentence-transformers", *extra, "pioneer-tui"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def model_card(store: Store, row: dict[str, Any], manifest: dict[str, Any], fmt: str, loader: str,
               gguf_file: str | None = None) -> str:
    """The card: what the model is, what it was trained on (version and hash), its metrics and the gates
    it passed, how to load it (and run it with llama.cpp, for a GGUF), and the library versions and commit
    that made it. Registry text (names, notes, labels) is data: it goes in code spans or fenced blocks,
    never as Markdown."""
    version = store.datasets.get(row["dataset_version_id"]) if row.get("dataset_version_id") else None
    lines = [f"# {code(row['name'])}", "",
             f"A {manifest['task']} model ({manifest['method']}, {manifest['backend']}) exported by Pioneer TUI "
             f"as `{fmt}`{f' ({code(gguf_file)})' if gguf_file else ''}.", "",
             f"- base model: {code(hub_id(manifest['base_model']))}",
             f"- status in its workspace: {code(row['status'])}; registry id {code(row['id'])}"]
    if row.get("parent_id"):
        lines.append(f"- parent model: {code(row['parent_id'])}")
    if manifest.get("classes"):
        lines.append(f"- outputs: {', '.join(code(c) for c in manifest['classes'])}")
    if manifest.get("system_prompt"):
        lines.append(f"- trained with this system prompt (put it first in the chat): {code(manifest['system_prompt'])}")
    if version:
        lines.append(f"- training data: version {code(version['id'])}, {version['n_rows']} rows, sha256 "
                     f"{code(version['content_hash'])}")
    elif manifest.get("imported_from"):
        lines.append(f"- imported from {code(manifest['imported_from'])} (trained elsewhere)")
    if merged := manifest.get("merged_with"):
        lines.append(f"- weights averaged with the model it replaced, {code(merged['model'])} "
                     f"({merged['share']:.0%} of it), to keep what that model got right")
    metrics = {k: v for k, v in (row.get("metrics") or {}).items() if isinstance(v, int | float)}
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {code(k)} | {v:.4g} |" for k, v in sorted(metrics.items())]
    gates = _gates(store, row)
    if gates:
        lines += ["", "## Gates passed before promotion", ""]
        lines += [f"- {code(g['gate'])}: {g['value']:.4g} {g.get('rule') or ''} {g['threshold']:.4g}" for g in gates]
    if gguf_file:
        lines += ["", "## Run it with llama.cpp", "", "```sh",
                  f"llama-cli -m {gguf_file}  # a chat, with the chat template stored in the file",
                  f"llama-server -m {gguf_file}  # an OpenAI-compatible server on port 8080"]
        if manifest.get("system_prompt"):
            lines.append("# it was trained with the system prompt above: give it first (llama-cli -sys '...')")
        lines.append("```")
    lines += ["", "## Load it", "", "```python", f"FOLDER = {'.'!r}  # this folder", loader, "```", "",
              "## Made with", ""]
    lines += [f"- {name} {ver}" for name, ver in _versions(("gguf",) if gguf_file else ()).items()]
    lines.append(f"- python {platform.python_version()}")
    if commit := _git_commit():
        lines.append(f"- pioneer-tui commit {code(commit)}")
    return "\n".join(lines) + "\n"


def _gates(store: Store, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The gate results recorded for the node that trained this model (none for an imported model)."""
    run_id = str(row["id"]).split(".", 1)[0] if "." in str(row["id"]) else None
    if not run_id or store.runs.get(run_id) is None:
        return []
    node = str(row["id"]).rsplit(".", 1)[0]
    return [e.payload for e in store.runs.events(run_id) if e.type == "gate_checked"
            and e.payload.get("node_id") == node and e.payload.get("passed")
            and isinstance(e.payload.get("value"), int | float) and isinstance(e.payload.get("threshold"), int | float)]
