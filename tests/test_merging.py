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


def test_lora_adapters_of_one_method_are_averaged_and_not_across_methods():
    manifest = {"backend": "encoder", "task": "classification", "method": "lora", "base_model": "minilm",
                "labels": LABELS}
    assert merge_blocker(manifest, manifest) is None
    assert merge_blocker(manifest, {**manifest, "method": "qlora"}) == \
        "the deployed model's method is 'qlora', the candidate's 'lora'"


def _adapter(folder, seed: int, rank: int, alpha: int, **config):
    """A real peft adapter over a tiny decoder, with random A and B (no training needed)."""
    from engine.models.base import TrainConfig
    from engine.models.decoder import ChatFormat, load_tokenizer, prepare_model, save_artifact, stop_token_ids

    base = str(folder.parent / "base")
    train_config = TrainConfig(task="generation", base_model=base, method="lora", lora_rank=rank, lora_alpha=alpha)
    model = prepare_model(base, train_config, "cpu")
    model.peft_config["default"].use_rslora = config.get("use_rslora", False)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn_like(param) * 0.3)
    tok = load_tokenizer(base)
    save_artifact(model, tok, ChatFormat(tok, None, stop_token_ids(tok)), train_config, base, folder)
    return folder


def _merged_weights(folder) -> dict[str, torch.Tensor]:
    from engine.models.decoder import load_decoder_predictor

    return {k: v.clone() for k, v in load_decoder_predictor(folder, device="cpu").model.state_dict().items()}


def test_two_lora_adapters_average_exactly_as_one_adapter_of_their_summed_rank(tmp_path):
    """W = W0 + (1 - s) dW_candidate + s dW_deployed, whatever the ranks and scales (rsLoRA included)."""
    from tiny_decoder import tiny_decoder

    tiny_decoder(tmp_path / "base")
    new = _adapter(tmp_path / "new", seed=1, rank=2, alpha=4)
    old = _adapter(tmp_path / "old", seed=2, rank=4, alpha=4, use_rslora=True)
    w_new, w_old = _merged_weights(new), _merged_weights(old)
    merge_with_deployed(new, old, 0.3, "deployed-v1")
    averaged = _merged_weights(new)
    config = json.loads((new / "adapter_config.json").read_text(encoding="utf-8"))
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (6, 6, False)
    assert json.loads((new / "pioneer.json").read_text(encoding="utf-8"))["merged_with"]["share"] == 0.3
    changed = [k for k in averaged if not torch.equal(w_new[k], w_old[k])]
    assert changed and all("proj" in k for k in changed)  # the adapted layers, nothing else
    for key in averaged:
        assert torch.allclose(averaged[key], 0.7 * w_new[key] + 0.3 * w_old[key], atol=1e-5), key


def test_adapters_with_per_layer_ranks_are_refused_and_the_candidate_is_kept(tmp_path):
    from tiny_decoder import tiny_decoder

    tiny_decoder(tmp_path / "base")
    new, old = _adapter(tmp_path / "new", seed=1, rank=2, alpha=4), _adapter(tmp_path / "old", seed=2, rank=2, alpha=4)
    config = json.loads((old / "adapter_config.json").read_text(encoding="utf-8"))
    (old / "adapter_config.json").write_text(json.dumps({**config, "rank_pattern": {"q_proj": 4}}), encoding="utf-8")
    before = (new / "adapter_model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"old/adapter_config.json: per-layer ranks .* train both with one rank"):
        merge_with_deployed(new, old, 0.5, "deployed-v1")
    assert (new / "adapter_model.safetensors").read_bytes() == before


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
