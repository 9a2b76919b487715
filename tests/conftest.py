"""Test-wide settings: no network, ever (litellm's price list and the Hugging Face hub stay local), one
OpenMP thread, and a garbage collector that does not re-scan the libraries' objects."""

from __future__ import annotations

import gc
import os
import sys

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One OpenMP thread unless the caller says otherwise (set before anything imports torch): with torch's
# default of one thread per core, a tiny model's steps spin against any other busy process on a 2-core
# machine and run 10-100x slower (a 1 s test took 30-75 s beside a benchmark).
os.environ.setdefault("OMP_NUM_THREADS", "1")


# A full collection walks every live object. torch, transformers, litellm, anthropic and openai leave
# 1-1.5 million of them, so each one took about 0.4 s, and they cost each xdist worker 15-20 s of a
# 90-100 s run. Objects that exist once collection is done, or once a test has imported new modules, are
# moved to the collector's permanent generation: they live until the process ends anyway. A full
# collection then waits for 100 generation-1 collections instead of 10 (75 full ones cost a worker
# 8.5 s; 17, 4.2 s).
_modules_frozen = [0]


def _freeze() -> None:
    gc.collect(1)
    gc.freeze()
    _modules_frozen[0] = len(sys.modules)


def pytest_collection_finish(session) -> None:
    gc.set_threshold(700, 10, 100)
    _freeze()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem) -> None:
    if len(sys.modules) > _modules_frozen[0]:
        _freeze()
