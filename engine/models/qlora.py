"""QLoRA: load a base model with 4-bit NF4 weights (bitsandbytes) so LoRA trains on top of it.

This is the user's target on one GPU: NF4 with double quantization cuts the frozen base to about
a quarter of its bf16 size while LoRA adapters train in the compute dtype. On CPU it is opt-in
only: bitsandbytes 0.50 does quantize to NF4 on CPU and the layers run, but every matmul
dequantizes the weight first, so it is neither faster nor smaller than plain fp32 LoRA there;
use it on CPU only to check the code path. Shared by the encoder and decoder backends.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from engine.errors import ConfigError

CPU_OPT_IN_ENV = "PIONEER_QLORA_ON_CPU"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_opted_in() -> bool:
    return os.environ.get(CPU_OPT_IN_ENV, "") not in ("", "0", "false", "False")


def compute_dtype(device: str) -> Any:
    """bf16 where the GPU supports it, else fp16 on GPU; fp32 on CPU (bnb's CPU path)."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(method: str, device: str, *, allow_cpu: bool | None = None) -> Any:
    """The BitsAndBytesConfig for `method` on `device`, or None when the method is not qlora.

    On CPU, qlora raises ConfigError unless allowed (argument, or env PIONEER_QLORA_ON_CPU=1).
    """
    if method != "qlora":
        return None
    if not device.startswith("cuda"):
        allowed = cpu_opted_in() if allow_cpu is None else allow_cpu
        if not allowed:
            raise ConfigError(
                "TrainConfig.method='qlora' needs a CUDA GPU (4-bit NF4 is neither faster nor smaller on "
                f"CPU): use method='lora' here, or set {CPU_OPT_IN_ENV}=1 to run the 4-bit path on CPU anyway"
            )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("TrainConfig.method='qlora' needs the package bitsandbytes: pip install 'bitsandbytes>=0.50'")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype(device),
        bnb_4bit_use_double_quant=True,
    )


def load_for_training(
    model_cls: Any,
    path: str,
    *,
    method: str,
    device: str,
    gradient_checkpointing: bool = False,
    allow_cpu: bool | None = None,
    **kwargs: Any,
) -> Any:
    """`model_cls.from_pretrained(path, **kwargs)` on `device`, 4-bit and k-bit-prepared for qlora.

    For qlora the base weights are frozen and norms upcast by peft's prepare_model_for_kbit_training;
    the caller then wraps the model with LoRA. Other methods get a plain fp32 model.
    """
    import torch

    qconfig = quantization_config(method, device, allow_cpu=allow_cpu)
    if qconfig is None:
        model = model_cls.from_pretrained(path, dtype=torch.float32, **kwargs)
        return model.to(device)
    from peft import prepare_model_for_kbit_training

    model = model_cls.from_pretrained(
        path, quantization_config=qconfig, device_map={"": device}, dtype=compute_dtype(device), **kwargs
    )
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
