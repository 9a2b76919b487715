"""The agent loop end to end on a tiny BERT (production mode on a synthetic intent deployment):
a reviewer that vetoes once and edits once; events, decisions and data-curation.md must agree."""

from __future__ import annotations

from datetime import datetime

import pytest
from production_fixture import MODEL_NAME, build_template, copy_workspace
from scripted_people import VetoThenEdit

from engine.curation_log import curation_log_path, render_curation_log
from engine.production import ProductionConfig, improve
from engine.search.loop import LoopConfig
from store import Store

pytestmark = pytest.mark.slow  # trains several tiny models (~15 s)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_template(tmp_path_factory.mktemp("deployment"))


def test_veto_and_edit_flow_through_events_decisions_and_the_curation_log(template, tmp_path):
    workspace = copy_workspace(template, tmp_path / "ws")
    reviewer = VetoThenEdit([True, True, True, True])
    seen = []
    with Store(workspace) as store:
        summary = improve(store, ProductionConfig(model=MODEL_NAME, max_iterations=2, trainer_threads=1),
                          reviewer=reviewer, subscribers=(seen.append,), loop=LoopConfig(progress_interval_s=0.5))
        run_id = summary.run_id
        events = store.runs.events(run_id)
        decisions = store.runs.decisions(run_id)
        nodes = {n["id"]: n for n in store.runs.nodes(run_id)}

        # subscribers saw exactly the stored stream, in order
        assert [e.seq for e in seen] == [e.seq for e in events] == list(range(1, len(events) + 1))

        vetoed, edited = reviewer.curricula[0].node_id, reviewer.curricula[1].node_id
        assert nodes[vetoed]["status"] == "vetoed"
        assert nodes[vetoed]["metrics"]["veto_reason"] == "too few hard negatives for travel"
        assert nodes[edited]["status"] == "evaluated"

        # decisions: one per review / confirmation, each mirrored by a decision_recorded event
        recorded = [e.payload for e in events if e.type == "decision_recorded"]
        assert [(d["id"], d["kind"], d["action"], d["node_id"]) for d in decisions] == \
               [(p["decision_id"], p["kind"], p["action"], p["node_id"]) for p in recorded]
        # the person's reviews (a revision with the vetoed rows is the engine's veto, never shown again)
        curriculum = [d for d in decisions if d["kind"] == "curriculum" and d["who"] != "engine"]
        assert [d["action"] for d in curriculum[:2]] == ["veto", "edit"]
        assert len(curriculum) == len(reviewer.curricula)
        edit = curriculum[1]
        assert len(edit["diff"]["removed"]) == 1 and [r["id"] for r in edit["diff"]["added"]] == ["gold:added-by-tester"]

        # the edit is a new dataset version (child of the proposed one) and it is what was trained on
        proposed = reviewer.curricula[1].dataset_version_id
        version = store.datasets.get(edit["dataset_version_id"])
        assert version["parent_id"] == proposed and edit["dataset_version_id"] != proposed
        assert nodes[edited]["dataset_version_id"] == edit["dataset_version_id"]
        assert "went to berlin tomorrow" in [r["input"] for r in store.datasets.rows(version["id"])]
        model = store.models.get(nodes[edited]["model_id"])
        assert model["dataset_version_id"] == edit["dataset_version_id"]
        assert model["parent_id"] == template.model_id  # lineage: the deployed model it would replace

        # per node, the order is proposed -> decided -> trained -> evaluated -> gates; never trained if vetoed
        def first(kind, node):
            return next(e.seq for e in events if e.type == kind and e.payload.get("node_id") == node)
        for node in (r.node_id for r in reviewer.curricula[1:]):
            assert first("curriculum_proposed", node) < first("decision_recorded", node) < first("train_started", node) \
                < first("node_evaluated", node) < first("gate_checked", node)
        assert not any(e.type == "train_started" and e.payload["node_id"] == vetoed for e in events)
        assert [e.type for e in events][0] == "run_started" and events[-1].type == "run_finished"

        # train_progress is throttled: consecutive reports of a node are >= 0.5 s apart except the last
        for node in (r.node_id for r in reviewer.curricula[1:]):
            progress = [e for e in events if e.type == "train_progress" and e.payload["node_id"] == node]
            assert progress and progress[-1].payload["step"] == progress[-1].payload["total_steps"]
            times = [datetime.fromisoformat(e.ts) for e in progress[:-1]]
            assert all((b - a).total_seconds() >= 0.49 for a, b in zip(times, times[1:], strict=False))

        # the curation log on disk is exactly the render of the stored events, and says what happened
        text = curation_log_path(store, run_id).read_text(encoding="utf-8")
        assert text == render_curation_log(events)
        veto_line = next(line for line in text.splitlines() if "**veto** by tester" in line)
        assert reviewer.curricula[0].dataset_version_id in veto_line and "too few hard negatives for travel" in veto_line
        edit_line = next(line for line in text.splitlines() if "**edit** by tester" in line)
        assert edit["dataset_version_id"] in edit_line and "removed 1; added 1" in edit_line
        assert f"| `{edit['dataset_version_id']}` | {edited} |" in text  # the dataset-versions table
        for d in decisions:
            assert f"| {d['id']} | {d['kind']} | {d['action']} | {d['who']} |" in text

        # the run row agrees with run_finished
        run = store.runs.get(run_id)
        finished = events[-1].payload
        assert run["status"] == "finished" and run["stop_reason"] == finished["reason"] == summary.reason
        assert run["spent"]["spent"]["iterations"] == sum(1 for e in events if e.type == "train_started")
