"""Device facts both training backends report the same way: out-of-memory errors and peak memory."""

from __future__ import annotations

import resource


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error or a failed CPU allocation (torch raises RuntimeError)."""
    import torch

    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def peak_memory_mb(device: str = "cpu") -> float:
    """Peak allocated GPU memory on CUDA, else this process's peak resident memory (KiB on Linux)."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
