"""A candidate averaged in weight space with the deployed model (WiSE-FT: Wortsman et al., "Robust
fine-tuning of zero-shot models", 2022): both were trained from the same base, so the average of their
weights keeps much of what the deployed model got right and of what the candidate learnt, at the cost
of an evaluation rather than a training run. On the mature CLINC30 deployment (imperfect judge), half
and half broke 8 of 500 held-out passes instead of 12, fixed 48 of 82 held-out failures instead of 50,
and scored 88.8% on unseen traffic instead of 87.3% (the deployed model: 82.3%).

Averaged: linear probes (the head) and full fine-tunes (every tensor), when the two models have the
same backend, task, method, base model and labels in the same order. A LoRA adapter's A and B are
not averaged (their product is what the model uses)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.models.base import write_manifest
from store.artifacts import atomic_write_dir

MERGEABLE = ("linear_probe", "full")


def merge_blocker(candidate: dict[str, Any], deployed: dict[str, Any]) -> str | None:
    """Why the weights of the two models (their manifests) cannot be averaged; None when they can."""
    for key in ("backend", "task", "method", "base_model"):
        if candidate.get(key) != deployed.get(key):
            return f"the deployed model's {key} is {deployed.get(key)!r}, the candidate's {candidate.get(key)!r}"
    if candidate.get("method") not in MERGEABLE:
        return f"{candidate.get('method')} weights are not averaged (only {' and '.join(MERGEABLE)})"
    if list(candidate.get("labels") or []) != list(deployed.get("labels") or []):
        return "the deployed model's labels are not the candidate's (in the same order)"
    return None


def merge_with_deployed(candidate_dir: Path, deployed_dir: Path, share: float, deployed_id: str) -> None:
    """Replace the candidate's weights in `candidate_dir` by (1 - share) * candidate + share * deployed,
    atomically; the manifest records the average."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from engine.models.predictor import read_manifest

    candidate_dir, deployed_dir = Path(candidate_dir), Path(deployed_dir)
    manifest = read_manifest(candidate_dir)
    if (why := merge_blocker(manifest, read_manifest(deployed_dir))) is not None:
        raise ConfigError(f"cannot average with the deployed model {deployed_id}: {why}")
    files = sorted(p.name for p in candidate_dir.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{candidate_dir} holds no .safetensors weights to average")

    def build(tmp: Path) -> None:
        shutil.copytree(candidate_dir, tmp, dirs_exist_ok=True)
        for name in files:
            if not (deployed_dir / name).is_file():
                raise ConfigError(f"the deployed model {deployed_id} has no {name} to average with")
            with safe_open(str(candidate_dir / name), "pt") as mine, safe_open(str(deployed_dir / name), "pt") as old:
                if set(mine.keys()) != set(old.keys()):
                    raise ConfigError(f"{name}: the deployed model {deployed_id} holds other tensors")
                mixed = {k: _mix(mine.get_tensor(k), old.get_tensor(k), share, f"{name} {k}") for k in mine.keys()}
                metadata = mine.metadata()
            save_file(mixed, str(tmp / name), metadata=metadata)
        write_manifest(tmp, {**manifest, "merged_with": {"model": deployed_id, "share": share}})

    atomic_write_dir(candidate_dir, build)


def _mix(mine: Any, old: Any, share: float, where: str) -> Any:
    if mine.shape != old.shape:
        raise ConfigError(f"{where}: shape {tuple(mine.shape)} against the deployed model's {tuple(old.shape)}")
    if not mine.is_floating_point():
        return mine
    return ((1.0 - share) * mine.float() + share * old.float()).to(mine.dtype).contiguous()
