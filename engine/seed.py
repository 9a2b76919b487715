"""The one place randomness is seeded, so a run with the same seed repeats exactly."""

from __future__ import annotations

import os
import random


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (if installed) and ask torch for deterministic kernels.

    Deterministic mode would also fill every new tensor with NaN (a guard against reading uninitialised
    memory, which no code here does): that cost 4% of an encoder's training speed, so it is off; torch's
    docs say the kernels stay deterministic without it."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
