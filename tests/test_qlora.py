"""QLoRA on CPU: the NF4 layer computes with its dequantized weight, and the 4-bit training path runs."""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from test_decoder import ROWS, SYSTEM, _base
from transformers import AutoModelForCausalLM

from engine.errors import ConfigError
from engine.models.base import TrainConfig
from engine.models.qlora import CPU_OPT_IN_ENV, load_for_training, quantization_config


def _nf4_pair(double_quant: bool) -> tuple[bnb.nn.Linear4bit, torch.nn.Linear, torch.nn.Linear]:
    torch.manual_seed(0)
    dense = torch.nn.Linear(128, 48)
    nf4 = bnb.nn.Linear4bit(128, 48, bias=True, compute_dtype=torch.float32, quant_type="nf4",
                            compress_statistics=double_quant)
    nf4.load_state_dict(dense.state_dict())
    nf4 = nf4.to("cpu")  # quantizes the weight
    reference = torch.nn.Linear(128, 48)
    with torch.no_grad():
        reference.weight.copy_(bnb.functional.dequantize_4bit(nf4.weight.data, nf4.weight.quant_state))
        reference.bias.copy_(dense.bias)
    return nf4, reference, dense


@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_linear_forward_and_input_grads_match_its_dequantized_weight(double_quant):
    nf4, reference, dense = _nf4_pair(double_quant)
    assert nf4.weight.dtype == torch.uint8 and nf4.weight.numel() == 128 * 48 // 2  # two 4-bit codes a byte
    # Really 4-bit: at most 16 distinct values per 64-wide block, and close to the original weight.
    blocks = reference.weight.detach().reshape(-1, 64)
    assert max(len(torch.unique(b)) for b in blocks) <= 16
    error = (reference.weight - dense.weight).abs().max()
    assert 0 < error < 0.2 * dense.weight.abs().max()

    x = torch.randn(6, 128, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, out_ref = nf4(x), reference(x_ref)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    out_ref.backward(upstream)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)


def test_quantization_config_is_nf4_with_double_quant_and_cpu_needs_opt_in(monkeypatch):
    monkeypatch.delenv(CPU_OPT_IN_ENV, raising=False)
    assert quantization_config("lora", "cpu") is None
    assert quantization_config("full", "cuda") is None
    with pytest.raises(ConfigError, match=f"needs a CUDA GPU.*{CPU_OPT_IN_ENV}=1"):
        quantization_config("qlora", "cpu")
    for config in (quantization_config("qlora", "cpu", allow_cpu=True),
                   monkeypatch.setenv(CPU_OPT_IN_ENV, "1") or quantization_config("qlora", "cpu")):
        assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
        assert config.bnb_4bit_use_double_quant and config.bnb_4bit_compute_dtype == torch.float32


def test_load_for_training_quantizes_the_linears_and_freezes_the_base(tmp_path):
    folder = _base(tmp_path / "tiny")
    model = load_for_training(AutoModelForCausalLM, folder, method="qlora", device="cpu", allow_cpu=True)
    linears = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linears) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    assert all(not p.requires_grad for p in model.parameters())
    assert model.is_loaded_in_4bit
    plain = load_for_training(AutoModelForCausalLM, folder, method="lora", device="cpu")
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in plain.modules())


@pytest.mark.slow
def test_qlora_trains_saves_and_serves_on_cpu_when_opted_in(tmp_path):
    from engine.models.decoder import DecoderTrainer, load_decoder_predictor

    folder = _base(tmp_path / "tiny")
    config = TrainConfig(task="generation", base_model=folder, method="qlora", batch_size=2, epochs=2,
                         learning_rate=1e-2, max_length=64, system_prompt=SYSTEM)
    with pytest.raises(ConfigError, match="CUDA"):
        DecoderTrainer(device="cpu", allow_cpu_qlora=False).train(ROWS, config, tmp_path / "no")
    result = DecoderTrainer(device="cpu", allow_cpu_qlora=True).train(ROWS, config, tmp_path / "run")
    assert result.steps == 4 and result.metrics["train_loss"] == result.metrics["train_loss"]
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()
    preds = load_decoder_predictor(tmp_path / "run", device="cpu", max_new_tokens=4).predict(["hi", "Paris?"])
    assert len(preds) == 2 and all(0.0 < p.confidence <= 1.0 for p in preds)
