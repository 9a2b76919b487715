"""The demo project (demo_data/): set a fresh workspace up so production mode can run on it, and run
the loop again once it promoted a model.

`prepare_demo` ingests the judged traces, retrains the deployed model from the recipe in deployed.json
(seeded, so it is the model the traces describe) and registers it as deployed with its training set as
D_parent. Every step is skipped when already done, so a second start costs nothing.

After a promotion the improved model has no traffic of its own yet, and its id did not exist when the
demo was written, so the second week is shipped unjudged: `next_week.jsonl` holds gold-labelled
utterances the first week never saw. `serve_next_week` has the now-deployed model answer them, judges
each answer against its label by exact match (as the first week was judged), and ingests the result as
that model's traces, so production mode can run on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.data.datasets_io import read_examples
from engine.data.perturb import LOG_START, to_trace_rows
from engine.ingest import ingest_traces
from engine.models.base import ProgressCallback, TrainConfig
from engine.models.factory import train_and_register
from engine.production import ProductionConfig
from engine.seed import seed_everything
from store import Store, atomic_write_jsonl

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo_data"
NEXT_WEEK = "next_week.jsonl"
NEXT_WEEK_SOURCE = "demo-next-week"
NEXT_WEEK_SEED = 8


def _spec(demo_dir: Path) -> dict[str, Any]:
    spec_path = demo_dir / "deployed.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path} is missing: the demo project ships in the repository's demo_data/")
    return json.loads(spec_path.read_text(encoding="utf-8"))


def _config(model_id: str, task: str) -> ProductionConfig:
    """Six iterations: room for a veto, the search past a first pass (search_on) and, after a refused
    promotion, more candidates, so every human decision in the demo visibly changes what happens next."""
    return ProductionConfig(model=model_id, task=task, seed=0, max_iterations=6, max_minutes=20.0)


def prepare_demo(store: Store, demo_dir: Path = DEMO_DIR, *, progress: ProgressCallback | None = None,
                 say: Callable[[str], None] = lambda _msg: None) -> ProductionConfig:
    """Make the workspace hold the demo's traces and deployed model; return the run's configuration."""
    spec = _spec(demo_dir)
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
    return _config(model_id, spec["task"])


@dataclass(frozen=True)
class NextWeek:
    """The demo's second week of traffic, ready to be served to the deployed model."""

    model_id: str
    path: Path
    size: int


def next_week(store: Store, demo_dir: Path = DEMO_DIR) -> NextWeek | None:
    """The second week when it can be served now: this is the demo's workspace (the deployed model
    descends from the demo's), the deployed model has no traces of its own yet, and the week was
    never served (it is new traffic once, not every time)."""
    path = demo_dir / NEXT_WEEK
    deployed = store.models.deployed()
    if deployed is None or not path.is_file() or not (demo_dir / "deployed.json").is_file():
        return None
    demo_model = _spec(demo_dir)["model_id"]
    lineage = [m["id"] for m in store.models.ancestors(deployed["id"])]
    served = store.conn.execute("SELECT COUNT(*) FROM traces WHERE source = ? OR model_id = ?",
                                (NEXT_WEEK_SOURCE, deployed["id"])).fetchone()[0]
    if deployed["id"] == demo_model or demo_model not in lineage or served:
        return None
    with path.open(encoding="utf-8") as lines:
        size = sum(1 for line in lines if line.strip())
    return NextWeek(deployed["id"], path, size)


def serve_next_week(store: Store, week: NextWeek, demo_dir: Path = DEMO_DIR, *,
                    say: Callable[[str], None] = lambda _msg: None) -> ProductionConfig:
    """The deployed model answers the second week, each answer is judged against its gold label (exact
    match) and ingested as its trace; returns the production configuration for that model."""
    from engine.models.predictor import load_predictor  # torch: loaded only when a run needs it

    task = _spec(demo_dir)["task"]
    rows = [json.loads(line) for line in week.path.open(encoding="utf-8") if line.strip()]
    model = store.models.get(week.model_id)
    if model is None or not model.get("artifact_path"):
        raise FileNotFoundError(f"the deployed model {week.model_id} has no artifact to answer the traffic with")
    say(f"{week.model_id} answers next week's {len(rows)} requests")
    threshold = (model.get("hyperparameters") or {}).get("threshold")
    predictions = load_predictor(model["artifact_path"]).predict([r["input"] for r in rows], threshold)
    traces = to_trace_rows(rows, [p.output for p in predictions], model_id=week.model_id, stage="production",
                           seed=NEXT_WEEK_SEED, task=task, start=LOG_START + timedelta(days=7),
                           source=NEXT_WEEK_SOURCE)
    path = store.artifacts / "ingest" / f"{NEXT_WEEK_SOURCE}-{week.model_id}.jsonl"
    atomic_write_jsonl(path, traces)
    result = ingest_traces(store, path)
    failed = sum(t["verdict"] == "fail" for t in traces)
    say(f"judged against the labels: {len(traces) - failed} passed, {failed} failed ({result.inserted} traces ingested)")
    return _config(week.model_id, task)
