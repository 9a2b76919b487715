"""Resume: a run stopped or SIGKILLed at any point continues from its events and stored graph, with
no duplicate nodes, no lost or repeated decisions, training redone from the base, and the same final
graph as an uninterrupted run with the same seed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from production_fixture import MODEL_NAME, build_template, copy_workspace
from scripted_people import Asker, StopOn

from engine.production import ProductionConfig, improve
from engine.search.loop import resume_run
from store import Store

pytestmark = pytest.mark.slow  # each case trains several tiny models, some in subprocesses

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_template(tmp_path_factory.mktemp("deployment"))


def graph_of(store: Store, run_id: str) -> dict:
    """The run's graph, decisions and outcome with run ids stripped (two runs compare equal)."""
    def local(node_id):
        return node_id.rsplit(".", 1)[-1] if node_id else None

    nodes = [(local(n["id"]), n["pipeline_hash"], local(n["parent_id"]), n["status"], n["score"], n["regressions"],
              n["visits"], round(n["total_reward"], 9), bool((n["metrics"] or {}).get("exhausted")))
             for n in store.runs.nodes(run_id)]
    edges = sorted((local(e["src"]), local(e["dst"]), e["operator"]) for e in store.runs.edges(run_id))
    decisions = [(d["kind"], d["action"], local(d["node_id"])) for d in store.runs.decisions(run_id)]
    events = store.runs.events(run_id)
    finished = [e.payload for e in events if e.type == "run_finished"]
    promoted = [local(e.payload["node_id"]) for e in events if e.type == "promoted"]
    return {"nodes": nodes, "edges": edges, "decisions": decisions, "promoted": promoted,
            "finished": [(f["status"], f["reason"].replace(run_id, "RUN"), local(f["best_node"])) for f in finished],
            "status": store.runs.get(run_id)["status"]}


def test_stops_resume_without_asking_twice_and_retrain_interrupted_training(template, tmp_path):
    cfg = ProductionConfig(model=MODEL_NAME, max_iterations=3, trainer_threads=1)
    with Store(copy_workspace(template, tmp_path / "straight")) as store:
        straight = improve(store, cfg, reviewer=Asker())
        expected = graph_of(store, straight.run_id)

    with Store(copy_workspace(template, tmp_path / "stopped")) as store:
        # 1. stop right after the first curriculum is proposed: nothing is asked yet
        stop = StopOn("curriculum_proposed")
        first = improve(store, cfg, reviewer=Asker(), subscribers=(stop,), should_stop=stop.should_stop)
        run_id, node = first.run_id, stop.node
        assert first.status == "interrupted" and store.runs.get(run_id)["status"] == "interrupted"
        assert [n["status"] for n in store.runs.nodes(run_id) if n["id"] == node] == ["proposed"]
        assert store.runs.decisions(run_id) == []

        # 2. resume; stop at the first progress report: the node was reviewed once, training is cut off
        stop = StopOn("train_progress")
        reviewer = Asker()
        second = resume_run(store, run_id, reviewer=reviewer, subscribers=(stop,), should_stop=stop.should_stop)
        assert second.status == "interrupted" and reviewer.asked == [("curriculum", node)]
        assert [n["status"] for n in store.runs.nodes(run_id) if n["id"] == node] == ["training"]
        assert store.models.get(f"{node}.m1")["status"] == "failed"

        # 3. resume to the end: the recorded decision is reused, training restarts from the base as .m2
        third = resume_run(store, run_id, reviewer=Asker(never_ask={("curriculum", node)}))
        assert third.status == "finished"
        events = store.runs.events(run_id)
        assert sum(1 for e in events if e.type == "curriculum_proposed" and e.payload["node_id"] == node) == 1
        assert sum(1 for e in events if e.type == "train_started" and e.payload["node_id"] == node) == 2
        assert [d["node_id"] for d in store.runs.decisions(run_id) if d["kind"] == "curriculum"].count(node) == 1
        assert next(n for n in store.runs.nodes(run_id) if n["id"] == node)["model_id"] == f"{node}.m2"
        assert [e.type for e in events].count("run_started") == 1 and [e.type for e in events].count("run_finished") == 1
        assert graph_of(store, run_id) == expected


def cli(workspace: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pioneer_tui.cli", "--workspace", str(workspace), *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


IMPROVE = ("improve", "--model", MODEL_NAME, "--headless", "--approve", "auto", "--max-iterations", "3", "--seed", "0")


def count(db: Path, kind: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute("SELECT COUNT(*) FROM events WHERE type = ?", (kind,)).fetchone()[0]


@pytest.fixture(scope="module")
def uninterrupted(template, tmp_path_factory):
    workspace = copy_workspace(template, tmp_path_factory.mktemp("straight") / "ws")
    done = subprocess.run(cli(workspace, *IMPROVE), env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with Store(workspace) as store:
        return graph_of(store, store.runs.list()[-1]["id"])


@pytest.mark.parametrize("kill_after", [("decision_recorded", 1), ("train_progress", 1)])
def test_sigkill_at_any_point_then_resume_gives_the_uninterrupted_graph(template, uninterrupted, tmp_path,
                                                                        kill_after):
    workspace = copy_workspace(template, tmp_path / "ws")
    db = workspace / "pioneer.db"
    proc = subprocess.Popen(cli(workspace, *IMPROVE), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kind, n = kill_after
    deadline = time.monotonic() + 300
    try:
        while count(db, kind) < n:
            assert proc.poll() is None, f"the run ended before {n} {kind} event(s): {proc.stderr.read()[-2000:]!r}"
            assert time.monotonic() < deadline, "the run never reached the kill point"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    with Store(workspace) as store:
        run_id = store.runs.list()[-1]["id"]
        assert store.runs.get(run_id)["status"] == "running"  # killed: nobody marked it
        assert count(db, "run_finished") == 0
    resumed = subprocess.run(cli(workspace, "resume", run_id, "--headless", "--approve", "auto"), env=env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with Store(workspace) as store:
        got = graph_of(store, run_id)
        assert len({n[1] for n in got["nodes"]}) == len(got["nodes"])  # no duplicate nodes
        assert got == uninterrupted
        assert got["promoted"]  # the resumed run went through to a promotion
