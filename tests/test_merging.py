"""Averaging a candidate with the deployed model in weight space (engine.models.merging)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import ConfigError
from engine.models.merging import merge_blocker, merge_with_deployed

LABELS = ["a", "b", "c"]


def artifact(folder, weight: float, **manifest):
    folder.mkdir()
    save_file({"weight": torch.full((3, 4), weight), "bias": torch.full((3,), weight)}, str(folder / "head.safetensors"),
              metadata={"format": "pt"})
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    (folder / "pioneer.json").write_text(json.dumps({"backend": "encoder", "task": "classification",
                                                     "method": "linear_probe", "base_model": "minilm",
                                                     "labels": LABELS, **manifest}), encoding="utf-8")
    return folder


def test_the_average_replaces_the_weights_and_the_manifest_says_so(tmp_path):
    new, old = artifact(tmp_path / "new", 1.0), artifact(tmp_path / "old", 3.0)
    merge_with_deployed(new, old, 0.25, "deployed-v1")
    head = load_file(str(new / "head.safetensors"))
    assert torch.equal(head["weight"], torch.full((3, 4), 1.5)) and torch.equal(head["bias"], torch.full((3,), 1.5))
    manifest = json.loads((new / "pioneer.json").read_text(encoding="utf-8"))
    assert manifest["merged_with"] == {"model": "deployed-v1", "share": 0.25} and manifest["labels"] == LABELS
    assert (new / "tokenizer.json").is_file()  # everything else is kept
    assert torch.equal(load_file(str(old / "head.safetensors"))["weight"], torch.full((3, 4), 3.0))


@pytest.mark.parametrize(("deployed", "message"), [
    ({"labels": ["a", "c", "b"]}, "labels are not the candidate's"),
    ({"method": "full"}, "method is 'full', the candidate's 'linear_probe'"),
    ({"base_model": "bert"}, "base_model is 'bert'"),
])
def test_models_that_cannot_be_averaged_are_refused_and_the_candidate_is_kept(tmp_path, deployed, message):
    new, old = artifact(tmp_path / "new", 1.0), artifact(tmp_path / "old", 3.0, **deployed)
    with pytest.raises(ConfigError, match=message):
        merge_with_deployed(new, old, 0.5, "deployed-v1")
    assert torch.equal(load_file(str(new / "head.safetensors"))["weight"], torch.full((3, 4), 1.0))


def test_a_shape_mismatch_is_refused_before_anything_is_replaced(tmp_path):
    new, old = artifact(tmp_path / "new", 1.0), artifact(tmp_path / "old", 3.0)
    save_file({"weight": torch.zeros(4, 4), "bias": torch.zeros(4)}, str(old / "head.safetensors"))
    with pytest.raises(ConfigError, match=r"head.safetensors bias: shape \(3,\) against the deployed model.s \(4,\)"):
        merge_with_deployed(new, old, 0.5, "deployed-v1")
    assert torch.equal(load_file(str(new / "head.safetensors"))["weight"], torch.full((3, 4), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old"]  # no temp folder left


def test_lora_adapters_are_not_averaged():
    manifest = {"backend": "encoder", "task": "classification", "method": "lora", "base_model": "minilm",
                "labels": LABELS}
    assert merge_blocker(manifest, manifest) == "lora weights are not averaged (only linear_probe and full)"
    assert merge_blocker({**manifest, "method": "full"}, {**manifest, "method": "full"}) is None


def test_the_model_card_says_the_weights_were_averaged(tmp_path):
    from engine.models.export import model_card
    from store import Store

    with Store(tmp_path / "ws") as store:
        row = {"id": "run-1.n0002.m1", "name": "intent`v2", "status": "deployed", "parent_id": "intent-v1",
               "dataset_version_id": None, "metrics": {}}
        manifest = {"task": "classification", "method": "linear_probe", "backend": "encoder", "base_model": "minilm",
                    "merged_with": {"model": "intent`v1", "share": 0.5}}
        card = model_card(store, row, manifest, "hf", "model = ...")
    assert "- weights averaged with the model it replaced, ``intent`v1`` (50% of it)" in card
