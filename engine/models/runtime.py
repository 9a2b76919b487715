"""Device facts both backends share: the device and thread count, bf16 support and autocast,
out-of-memory errors and peak memory."""

from __future__ import annotations

import os
import resource
from typing import Any

from engine.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 where the device computes it natively, else fp32


def pick_device(requested: str | None = None) -> Any:
    """`requested` (e.g. "cpu", "cuda:1"), else the GPU when there is one, else the CPU."""
    import torch

    return torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))


def set_threads(num_threads: int | None) -> None:
    """`num_threads`, else $OMP_NUM_THREADS, else every core this process may use (affinity-aware)."""
    import torch

    env = os.environ.get("OMP_NUM_THREADS", "")
    torch.set_num_threads(num_threads or (int(env) if env.isdigit() and int(env) > 0 else 0) or usable_cores())


def usable_cores() -> int:
    """The cores this process may run on (its affinity on Linux; every core where there is none, e.g. macOS)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def bf16_supported(device: Any) -> bool:
    """True where bf16 matmuls are native: a CUDA GPU that says so, a CPU with AVX-512 BF16 or AMX.
    Elsewhere (e.g. AVX2-only CPUs) torch emulates bf16 and autocast is slower than fp32."""
    import torch

    if getattr(device, "type", str(device).split(":")[0]) == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: Any, field: str = "precision") -> str:
    """'bf16' or 'fp32' for `device`: auto picks bf16 where it is native; bf16 on a GPU without it fails."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{field}={precision!r} is invalid: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    on_gpu = getattr(device, "type", str(device).split(":")[0]) == "cuda"
    if precision == "bf16" and on_gpu and not bf16_supported(device):
        raise ConfigError(f"{field}='bf16' needs a GPU with bf16 support: use 'fp32' or 'auto'")
    return precision


def autocast(device: Any, precision: str) -> Any:
    """bf16 autocast when `precision` (resolved) is bf16; a no-op context otherwise."""
    import torch

    device_type = getattr(device, "type", str(device).split(":")[0])
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error or a failed CPU allocation (torch raises RuntimeError)."""
    import torch

    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def peak_memory_mb(device: Any = "cpu") -> float:
    """Peak allocated GPU memory on CUDA, else this process's peak resident memory (KiB on Linux)."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
