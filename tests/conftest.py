"""Test-wide settings: no network, ever (litellm's price list and the Hugging Face hub stay local), and
one OpenMP thread."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One OpenMP thread unless the caller says otherwise (set before anything imports torch): with torch's
# default of one thread per core, a tiny model's steps spin against any other busy process on a 2-core
# machine and run 10-100x slower (a 1 s test took 30-75 s beside a benchmark).
os.environ.setdefault("OMP_NUM_THREADS", "1")
