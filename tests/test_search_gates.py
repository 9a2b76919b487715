"""Gates and deployment on a real store: the epsilon boundary, the cross-checkpoint gate, tau lowering
with a record, promotion only through passing reports, exact rollback, and the property that
deployed scores never decrease under the gates."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import EventBus
from engine.models.base import ConfigError
from engine.search.gates import (
    Candidate,
    Deployment,
    GateConfig,
    GateError,
    check,
    lower_tau,
    stop_gate,
)
from store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ws") as s:
        yield s


def deployment(store: Store) -> Deployment:
    run = store.runs.create("production")
    return Deployment(store, EventBus(store, run))


def register(store: Store, parent: str | None = None, dataset: str | None = None) -> str:
    return store.models.register(base_model="minilm", artifact_path=None, task="classification", method="lora",
                                 parent_id=parent, dataset_version_id=dataset, hyperparameters={"lr": 1e-4})


def by_gate(report):
    return {r.gate: r for r in report.results}


@pytest.mark.parametrize(("regressions", "passed"), [(0, True), (2, True), (3, False), (7, False)])
def test_epsilon_boundary_two_regressions_pass_three_fail(regressions, passed):
    report = check(Candidate("n", "m", 0.99, failure_score=0.97, regressions=regressions), GateConfig())
    gate = by_gate(report)["regression_set"]
    assert (gate.passed, gate.value, gate.threshold, gate.rule) == (passed, regressions, 2, "<=")
    assert report.passed is passed


@pytest.mark.parametrize(("a", "passed"), [(0.96, True), (0.9599, False), (1.0, True)])
def test_failure_set_gate_is_a_at_least_tau(a, passed):
    report = check(Candidate("n", "m", 0.99, failure_score=a, regressions=0), GateConfig())
    assert by_gate(report)["failure_set"].passed is passed
    assert report.failed == ([] if passed else ["failure_set"])


@pytest.mark.parametrize(("cross", "passed"), [(2, True), (3, False)])
def test_cross_checkpoint_gate_repeats_r_at_most_two_on_the_previous_eval_set(cross, passed):
    report = check(Candidate("n", "m", 0.99, failure_score=0.99, regressions=0, cross_regressions=cross),
                   GateConfig())
    assert by_gate(report)["cross_checkpoint"].passed is passed
    assert report.passed is passed
    first = check(Candidate("n", "m", 0.99, failure_score=0.99, regressions=0), GateConfig())
    assert "cross_checkpoint" not in by_gate(first)  # no previous checkpoint yet


@pytest.mark.parametrize(("estimate", "passed"), [(0.84, True), (0.836, True), (0.8356, False)])
def test_traffic_gate_wants_the_estimated_traffic_accuracy_at_least_the_deployed_pass_rate(estimate, passed):
    candidate = Candidate("n", "m", 1.0, failure_score=1.0, regressions=2, traffic_score=estimate,
                          traffic_floor=0.836)
    report = check(candidate, GateConfig())
    gate = by_gate(report)["traffic"]
    assert (gate.passed, gate.threshold, gate.rule) == (passed, 0.836, ">=")
    assert report.failed == ([] if passed else ["traffic"])
    assert "traffic" not in by_gate(check(Candidate("n", "m", 1.0, failure_score=1.0, regressions=0), GateConfig()))
    with pytest.raises(ValueError, match="no floor"):
        check(Candidate("n", "m", 1.0, failure_score=1.0, regressions=0, traffic_score=0.9), GateConfig())


def test_cold_start_candidates_face_the_stop_gate_and_never_fall_below_the_deployed_score():
    report = check(Candidate("n", "m", 0.95), GateConfig(), deployed_score=0.93)
    assert by_gate(report)["stop"].passed is False and by_gate(report)["monotone"].passed is True
    report = check(Candidate("n", "m", 0.97), GateConfig(), deployed_score=0.98)
    assert report.failed == ["monotone"]
    assert stop_gate(0.96, GateConfig()).passed
    with pytest.raises(ValueError, match="no regression count"):
        check(Candidate("n", "m", 0.9, failure_score=0.9), GateConfig())


def test_tau_is_lowered_only_with_a_recorded_reason(store):
    with pytest.raises(ConfigError, match="needs a reason"):
        lower_tau(GateConfig(), 0.9, "plateau", "  ")
    with pytest.raises(ConfigError, match="basis"):
        lower_tau(GateConfig(), 0.9, "impatience", "tired of waiting")
    with pytest.raises(ConfigError, match="lower than now"):
        lower_tau(GateConfig(), 0.97, "plateau", "no gain in 5 iterations")
    config, change = lower_tau(GateConfig(), 0.93, "unfixable_residuals", "12 residual failures have label noise")
    assert config.tau == 0.93 and (change.old_tau, change.new_tau) == (0.96, 0.93)
    run = store.runs.create("cold_start")
    change.record(store, run, who="planner")
    decision = store.runs.decisions(run)[0]
    assert (decision["kind"], decision["action"], decision["diff"]["tau"]) == ("threshold", "approve", [0.96, 0.93])
    assert "label noise" in decision["reason"]


def test_promotion_retires_the_previous_model_and_emits_events(store):
    dep = deployment(store)
    first = register(store)
    report = dep.check(Candidate("n1", first, 0.97))
    dep.promote(Candidate("n1", first, 0.97), report)
    second = register(store, parent=first)
    candidate = Candidate("n2", second, 0.98, failure_score=0.99, regressions=1, cross_regressions=2)
    dep.promote(candidate, dep.check(candidate))
    assert store.models.get(first)["status"] == "retired"
    assert store.models.get(second)["status"] == "deployed"
    assert store.models.get(second)["metrics"]["score"] == 0.98
    events = [(e.type, e.payload.get("gate")) for e in dep.bus.history()]
    assert events == [("gate_checked", "stop"), ("promoted", None), ("gate_checked", "failure_set"),
                      ("gate_checked", "regression_set"), ("gate_checked", "cross_checkpoint"),
                      ("gate_checked", "monotone"), ("promoted", None)]
    gate = dep.bus.history()[2].payload
    assert gate == {"node_id": "n2", "gate": "failure_set", "passed": True, "value": 0.99, "threshold": 0.96}


def test_a_candidate_failing_any_gate_is_never_promoted(store):
    dep = deployment(store)
    first = register(store)
    dep.promote(Candidate("n1", first, 0.97), dep.check(Candidate("n1", first, 0.97)))
    second = register(store, parent=first)
    bad = Candidate("n2", second, 0.99, failure_score=0.99, regressions=3)
    report = dep.check(bad)
    with pytest.raises(GateError, match="regression_set.*never promoted"):
        dep.promote(bad, report)
    good_report = dep.check(Candidate("n3", second, 0.99, failure_score=0.99, regressions=0))
    with pytest.raises(GateError, match="another node"):
        dep.promote(bad, good_report)
    assert store.models.get(first)["status"] == "deployed"
    assert store.models.get(second)["status"] == "candidate"
    assert [e.type for e in dep.bus.history()].count("promoted") == 1  # only the first model


def test_promotion_requires_the_lineage_to_follow_the_deployed_model(store):
    dep = deployment(store)
    first, stray = register(store), register(store)
    dep.promote(Candidate("n1", first, 0.97), dep.check(Candidate("n1", first, 0.97)))
    candidate = Candidate("n2", stray, 0.98)
    with pytest.raises(GateError, match=f"register it with parent_id={first}"):
        dep.promote(candidate, dep.check(candidate))


def test_rollback_restores_the_exact_previous_model_and_dataset_version(store):
    dep = deployment(store)
    ds1 = store.datasets.create([{"id": "r1", "input": "a", "output": "x"}], task="classification")
    ds2 = store.datasets.create([{"id": "r2", "input": "b", "output": "y"}], task="classification", parent_id=ds1)
    first = register(store, dataset=ds1)
    dep.promote(Candidate("n1", first, 0.96), dep.check(Candidate("n1", first, 0.96)))
    second = register(store, parent=first, dataset=ds2)
    dep.promote(Candidate("n2", second, 0.97), dep.check(Candidate("n2", second, 0.97)))
    record = dep.rollback("regressions in production", node_id="n2")
    assert (record.from_model, record.to_model, record.dataset_version_id) == (second, first, ds1)
    assert record.hyperparameters == {"lr": 1e-4}
    assert store.models.get(first)["status"] == "deployed"
    assert store.models.get(second)["status"] == "rolled_back"
    assert [m["id"] for m in store.models.list("deployed")] == [first]
    event = dep.bus.history()[-1]
    assert (event.type, event.payload) == ("rollback", {"node_id": "n2", "from_model": second, "to_model": first,
                                                        "reason": "regressions in production"})
    with pytest.raises(GateError, match="no previously deployed ancestor"):
        dep.rollback("again")


def test_rollback_without_a_deployed_model_is_refused(store):
    with pytest.raises(GateError, match="nothing to roll back"):
        deployment(store).rollback("why not")


scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
candidate_op = st.tuples(st.just("candidate"), scores, scores, st.integers(0, 5), st.integers(0, 5))
rollback_op = st.tuples(st.just("rollback"))


@settings(max_examples=60, deadline=None)
@given(st.lists(candidate_op, min_size=1, max_size=12))
def test_under_the_gates_deployed_scores_never_decrease(ops):
    with tempfile.TemporaryDirectory() as tmp, Store(tmp) as store:
        dep = deployment(store)
        deployed_scores = []
        for n, (_, score, a, r, cross) in enumerate(ops):
            current = dep.deployed()
            model = register(store, parent=current["id"] if current else None)
            candidate = Candidate(f"n{n}", model, score, failure_score=a, regressions=r,
                                  cross_regressions=cross if current else None)
            report = dep.check(candidate)
            if report.passed:
                dep.promote(candidate, report)
                deployed_scores.append(score)
                assert a >= 0.96 and r <= 2 and (current is None or cross <= 2)
            else:
                with pytest.raises(GateError):
                    dep.promote(candidate, report)
                assert store.models.get(model)["status"] == "candidate"
        assert deployed_scores == sorted(deployed_scores)
        assert len(store.models.list("deployed")) == (1 if deployed_scores else 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(candidate_op, rollback_op), min_size=1, max_size=14))
def test_rollback_always_restores_the_model_deployed_before(ops):
    with tempfile.TemporaryDirectory() as tmp, Store(tmp) as store:
        dep = deployment(store)
        stack: list[tuple[str, float]] = []  # deployment history, current last
        for n, op in enumerate(ops):
            if op[0] == "rollback":
                if len(stack) < 2:
                    with pytest.raises(GateError):
                        dep.rollback("test")
                    continue
                record = dep.rollback("test")
                assert record.from_model == stack.pop()[0] and record.to_model == stack[-1][0]
            else:
                _, score, a, r, _ = op
                model = register(store, parent=stack[-1][0] if stack else None)
                candidate = Candidate(f"n{n}", model, score, failure_score=a, regressions=r)
                report = dep.check(candidate)
                if report.passed:
                    assert not stack or score >= stack[-1][1]
                    dep.promote(candidate, report)
                    stack.append((model, score))
            deployed = dep.deployed()
            assert (deployed["id"] if deployed else None) == (stack[-1][0] if stack else None)
