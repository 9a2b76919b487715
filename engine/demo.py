"""The demo project (demo_data/): set a fresh workspace up so production mode can run on it.

Ingests the judged traces, retrains the deployed model from the recipe in deployed.json (seeded, so
it is the model the traces describe) and registers it as deployed with its training set as
D_parent. Every step is skipped when already done, so a second start costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from engine.data.datasets_io import read_examples
from engine.ingest import ingest_traces
from engine.models.base import ProgressCallback, TrainConfig
from engine.models.factory import train_and_register
from engine.production import ProductionConfig
from engine.seed import seed_everything
from store import Store

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo_data"


def prepare_demo(store: Store, demo_dir: Path = DEMO_DIR, *, progress: ProgressCallback | None = None,
                 say: Callable[[str], None] = lambda _msg: None) -> ProductionConfig:
    """Make the workspace hold the demo's traces and deployed model; return the run's configuration."""
    spec_path = demo_dir / "deployed.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path} is missing: the demo project ships in the repository's demo_data/")
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    model_id = spec["model_id"]
    say("ingesting the demo's judged traces")
    ingest_traces(store, demo_dir / "traces.jsonl")
    if store.models.get(model_id) is None:
        say(f"training the deployed model {model_id} from {spec['train_file']}")
        train_file = demo_dir / spec["train_file"]
        examples = read_examples(train_file, spec["task"])
        rows = [{"id": ex.id, "input": ex.input, "output": ex.output} for ex in examples]
        dataset = store.datasets.create(rows, name="demo D_parent", task=spec["task"],
                                        composition={"gold": len(rows)}, note=f"from {train_file.name}")
        config = TrainConfig(**spec["config"])
        seed_everything(config.seed)
        train_and_register(store, examples, config, dataset_version_id=dataset, name=model_id,
                           model_id=model_id, progress=progress)
        store.models.set_status(model_id, "deployed")
    return ProductionConfig(model=model_id, task=spec["task"], seed=0, max_iterations=4, max_minutes=20.0)
