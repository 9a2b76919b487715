"""Production mode (issue 5): from a deployed model and its judged traces to a verified better model.

Diagnosis (once per run, snapshotted to artifacts/runs/<run>/diagnosis.json so a resumed run works
on exactly the same sets): T_fail / T_pass from the `traces` view (a person's verdict wins);
fixable vs poison triage (empty, gibberish, injection, off-domain, label errors: reported, never
trained on); the failure taxonomy; probes run through the deployed model to confirm each fixable
cluster (failing probes of confirmed clusters become gold candidates); D_parent through the
registry's lineage; the failure set (all of T_fail; a(pi) is scored on its fixable part, poison is
reported separately), a stratified regression set of T_pass (30-100% of |T_fail|) and the previous
checkpoint's evaluation set (cross-checkpoint gate).

Search: the root node is the deployed model itself, evaluated from its traces (a(pi) = 0 by
construction), so the first expansion sees the real confusion pairs. Every other node builds
D_post = gold corrections + hard negatives + replay of D_parent and of the verified passes outside the
protected sets (in full when small, see ProductionConfig.full_replay_below) under the quality controls, trains
from the BASE model, and is scored on the three sets; the decision threshold is a searchable
hyperparameter. The loop's gates decide; only the Reviewer promotes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import curriculum as cur
from engine.data.quality import QCConfig, QCReport, input_hash, run_quality_controls
from engine.diagnosis.eval_sets import EvalItem, EvalSet, failure_set, fix_holdout, regression_set
from engine.diagnosis.fixability import (
    CachedEmbedder,
    Embedder,
    MiniLMEmbedder,
    TriageConfig,
    TriageResult,
    apply_judgment,
    fitted_tfidf,
    label_error_flags,
    poison_map,
    summarize,
    triage,
)
from engine.diagnosis.probing import ProbeConfig, generate_probes, run_probes
from engine.diagnosis.taxonomy import FailureCluster, Taxonomy, TaxonomyConfig, build_taxonomy, ner_errors
from engine.diagnosis.traces import (
    LabelledText,
    Trace,
    load_traces,
    output_key,
    output_labels,
    output_to_json,
    parse_output,
    partition,
    pool_from_rows,
    pool_from_traces,
)
from engine.eval.metrics import example_correct
from engine.eval.regressions import compare
from engine.events import EventBus, Subscriber
from engine.models.base import (
    ENCODER_TASKS,
    NEGATIVE_LABELS,
    TASKS,
    ConfigError,
    Example,
    ProgressCallback,
    TrainConfig,
    head_init,
    write_manifest,
)
from engine.search.budget import BudgetLimits
from engine.search.gates import DEFAULT_MAX_REGRESSION_RATE, GateConfig, TrafficEvidence
from engine.search.graph import Node
from engine.search.loop import (
    LoopConfig,
    LoopParts,
    LoopResult,
    NodeEvaluation,
    NodeFailed,
    open_run,
    result_of,
    run_loop,
)
from engine.search.mcgs import MCGSConfig
from engine.search.pipeline import DatasetSpec, Pipeline, Strategy
from engine.search.planner import INERT, ClusterInfo, FailureSummary, Planner, RulePlanner
from engine.search.reviewer import Reviewer
from engine.seed import seed_everything
from store import Store, atomic_write_text
from store.artifacts import atomic_write_dir

EMBEDDERS = ("auto", "tfidf", "minilm")
# The traffic rule's regression set grows with T_pass up to this many items: beyond it the break-rate
# bound is already within half a point and every candidate pays the evaluation.
MAX_REGRESSION_ITEMS = 5000
DEFAULT_METRIC = {"classification": "accuracy", "ner": "accuracy", "generation": "exact_match_normalized"}


@dataclass(frozen=True)
class ProductionConfig:
    """`model`: registry id or name of the deployed model. `composition`: the root curriculum's
    gold / hard-negative / replay fractions. `hyperparams`: overrides of the deployed model's own
    training recipe for the root pipeline (e.g. {"epochs": 5}). `embedder`: "auto" is the embedded
    MiniLM when its package is installed (TF-IDF flagged ~9% of perturbed in-domain failures as
    off-domain on the demo), else TF-IDF. `full_replay_below`: a D_parent of at most this many rows is
    replayed in full (see engine.data.curriculum); larger ones get the searchable 10-20% band.
    `probe_head`: a fine-tuned classifier starts its head from the linear probe of the same rows
    (engine.models.base.head_init says when and why). `gate`: the promotion rule (engine.search.gates:
    "traffic", the default, or the paper's "strict"), with the traffic rule's regression budget
    (`max_regressions`, `max_regression_rate`); `fix_holdout`: the share of fixable failures kept out of
    training to measure the fix rate (default 0.2 under the traffic rule, 0 under strict: the paper
    trains on every failure); `regression_pass_share`: the traffic rule's regression set as a share of
    T_pass (strict sizes it as `regression_fraction` of |T_fail|)."""

    model: str
    task: str | None = None
    seed: int = 0
    tau: float = 0.96
    epsilon: int = 2
    cross_epsilon: int = 2
    max_iterations: int | None = 6
    max_minutes: float | None = 30.0
    regression_fraction: float = 0.5
    probe_threshold: float = 0.3
    embedder: str = "auto"
    full_replay_below: int = 5000
    composition: tuple[float, float, float] = (0.5, 0.3, 0.2)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    candidates_per_expansion: int = 1
    trainer_threads: int | None = None
    probe_head: bool = True
    gate: str = "traffic"
    max_regressions: int | None = None
    max_regression_rate: float | None = DEFAULT_MAX_REGRESSION_RATE
    fix_holdout: float | None = None
    regression_pass_share: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "composition", tuple(float(x) for x in self.composition))
        checks = [
            (isinstance(self.model, str) and bool(self.model.strip()), "model", "a registry model id or name"),
            (self.task is None or self.task in TASKS, "task", f"one of {', '.join(TASKS)} or unset"),
            (self.max_iterations is None or self.max_iterations >= 1, "max_iterations", "an integer >= 1 or unset"),
            (self.max_minutes is None or self.max_minutes > 0, "max_minutes", "a number > 0 or unset"),
            (0.3 <= self.regression_fraction <= 1.0, "regression_fraction", "a fraction of |T_fail| in [0.3, 1.0]"),
            (0.0 <= self.probe_threshold <= 1.0, "probe_threshold", "a probe failure rate in [0, 1]"),
            (self.embedder in EMBEDDERS, "embedder", f"one of {', '.join(EMBEDDERS)}"),
            (len(self.composition) == 3, "composition", "three fractions: gold, hard_negative, replay"),
            (isinstance(self.hyperparams, dict), "hyperparams", "a mapping of TrainConfig fields"),
            (self.candidates_per_expansion >= 1, "candidates_per_expansion", "an integer >= 1"),
            (self.trainer_threads is None or self.trainer_threads >= 1, "trainer_threads", "an integer >= 1 or unset"),
            (isinstance(self.probe_head, bool), "probe_head", "true or false"),
            (isinstance(self.full_replay_below, int) and self.full_replay_below >= 0, "full_replay_below",
             "a row count >= 0 (0: always sample 10-20% of D_parent)"),
            (self.fix_holdout is None or 0.0 <= self.fix_holdout <= 0.5, "fix_holdout",
             "a share of the fixable failures in [0, 0.5] or unset"),
            (0.05 <= self.regression_pass_share <= 0.9, "regression_pass_share", "a share of T_pass in [0.05, 0.9]"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"ProductionConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")
        self.gates()  # validates the gate settings
        allowed = {f.name for f in fields(TrainConfig)} - {"task"}
        unknown = sorted(set(self.hyperparams) - allowed)
        if unknown:
            raise ConfigError(f"ProductionConfig.hyperparams has unknown or fixed field(s) {', '.join(unknown)}: "
                              f"use TrainConfig fields other than task")

    def limits(self) -> BudgetLimits:
        return BudgetLimits(iterations=self.max_iterations,
                            seconds=None if self.max_minutes is None else self.max_minutes * 60.0)

    def gates(self) -> GateConfig:
        return GateConfig(self.tau, self.epsilon, self.cross_epsilon, rule=self.gate,
                          max_regressions=self.max_regressions, max_regression_rate=self.max_regression_rate)

    @property
    def holdout_share(self) -> float:
        if self.fix_holdout is not None:
            return self.fix_holdout
        return 0.2 if self.gate == "traffic" else 0.0

    def loop_config(self) -> LoopConfig:
        return LoopConfig(mcgs=MCGSConfig(horizon=self.max_iterations or 20, seed=self.seed,
                                          candidates_per_expansion=self.candidates_per_expansion),
                          gates=self.gates())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ProductionConfig:
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(f"stored production configuration is invalid: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Diagnosis
# --------------------------------------------------------------------------------------------

@dataclass
class Diagnosis:
    """Everything the search needs from diagnosis; JSON round-trips through the run's snapshot."""

    task: str
    deployed_id: str
    labels: list[str]
    taxonomy: Taxonomy | None
    triage: dict[str, TriageResult]
    failure: EvalSet | None
    regression: EvalSet | None
    cross: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    probe_rows: list[dict[str, Any]]
    fail_ids: list[str]
    pass_ids: list[str]
    parent_version: str | None
    holdout_ids: list[str] = field(default_factory=list)  # fixable failures never trained on

    @property
    def n_fixable(self) -> int:
        return 0 if self.failure is None else sum(
            1 for i in self.failure.items if i.fixable is not False and i.expected is not None)

    def to_dict(self) -> dict[str, Any]:
        def eval_set(s: EvalSet | None) -> dict[str, Any] | None:
            return None if s is None else {"name": s.name, "task": s.task, "items": s.to_rows(), "metadata": s.metadata}
        return {"task": self.task, "deployed_id": self.deployed_id, "labels": self.labels,
                "taxonomy": None if self.taxonomy is None else self.taxonomy.to_dict(),
                "triage": {k: [r.status, r.reason, r.detail] for k, r in self.triage.items()},
                "failure": eval_set(self.failure), "regression": eval_set(self.regression), "cross": self.cross,
                "probes": self.probes, "probe_rows": self.probe_rows, "fail_ids": self.fail_ids,
                "pass_ids": self.pass_ids, "parent_version": self.parent_version, "holdout_ids": self.holdout_ids}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Diagnosis:
        def eval_set(d: dict[str, Any] | None) -> EvalSet | None:
            return None if d is None else EvalSet(d["name"], d["task"], [EvalItem(**i) for i in d["items"]],
                                                  d["metadata"])
        tax = raw["taxonomy"]
        taxonomy = None if tax is None else Taxonomy(
            tax["task"], [FailureCluster(**{k: (tuple(v) if k in ("trace_ids", "labels") else v)
                                            for k, v in c.items() if k != "size"}) for c in tax["clusters"]],
            tax["n_fail"], tax["n_pass"], tax["stats"])
        return cls(raw["task"], raw["deployed_id"], raw["labels"], taxonomy,
                   {k: TriageResult(k, *v) for k, v in raw["triage"].items()}, eval_set(raw["failure"]),
                   eval_set(raw["regression"]), raw["cross"], raw["probes"], raw["probe_rows"], raw["fail_ids"],
                   raw["pass_ids"], raw["parent_version"], raw.get("holdout_ids") or [])


def deployed_model(store: Store, model: str) -> dict[str, Any]:
    """The model to improve: it must be the deployed one (or nothing may be deployed yet)."""
    row = store.models.get(model)
    if row is None:
        raise ConfigError(f"--model {model}: no such model in the registry (see `pioneer-tui models`)")
    current = store.models.deployed()
    if current is not None and current["id"] != row["id"]:
        raise ConfigError(f"--model {model} is not the deployed model ({current['id']} is): "
                          f"pass --model {current['id']}")
    return row


def model_traces(store: Store, model: dict[str, Any], task: str | None) -> list[Trace]:
    """The deployed model's judged traces (stored under its id or its name)."""
    found: dict[str, Trace] = {}
    for key in dict.fromkeys([model["id"], model["name"]]):
        if key:
            for t in load_traces(store, model_id=key, task=task):
                found.setdefault(t.id, t)
    return list(found.values())


def parent_data(store: Store, model_id: str) -> tuple[str | None, list[dict[str, Any]]]:
    """D_parent: the dataset version of the nearest model in the lineage that has one."""
    for m in store.models.ancestors(model_id):
        if m.get("dataset_version_id"):
            return m["dataset_version_id"], store.datasets.rows(m["dataset_version_id"])
    return None, []


def previous_checkpoint_set(store: Store, model_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every item the deployed model got right when it was evaluated in earlier runs (failure,
    regression and cross-checkpoint sets, so the set accumulates checkpoint after checkpoint): what it
    got right must stay right (cross-checkpoint gate). Left out, because the set is also kept out of
    training: items it got wrong (they cannot regress, and a kept model's old failures are in the new
    run's failure set, to be learnt) and items whose input it was trained on (memorised, not evidence;
    protecting them would drop them from the next curriculum's replay). The latest evaluation wins."""
    rows = store.conn.execute(
        "SELECT example_id, input, expected, correct FROM evaluations WHERE model_id = ? AND run_id IS NOT ? "
        "AND correct IS NOT NULL AND eval_set IN ('failure', 'regression', 'cross_checkpoint') ORDER BY id",
        (model_id, run_id)).fetchall()
    if not rows:
        return []
    model = store.models.get(model_id) or {}
    trained = {input_hash(r["input"]) for r in store.datasets.rows(model["dataset_version_id"])} \
        if model.get("dataset_version_id") else set()
    out: dict[str, dict[str, Any]] = {}
    for example_id, text, expected, correct in rows:
        out[example_id] = {"id": example_id, "input": text, "expected": json.loads(expected), "correct": bool(correct)}
    return [r for r in out.values() if r["correct"] and input_hash(r["input"]) not in trained]


_MINILM: dict[str, CachedEmbedder] = {}


def resolve_embedder(kind: str) -> str:
    """"auto" -> "minilm" when the embedded encoder's package is installed, else "tfidf"."""
    if kind != "auto":
        return kind
    try:
        MiniLMEmbedder.locate()
    except RuntimeError:
        return "tfidf"
    return "minilm"


def make_embedder(kind: str, texts: Sequence[str], seed: int) -> Embedder:
    """MiniLM is loaded once per process and its embeddings are kept (diagnosis and every node's
    curriculum embed the same pools); TF-IDF is fitted on this run's texts."""
    if resolve_embedder(kind) == "minilm":
        if "minilm" not in _MINILM:
            _MINILM["minilm"] = CachedEmbedder(MiniLMEmbedder())
        return _MINILM["minilm"]
    return CachedEmbedder(fitted_tfidf(list(texts), seed=seed))


def diagnose(store: Store, bus: EventBus, config: ProductionConfig, planner: Planner | None = None) -> Diagnosis:
    """Diagnose once, snapshot, and emit taxonomy_built plus curation notes."""
    deployed = deployed_model(store, config.model)
    if store.models.deployed() is None:
        store.models.set_status(deployed["id"], "deployed")
        bus.emit("curation_note", section="Deployment",
                 markdown=f"Nothing was deployed: `{deployed['id']}` is recorded as the deployed model.")
    task = config.task or deployed.get("task")
    traces = model_traces(store, deployed, task)
    if not traces:
        raise ConfigError(f"no traces for model {deployed['id']} ({deployed['name']}): ingest them with "
                          "`pioneer-tui ingest FILE` or `improve --traces FILE`")
    task = task or traces[0].task
    parts = partition(traces, task)
    parent_version, parent_rows = parent_data(store, deployed["id"])
    parent_pool = pool_from_rows(parent_rows, task, "parent")
    pass_pool = pool_from_traces(parts.pass_)
    reference = [*pass_pool, *parent_pool]
    embedder = make_embedder(config.embedder, [*(p.input for p in reference), *(t.input for t in parts.fail)],
                             config.seed)
    labels = _labels(deployed, traces, parent_pool, task)
    base = {"task": task, "deployed_id": deployed["id"], "labels": labels, "cross": [], "probes": [],
            "probe_rows": [], "fail_ids": [t.id for t in parts.fail], "pass_ids": [t.id for t in parts.pass_],
            "parent_version": parent_version}
    if not parts.fail:
        diagnosis = Diagnosis(**base, taxonomy=None, triage={}, failure=None, regression=None)
        save_diagnosis(store, bus.run_id, diagnosis)
        bus.emit("taxonomy_built", clusters=[], task=task, n_fail=0, n_pass=len(parts.pass_))
        return diagnosis

    verdicts = triage(parts.fail, reference, embedder=embedder, config=TriageConfig(seed=config.seed))
    taxonomy = build_taxonomy(parts.fail, parts.pass_, task, poison=poison_map(verdicts), embedder=embedder,
                              config=TaxonomyConfig(seed=config.seed))
    if planner is not None and not isinstance(planner, RulePlanner):
        def judge(c: FailureCluster) -> tuple[str, str]:
            verdict = planner.judge_fixability(ClusterInfo.of(c))
            return verdict.verdict, verdict.reason
        taxonomy = apply_judgment(taxonomy, judge)
    reports = _probe(store, deployed, taxonomy, parts.fail, reference, task, embedder, config)
    taxonomy = taxonomy.with_confirmation({r.cluster_id: r.failure_rate for r in reports})
    failure = failure_set(parts.fail, verdicts)
    holdout = set(fix_holdout(failure.items, config.holdout_share, seed=config.seed))
    # a failing probe made from a held-out failure would teach it: only probes of trained failures are gold
    probe_rows = [row for r in reports if r.confirmed for row in r.candidates()
                  if str(row.get("source", "")).rsplit(":", 1)[-1] not in holdout]
    size = None if config.gate == "strict" else min(math.ceil(config.regression_pass_share * len(parts.pass_)),
                                                     MAX_REGRESSION_ITEMS)
    diagnosis = Diagnosis(
        **{**base, "cross": previous_checkpoint_set(store, deployed["id"], bus.run_id),
           "probes": [r.to_dict() for r in reports], "probe_rows": probe_rows, "holdout_ids": sorted(holdout)},
        taxonomy=taxonomy, triage=verdicts, failure=failure,
        regression=regression_set(parts.pass_, len(parts.fail), fraction=config.regression_fraction,
                                  seed=config.seed, size=size))
    with store.transaction():
        save_diagnosis(store, bus.run_id, diagnosis)
        bus.emit("taxonomy_built", **taxonomy.to_dict(), triage=summarize(verdicts))
        for section, markdown in _diagnosis_notes(diagnosis, parent_rows, config.full_replay_below):
            bus.emit("curation_note", section=section, markdown=markdown)
    return diagnosis


def _labels(deployed: dict[str, Any], traces: list[Trace], parent: list[LabelledText], task: str) -> list[str]:
    """The label set a retrained model must be able to emit: the deployed model's plus every gold one."""
    from engine.models.predictor import read_manifest  # torch: loaded only when a run needs it

    found: set[str] = set()
    if deployed.get("artifact_path") and Path(deployed["artifact_path"]).exists():
        found |= set(read_manifest(deployed["artifact_path"]).get("labels") or [])
    for t in traces:
        found |= set(output_labels(t.gold, task))
    for p in parent:
        found |= set(output_labels(p.output, task))
    return sorted(found)


def _probe(store: Store, deployed: dict[str, Any], taxonomy: Taxonomy, fail: list[Trace],
           pool: list[LabelledText], task: str, embedder: Embedder, config: ProductionConfig) -> list[Any]:
    """Run each fixable cluster's probes through the deployed model (skipped without an artifact)."""
    path = deployed.get("artifact_path")
    if not path or not Path(path).exists():
        return []
    from engine.models.predictor import CachedPredictor

    predictor = CachedPredictor.for_artifact(path, store.cache)
    threshold = (deployed.get("hyperparameters") or {}).get("threshold")
    by_id = {t.id: t for t in fail}
    reports = []
    for cluster in taxonomy.fixable():
        probes = generate_probes(cluster, by_id, pool, task, embedder=embedder, config=ProbeConfig(seed=config.seed))
        reports.append(run_probes(cluster, probes, lambda xs: predictor.predict(xs, threshold),
                                  threshold=config.probe_threshold))
    return reports


def replay_pool(store: Store, d: Diagnosis) -> int:
    """Rows a curriculum may replay: D_parent and the verified passes outside the protected sets."""
    parent = (store.datasets.get(d.parent_version) or {}).get("n_rows") or 0 if d.parent_version else 0
    protected = len(d.regression or ()) + len(d.cross)
    return int(parent) + max(0, len(d.pass_ids) - protected)


def _diagnosis_notes(d: Diagnosis, parent_rows: list[dict[str, Any]],
                     full_replay_below: int) -> list[tuple[str, str]]:
    # One split of the failures, the same the taxonomy's fixable / external clusters and the Clusters pane
    # show: fixable with a correction (what the search targets), fixable without one, poison.
    failure = d.failure
    assert failure is not None
    corrected = sum(1 for i in failure.items if i.fixable is not False and i.expected is not None)
    uncorrected = sum(1 for i in failure.items if i.fixable is not False and i.expected is None)
    poison = {k: v for k, v in summarize(d.triage).items() if k != "fixable"}
    flagged = [r for r in d.triage.values() if r.reason == "label_error"]
    triage_md = (f"{len(failure)} failures: {corrected + uncorrected} in-domain ({corrected} with a correction, "
                 f"{uncorrected} without one), {sum(poison.values())} poison ("
                 + ", ".join(f"{k} {v}" for k, v in poison.items()) + ")")
    if flagged:
        triage_md += "\n\nLikely upstream label errors (flagged, excluded from training and from a(pi)):\n" + \
            "\n".join(f"- `{r.trace_id}`: {r.detail}" for r in flagged[:20])
    regression = d.regression
    assert regression is not None
    sets_md = (f"- failure set: {len(failure)} traces: {corrected} fixable with a correction (the search's targets), "
               f"{uncorrected} fixable without a correction, {len(failure) - corrected - uncorrected} poison "
               f"(reported separately); judged by {json.dumps(failure.metadata['judges'])}\n"
               f"- regression set: {len(regression)} passing traces never trained on ({_share(regression, d.pass_ids)} "
               f"of T_pass, stratified: {json.dumps(regression.metadata['strata'])})\n"
               f"- fix holdout: {len(d.holdout_ids)} fixable failures never trained on"
               f"{' (the fix rate is measured on them)' if d.holdout_ids else ''}\n"
               f"- previous checkpoint's set: {len(d.cross) or 'none (first evaluated checkpoint)'}")
    probes_md = "\n".join(f"- {p['cluster_id']}: {p['n_failed']}/{p['n_probes']} probes failed "
                          f"({p['failure_rate']:.0%}) -> {'confirmed' if p['confirmed'] else 'not confirmed'}"
                          for p in d.probes) or "- no probes (the deployed model has no artifact)"
    passes = max(0, len(d.pass_ids) - len(regression) - len(d.cross))
    pool = len(parent_rows) + passes
    full = 0 < pool <= full_replay_below
    parent_md = (f"D_parent: dataset version `{d.parent_version}` ({len(parent_rows)} rows)."
                 if d.parent_version else "No D_parent in the lineage.")
    parent_md += (f" Replay pool: D_parent and {passes} verified passes outside the protected sets, {pool} rows; "
                  + ("the root replays all of it (small enough that a 10-20% sample would forget what the "
                     "deployed model knew)." if full else "the root replays 10-20% of it (the pipeline's replay "
                     "fraction; a `replay_scope: all` move replays everything).")
                  if pool else " Nothing to replay: curricula have no replay slice.")
    return [("Triage", triage_md), ("Evaluation sets", sets_md),
            ("Probing", probes_md + f"\n\n{len(d.probe_rows)} failing probes become gold candidates."),
            ("Parent data", parent_md)]


def _share(part: EvalSet, whole: Sequence[str]) -> str:
    return f"{len(part) / len(whole):.0%}" if whole else "—"


def _snapshot_path(store: Store, run_id: str) -> Path:
    return store.artifacts / "runs" / run_id / "diagnosis.json"


def save_diagnosis(store: Store, run_id: str, diagnosis: Diagnosis) -> None:
    """The run's diagnosis as a snapshot (a resumed or forked run reads it instead of diagnosing again)."""
    atomic_write_text(_snapshot_path(store, run_id), json.dumps(diagnosis.to_dict(), ensure_ascii=False, default=str))


def load_diagnosis(store: Store, run_id: str) -> Diagnosis | None:
    """The run's diagnosis when its taxonomy_built event was recorded (else it is diagnosed again)."""
    if not any(e.type == "taxonomy_built" for e in store.runs.events(run_id)):
        return None
    return Diagnosis.from_dict(json.loads(_snapshot_path(store, run_id).read_text(encoding="utf-8")))


# --------------------------------------------------------------------------------------------
# The node runner
# --------------------------------------------------------------------------------------------

class ProductionRunner:
    """Curriculum -> train from the base -> score on the failure, regression and previous-checkpoint sets."""

    def __init__(self, store: Store, run_id: str, diagnosis: Diagnosis, config: ProductionConfig) -> None:
        if diagnosis.taxonomy is None or diagnosis.failure is None or diagnosis.regression is None:
            raise ValueError("production runner needs a diagnosis with failures")
        self.store = store
        self.run_id = run_id
        self.d = diagnosis
        self.config = config
        self.task = diagnosis.task
        deployed = store.models.get(diagnosis.deployed_id)
        if deployed is None:
            raise ConfigError(f"deployed model {diagnosis.deployed_id} is no longer in the registry")
        self.deployed = deployed
        wanted = set(diagnosis.fail_ids) | set(diagnosis.pass_ids)
        traces = {t.id: t for t in model_traces(store, deployed, self.task) if t.id in wanted}
        self.traces = traces
        self.fail = [traces[i] for i in diagnosis.fail_ids if i in traces]
        self.holdout = set(diagnosis.holdout_ids)
        self.pass_pool = pool_from_traces(traces[i] for i in diagnosis.pass_ids if i in traces)
        self.parent_pool = pool_from_rows(store.datasets.rows(diagnosis.parent_version), self.task, "parent") \
            if diagnosis.parent_version else []
        held_out = [{"input": t.input} for t in self.fail if t.id in self.holdout]
        self.protected = {name: [r["input"] for r in rows] for name, rows in
                          (("regression", diagnosis.regression.to_rows()), ("cross_checkpoint", diagnosis.cross),
                           ("fix_holdout", held_out)) if rows}
        self.targets = [i.input for i in diagnosis.failure.items if i.fixable is not False and i.expected is not None]
        texts = [*(p.input for p in self.pass_pool), *(p.input for p in self.parent_pool),
                 *(t.input for t in self.fail), *(r["input"] for r in diagnosis.probe_rows)]
        self.embedder = make_embedder(config.embedder, texts, config.seed)
        self.cluster_of = {tid: c.id for c in diagnosis.taxonomy.clusters for tid in c.trace_ids}

    # -- NodeRunner --------------------------------------------------------------------------
    def baseline(self) -> str:
        return self.d.deployed_id

    def labels(self) -> tuple[str, ...]:
        return tuple(self.d.labels)

    def build_curriculum(self, node: Node) -> str:
        spec = node.pipeline.data
        # the pipeline's replay fraction is the searchable floor of the |D_parent| replay band
        config = cur.CurriculumConfig(mode="production", gold_band=_band(spec.gold_fraction),
                                      hard_band=_band(spec.hard_negative_fraction), replay_share=spec.replay_fraction,
                                      replay_band=(spec.replay_fraction, max(spec.replay_fraction, 0.20)),
                                      replay_all=spec.replay_scope == "all", seed=self.config.seed)
        taxonomy = self._focused(spec.focus_pairs)
        excluded = [x for inputs in self.protected.values() for x in inputs]
        # replay keeps the parent's competence: D_parent plus the deployed model's verified passes (T_pass
        # outside the protected sets, which build_curriculum never draws from)
        trainable = [t for t in self.fail if t.id not in self.holdout]
        built = cur.build_curriculum(taxonomy, trainable, pool=self.pass_pool,
                                     parent=[*self.parent_pool, *self.pass_pool],
                                     embedder=self.embedder, config=config, extra_gold=self.d.probe_rows,
                                     exclude_inputs=excluded)
        rows = built.rows + self._targeted(taxonomy, spec.targeted, built.rows, excluded)
        contradicted = self._contradicted_gold(rows) if spec.gold_filter == "neighbours" else set()
        rows = [r for i, r in enumerate(rows) if i not in contradicted]
        c = spec.constraints
        qc_config = QCConfig(max_label_ratio=c.max_label_ratio, max_surface_repeats=c.max_surface_repeats,
                             patterns_per_label=(c.min_patterns_per_label, c.max_patterns_per_label),
                             near_dup_jaccard=c.near_dup_jaccard, seed=self.config.seed)
        kept, report = run_quality_controls(rows, self.task, target_inputs=self.targets, protected=self.protected,
                                            config=qc_config)
        if not kept:
            raise NodeFailed("the curriculum is empty after the quality controls")
        kept = cur.with_row_ids(kept)
        composition = Counter(r["slice"] for r in kept)
        qc = qc_checks(report, qc_config)
        kept_bands = dataclasses.replace(built, rows=kept).bands()  # what survived the quality controls
        qc["bands"] = {k: {"value": v["value"], "band": v["band"], "ok": v["ok"], "of": v.get("of")}
                       for k, v in kept_bands.items()}
        qc["per_cluster"] = {cid: {k: info[k] for k in ("gold", "hard_negative", "shortfall")}
                             for cid, info in built.per_cluster.items()}
        if spec.gold_filter != "none":
            qc["gold_filter"] = {"filter": spec.gold_filter, "dropped": len(contradicted)}
        return self.store.datasets.create(
            kept, name=f"{node.id} curriculum", task=self.task, parent_id=self.d.parent_version, run_id=self.run_id,
            composition={s: composition.get(s, 0) for s in cur.SLICES}, qc_report=qc,
            note=f"D_post for node {node.id}: {len(kept)} rows after quality controls ({report.n_in} built)")

    def train(self, node: Node, dataset_version_id: str, model_id: str, progress: ProgressCallback,
              should_stop: Callable[[], bool]) -> None:
        from engine.models.factory import train_and_register, trainer_for

        config = node.pipeline.hyperparams
        twin = self._trained_twin(node, dataset_version_id)
        if twin is not None:
            self._reuse(twin, config, model_id, dataset_version_id)
            return
        rows = self.store.datasets.rows(dataset_version_id)
        examples = cur.to_examples(rows, self.task)
        spec = node.pipeline.data
        if spec.replay_scope == "all":  # the composition holds as loss shares (engine.data.curriculum)
            shares = {"gold": spec.gold_fraction, "hard_negative": spec.hard_negative_fraction,
                      "replay": spec.replay_fraction}
            examples = [replace(ex, weight=w) for ex, w in zip(examples, cur.slice_weights(rows, shares), strict=True)]
        strategy = node.pipeline.strategy
        if strategy.distillation == "focal":
            examples = self._with_teacher(examples, [r.get("slice") == "replay" for r in rows])
        options: dict[str, Any] = {}
        if self.task in ENCODER_TASKS:
            options = {"labels": tuple(self.d.labels), "num_threads": self.config.trainer_threads,
                       "head_init": head_init(self.task, config.method, self.config.probe_head),
                       "distill_weight": strategy.distill_weight}
        trainer = trainer_for(self.task, config.base_model, **options)
        train_and_register(self.store, examples, config, parent_id=self.d.deployed_id,
                           dataset_version_id=dataset_version_id, progress=progress, should_stop=should_stop,
                           trainer=trainer, model_id=model_id)

    def evaluate(self, node: Node, model_id: str) -> NodeEvaluation:
        if model_id == self.d.deployed_id:
            return self._baseline()
        model = self.store.models.get(model_id)
        if model is None or not model.get("artifact_path"):
            raise NodeFailed(f"model {model_id} has no artifact to evaluate")
        from engine.models.predictor import CachedPredictor

        predictor = CachedPredictor.for_artifact(model["artifact_path"], self.store.cache)
        threshold = node.pipeline.hyperparams.threshold
        metric = node.pipeline.strategy.eval_method
        if metric == "judge":
            raise NodeFailed("eval_method 'judge' is not supported in production mode: use a metric")
        train_rows = self.store.datasets.rows(node.dataset_version_id) if node.dataset_version_id else []
        failure, regression = self.d.failure.items, self.d.regression.items
        inputs = list(dict.fromkeys([*(i.input for i in failure), *(i.input for i in regression),
                                     *(r["input"] for r in self.d.cross), *(r["input"] for r in train_rows)]))
        predicted = dict(zip(inputs, predictor.predict(inputs, threshold), strict=True))

        def right(expected: Any, text: str) -> bool:
            return example_correct(self.task, metric, expected, predicted[text].output)

        rows: list[dict[str, Any]] = []
        fail_ok: dict[str, bool | None] = {}
        for item in failure:
            fail_ok[item.id] = None if item.expected is None else right(item.expected, item.input)
            rows.append(_row("failure", item.id, item.input, item.expected, predicted[item.input], fail_ok[item.id],
                             self.task))
        reg_ok = {}
        for item in regression:
            reg_ok[item.id] = right(item.expected, item.input)
            rows.append(_row("regression", item.id, item.input, item.expected, predicted[item.input],
                             reg_ok[item.id], self.task))
        cross = None
        if self.d.cross:
            cross_ok = {}
            for r in self.d.cross:
                cross_ok[r["id"]] = right(r["expected"], r["input"])
                rows.append(_row("cross_checkpoint", r["id"], r["input"], r["expected"], predicted[r["input"]],
                                 cross_ok[r["id"]], self.task))
            cross = compare({r["id"]: r["correct"] for r in self.d.cross}, cross_ok).count
        regressions = compare(dict.fromkeys(reg_ok, True), reg_ok).count
        train_acc = _mean([right(r["output"], r["input"]) for r in train_rows]) if train_rows else None
        outputs = {i.id: predicted[i.input].output for i in failure}
        broken = [(i.id, i.expected, predicted[i.input].output) for i in regression if not reg_ok[i.id]]
        ev = self._evaluation(fail_ok, outputs, reg_ok, regressions, cross, train_acc, tuple(rows),
                              {"threshold": threshold}, broken)
        return replace(ev, evidence=self._evidence(fail_ok, regressions), cross_size=len(self.d.cross) or None)

    # -- internals ----------------------------------------------------------------------------
    def _contradicted_gold(self, rows: list[dict[str, Any]]) -> set[int]:
        """Indices of gold rows whose correction the nearest verified rows (passes, D_parent) and the other
        corrections contradict: a looser label-error check than triage's, for a person who says the
        corrections are bad. Classification only (a span set has no neighbour vote)."""
        if self.task != "classification":
            return set()
        gold = [i for i, r in enumerate(rows) if r["slice"] == "gold"]
        reference = [*self.pass_pool, *self.parent_pool]
        if not gold or not reference:
            return set()
        vectors = np.vstack([self.embedder.embed([p.input for p in reference]),
                             self.embedder.embed([rows[i]["input"] for i in gold])])
        labels = [str(p.output) for p in reference] + [str(rows[i]["output"]) for i in gold]
        flags = label_error_flags(vectors, labels, range(len(reference), len(vectors)), min_confidence=0.5,
                                  max_own_vote=0.25)
        return {gold[j - len(reference)] for j in flags}

    def _with_teacher(self, examples: list[Example], replayed: list[bool]) -> list[Example]:
        """Focal distillation: the deployed model's label probabilities (in this run's label order) on each
        replay row it gets right with at least even odds, so the new model keeps those answers; other rows
        learn the label. Hard negatives are left alone: they sit at the boundary the failures need moved,
        and distilling them pulled it back (fixes fell from 53 to 44 of 82 held out on CLINC30). An unsure
        teacher's probabilities are near uniform: distilling them pulls the new model towards not knowing
        (on a 12-intent deployment at 40%, unseen accuracy fell from 90% to 83%)."""
        path = self.deployed.get("artifact_path")
        if not path or not Path(path).exists():
            raise NodeFailed(f"focal distillation needs the deployed model's weights; {self.d.deployed_id} has none")
        from engine.models.predictor import load_predictor

        teacher = load_predictor(path)
        texts = list(dict.fromkeys(ex.input for ex in examples))
        probs = teacher.probabilities(texts)
        table = np.array([probs.get(label, [0.0] * len(texts)) for label in self.d.labels]).T
        row = {text: table[i] for i, text in enumerate(texts)}
        index = {label: k for k, label in enumerate(self.d.labels)}
        def sure(probs: np.ndarray, label: str) -> bool:
            k = index.get(label, -1)
            return k >= 0 and int(probs.argmax()) == k and float(probs[k]) >= 0.5

        return [replace(ex, teacher=tuple(float(p) for p in row[ex.input]))
                if keep and sure(row[ex.input], ex.output) else ex
                for ex, keep in zip(examples, replayed, strict=True)]

    def _trained_twin(self, node: Node, dataset_version_id: str) -> dict[str, Any] | None:
        """A model of this run trained on the same rows with the same recipe up to the threshold (applied
        at inference) and the fields its method ignores, and the same distillation: training again would
        give the same weights, so a threshold sweep or an inert move costs an evaluation, not a training run."""
        digest = (self.store.datasets.get(dataset_version_id) or {}).get("content_hash")
        want = _training_key(node.pipeline.hyperparams.to_dict())
        extras = _beyond_rows(node.pipeline.to_dict())
        for other in self.store.runs.nodes(self.run_id):
            if _beyond_rows(other["pipeline"]) != extras:
                continue
            model = self.store.models.get(other["model_id"]) if other.get("model_id") else None
            if model is None or model["id"] == self.d.deployed_id or not model.get("artifact_path") \
                    or not Path(model["artifact_path"]).exists() or not model.get("dataset_version_id"):
                continue
            version = self.store.datasets.get(model["dataset_version_id"]) or {}
            if version.get("content_hash") == digest and _training_key(model.get("hyperparameters") or {}) == want:
                return model
        return None

    def _reuse(self, twin: dict[str, Any], config: TrainConfig, model_id: str, dataset_version_id: str) -> None:
        """Register `model_id` as a copy of the twin's weights, its manifest saying so."""
        import shutil

        from engine.models.predictor import read_manifest

        def build(tmp: Path) -> None:
            shutil.copytree(twin["artifact_path"], tmp, dirs_exist_ok=True)
            write_manifest(tmp, {**read_manifest(tmp), "config": config.to_dict(), "weights_of": twin["id"]})

        target = self.store.artifacts / "models" / model_id
        atomic_write_dir(target, build)
        self.store.models.register(
            base_model=config.base_model, artifact_path=target, task=self.task, method=config.method,
            parent_id=self.d.deployed_id, dataset_version_id=dataset_version_id, hyperparameters=config.to_dict(),
            metrics={**(twin.get("metrics") or {}), "weights_of": twin["id"]}, wall_time_s=0.0, model_id=model_id)

    def _baseline(self) -> NodeEvaluation:
        """The deployed model as production judged it: failures wrong, passes right, by verdict."""
        rows, fail_ok, outputs = [], {}, {}
        for item in self.d.failure.items:
            trace = self.traces.get(item.id)
            prediction = trace.prediction if trace else None
            fail_ok[item.id] = None if item.expected is None else False
            outputs[item.id] = prediction
            rows.append(_row("failure", item.id, item.input, item.expected, prediction, fail_ok[item.id], self.task))
        reg_ok = {}
        for item in self.d.regression.items:
            trace = self.traces.get(item.id)
            reg_ok[item.id] = True
            rows.append(_row("regression", item.id, item.input, item.expected, trace.prediction if trace else None,
                             True, self.task))
        ev = self._evaluation(fail_ok, outputs, reg_ok, 0, None, None, tuple(rows), {})
        return replace(ev, regressions=None, promotable=False)

    def _evaluation(self, fail_ok: dict[str, bool | None], outputs: dict[str, Any], reg_ok: dict[str, bool],
                    regressions: int, cross: int | None, train_acc: float | None, rows: tuple[dict[str, Any], ...],
                    extra: dict[str, Any], broken: Sequence[tuple[str, Any, Any]] = ()) -> NodeEvaluation:
        """`broken`: (id, expected, output) of each regression-set item the candidate got wrong."""
        fixable = {i.id: i for i in self.d.failure.items if i.fixable is not False and i.expected is not None}
        poison = [fail_ok[i.id] for i in self.d.failure.items if i.fixable is False and i.expected is not None]
        scored = [ok for ok in fail_ok.values() if ok is not None]
        a = _mean([bool(fail_ok[i]) for i in fixable]) if fixable else 0.0
        metrics: dict[str, Any] = {
            "failure_set.accuracy": round(a, 6), "failure_set.fixed": sum(bool(fail_ok[i]) for i in fixable),
            "failure_set.fixable": len(fixable), "failure_set.all_accuracy": round(_mean(scored), 6) if scored else None,
            "regression_set.accuracy": round(_mean(list(reg_ok.values())), 6) if reg_ok else None,
            "regressions": regressions, **({"cross_checkpoint.regressions": cross} if cross is not None else {}),
            **({"failure_set.poison_accuracy": round(_mean(poison), 6)} if poison else {}),
            **({"train.accuracy": round(train_acc, 6)} if train_acc is not None else {}), **extra}
        patterns: Counter = Counter()
        per_cluster: dict[str, list[bool]] = {}
        for tid in fixable:
            cid = self.cluster_of.get(tid, "unclustered")
            per_cluster.setdefault(cid, []).append(bool(fail_ok[tid]))
            if not fail_ok[tid]:
                patterns[cid] += 1
        for cid, oks in sorted(per_cluster.items()):
            metrics[f"cluster.{cid}"] = round(_mean(oks), 4)
        held = [bool(fail_ok[i]) for i in fixable if i in self.holdout]
        if held:
            metrics.update({"fix_holdout.accuracy": round(_mean(held), 6), "fix_holdout.fixed": sum(held),
                            "fix_holdout.size": len(held)})
        failing = [i for i in fixable if not fail_ok[i]]
        return NodeEvaluation(
            score=a, regressions=regressions, metrics={k: v for k, v in metrics.items() if v is not None},
            examples=rows, failures=self._failures(failing, outputs, fixable, train_acc, a, broken),
            patterns=dict(sorted(patterns.items())), failure_score=a, cross_regressions=cross)

    def _evidence(self, fail_ok: dict[str, bool | None], broken: int) -> TrafficEvidence:
        """The traffic rule's counts: the run's traffic by stratum, the fix holdout and the regression set."""
        held = [bool(fail_ok[i]) for i in self.holdout if fail_ok.get(i) is not None]
        return TrafficEvidence(n_traffic=len(self.d.fail_ids) + len(self.d.pass_ids), n_fixable=self.d.n_fixable,
                               n_pass=len(self.d.pass_ids), holdout=len(held), holdout_fixed=sum(held),
                               regression=len(self.d.regression), broken=broken)

    def _failures(self, failing: list[str], outputs: dict[str, Any], fixable: dict[str, EvalItem],
                  train_acc: float | None, a: float, broken: Sequence[tuple[str, Any, Any]] = ()) -> FailureSummary:
        """Error counts over the failures still failing and the passes broken: a broken pass is an
        error of the same kind (NER hallucinations on empty sentences are false positives, a
        classification regression is a confusion pair), so the planner sees precision problems
        that only the regression set shows."""
        pairs: Counter = Counter()
        fp = fn = 0
        negative = next((lab for lab in self.d.labels if lab.lower() in NEGATIVE_LABELS), None)
        errors = [*((tid, fixable[tid].expected, outputs.get(tid)) for tid in failing), *broken]
        for where, expected, output in errors:
            if self.task == "classification":
                pairs[(str(expected), str(output))] += 1
                if output is None or (negative is not None and output == negative != expected):
                    fn += 1
                elif negative is not None and expected == negative:
                    fp += 1
            elif self.task == "ner":
                pred = parse_output(output, "ner", f"prediction for {where}") if not isinstance(output, tuple) \
                    else output
                e = ner_errors(pred or (), parse_output(expected, "ner", f"expected for {where}"))
                fp, fn = fp + e.fp, fn + e.fn
        ranked = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        return FailureSummary(confusion_pairs=tuple((g, p, n) for (g, p), n in ranked[:10]), false_positives=fp,
                              false_negatives=fn, train_score=train_acc, eval_score=a,
                              patterns=tuple(sorted(Counter(self.cluster_of.get(t, "unclustered")
                                                            for t in failing).items())))

    def _focused(self, focus_pairs: tuple[tuple[str, str], ...]) -> Taxonomy:
        """Clusters on a focus pair are treated as fully precision-dominated: most hard negatives."""
        taxonomy = self.d.taxonomy
        if not focus_pairs:
            return taxonomy
        pairs = [set(p) for p in focus_pairs]
        clusters = [replace(c, precision_share=1.0) if any(p <= set(c.labels) for p in pairs) else c
                    for c in taxonomy.clusters]
        return replace(taxonomy, clusters=clusters)

    def _targeted(self, taxonomy: Taxonomy, targeted: tuple[tuple[str, int], ...], rows: list[dict[str, Any]],
                  excluded: list[str]) -> list[dict[str, Any]]:
        """Surgical augmentation: for each remaining failure pattern (a cluster), the n known-answer
        inputs nearest its failing inputs whose answer matches what those failures should have said."""
        taken = {input_hash(r["input"]) for r in rows} | {input_hash(x) for x in excluded}
        pool = [*self.pass_pool, *self.parent_pool]
        out: list[dict[str, Any]] = []
        clusters = {c.id: c for c in taxonomy.fixable()}
        for cid, n in targeted:
            cluster = clusters.get(cid)
            failing = [self.traces[t] for t in (cluster.trace_ids if cluster else ())
                       if t in self.traces and self.traces[t].correction is not None]
            if not failing:
                continue
            keys = {output_key(t.correction, self.task) for t in failing}
            labels = {lab for t in failing for lab in output_labels(t.correction, self.task)}
            candidates = [p for p in pool if input_hash(p.input) not in taken and (
                output_key(p.output, self.task) in keys if self.task == "classification"
                else bool(labels & set(output_labels(p.output, self.task))) or self.task == "generation")]
            if not candidates:
                continue
            sims = (self.embedder.embed([p.input for p in candidates])
                    @ self.embedder.embed([t.input for t in failing]).T).max(axis=1)
            for j in np.argsort(-sims, kind="stable")[:n]:
                p = candidates[int(j)]
                taken.add(input_hash(p.input))
                out.append({"input": p.input, "output": output_to_json(p.output, self.task), "slice": "gold",
                            "source": f"targeted:{p.id}", "cluster": cid})
        return out


def qc_checks(report: QCReport, config: QCConfig) -> dict[str, Any]:
    """The quality-control report as pass/fail checks (what the Reviewer and the curation log show)."""
    after = (report.label_ratio or {}).get("after") or {}
    ratio = max(after.values()) / min(after.values()) if len(after) >= 2 and min(after.values()) else 1.0
    patterns = report.patterns or {}
    counts = list((patterns.get("per_label") or {}).values())
    checks = [
        {"name": "leakage", "passed": True, "value": 0, "limit": 0, "dropped": sum(report.leakage.values())},
        {"name": "exact_duplicates", "passed": True, "value": 0, "limit": 0, "dropped": report.exact_duplicates,
         "conflicts": report.conflicts},
        {"name": "near_duplicates", "passed": True, "value": 0, "limit": 0, "dropped": report.near_duplicates,
         "jaccard": config.near_dup_jaccard, "contrastive_pairs": report.contrastive_pairs},
        {"name": "label_ratio", "passed": not (report.label_ratio or {}).get("violations"), "value": round(ratio, 3),
         "limit": config.max_label_ratio},
        {"name": "patterns_per_label", "passed": not patterns.get("below") and not patterns.get("above"),
         "value": f"{min(counts)}-{max(counts)}" if counts else "—",
         "limit": f"{config.patterns_per_label[0]}-{config.patterns_per_label[1]}"},
    ]
    if report.surface_repeats:
        worst = max(report.surface_repeats.get("over_cap_protected", {}).values(), default=0)
        checks.append({"name": "surface_repeats", "passed": not worst, "value": worst or "—",
                       "limit": config.max_surface_repeats, "dropped": report.surface_repeats.get("dropped", 0)})
    return {"checks": checks, "length_distance": report.length, "rows": f"{report.n_out} of {report.n_in} kept",
            "dropped": report.dropped}


def _row(eval_set: str, example_id: str, text: str, expected: Any, prediction: Any, correct: bool | None,
         task: str) -> dict[str, Any]:
    output = getattr(prediction, "output", prediction)
    confidence = getattr(prediction, "confidence", None)
    return {"eval_set": eval_set, "example_id": example_id, "input": text,
            "expected": json.dumps(expected, ensure_ascii=False),
            "prediction": json.dumps(output_to_json(output, task) if task == "ner" and isinstance(output, tuple)
                                     else output, ensure_ascii=False, default=str),
            "correct": None if correct is None else int(correct), "score": None,
            "confidence": None if confidence is None else float(confidence)}


def _beyond_rows(pipeline: dict[str, Any]) -> tuple[Any, ...]:
    """What a training run reads from its pipeline besides the rows and hyperparameters: the
    distillation, and the slice shares that weight the loss when the whole pool is replayed."""
    strategy, data = pipeline.get("strategy") or {}, pipeline.get("data") or {}
    shares = tuple(data.get(k) for k in ("gold_fraction", "hard_negative_fraction", "replay_fraction")) \
        if data.get("replay_scope") == "all" else ()
    return strategy.get("distillation", "none"), strategy.get("distill_weight", 1.0), shares


def _training_key(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """What a training run reads from its hyperparameters (not the threshold, not the method's inert fields)."""
    ignored = {"threshold", *INERT.get(hyperparameters.get("method"), ())}
    return {k: v for k, v in hyperparameters.items() if k not in ignored}


def _band(center: float, width: float = 0.05) -> tuple[float, float]:
    return max(0.01, center - width), min(0.99, center + width)


def _mean(values: Sequence[bool | float]) -> float:
    return sum(float(v) for v in values) / len(values) if values else 0.0


# --------------------------------------------------------------------------------------------
# Wiring: the loop factory, improve, and the summary
# --------------------------------------------------------------------------------------------

def root_pipeline(deployed: dict[str, Any], config: ProductionConfig, task: str,
                  parent_version: str | None, replay_pool: int = 0) -> Pipeline:
    """The deployed model's own recipe (overridden by config.hyperparams), on a production curriculum
    that replays the whole pool when it has at most `full_replay_below` rows."""
    known = {f.name for f in fields(TrainConfig)}
    hyper = {k: v for k, v in (deployed.get("hyperparameters") or {}).items() if k in known}
    hyper.setdefault("base_model", deployed.get("base_model") or "minilm")
    if deployed.get("method"):
        hyper.setdefault("method", deployed["method"])
    hyper.update(config.hyperparams)
    hyper.update(task=task, seed=config.seed)
    gold, hard, replay = config.composition
    scope = "all" if 0 < replay_pool <= config.full_replay_below else "share"
    return Pipeline(DatasetSpec(mode="production", source_versions=(parent_version,) if parent_version else (),
                                gold_fraction=gold, hard_negative_fraction=hard, replay_fraction=replay,
                                replay_scope=scope),
                    TrainConfig(**hyper), Strategy(eval_method=DEFAULT_METRIC[task]))


def loop_parts(store: Store, run: dict[str, Any], bus: EventBus, planner: Planner | None = None) -> LoopParts:
    """The production loop for a run, diagnosing it first unless its snapshot exists (resume). A run
    config with `diagnosis_from` adopts that run's diagnosis instead, and one with `root` starts from
    that pipeline instead of the deployed model's recipe (a fork, engine.fork)."""
    raw = run["config"] or {}
    config = ProductionConfig.from_dict(raw["production"])
    seed_everything(config.seed)
    planner = planner or RulePlanner(seed=config.seed)
    diagnosis = load_diagnosis(store, bus.run_id)
    if diagnosis is None and raw.get("diagnosis_from"):
        from engine.fork import adopt_diagnosis  # engine.fork builds on this module

        diagnosis = adopt_diagnosis(store, bus, raw)
    diagnosis = diagnosis or diagnose(store, bus, config, planner)
    deployed = store.models.get(diagnosis.deployed_id) or {}
    root = Pipeline.from_dict(raw["root"]) if raw.get("root") else \
        root_pipeline(deployed, config, diagnosis.task, diagnosis.parent_version, replay_pool(store, diagnosis))
    loop = LoopConfig.from_dict(raw.get("loop") or config.loop_config().to_dict())
    finish = None
    if diagnosis.failure is None:
        finish = f"no failing traces for {diagnosis.deployed_id}: nothing to improve"
    elif diagnosis.n_fixable == 0:
        finish = f"all {len(diagnosis.failure)} failures are external (poison or uncorrected): nothing training can fix"
    runner = ProductionRunner(store, bus.run_id, diagnosis, config) if finish is None else _NoRunner()
    rationale = f"the deployed model {diagnosis.deployed_id}, scored on the failure set from its traces"
    if raw.get("forked_from"):
        rationale += f"; its pipeline is node {raw['forked_from']}'s, where this fork's search grows from"
    return LoopParts(root, planner, runner, loop, rationale, finish)


class _NoRunner:
    """Stands in when diagnosis found nothing to search (the loop finishes before using it)."""

    def baseline(self) -> str | None:
        return None

    def labels(self) -> tuple[str, ...]:
        return ()

    def build_curriculum(self, node: Node) -> str:
        raise NodeFailed("nothing to search")

    def train(self, node: Node, dataset_version_id: str, model_id: str, progress: ProgressCallback,
              should_stop: Callable[[], bool]) -> None:
        raise NodeFailed("nothing to search")

    def evaluate(self, node: Node, model_id: str) -> NodeEvaluation:
        raise NodeFailed("nothing to search")


@dataclass(frozen=True)
class Iteration:
    node_id: str
    iteration: int
    operator: str
    status: str
    score: float | None
    regressions: int | None
    cross_regressions: int | None
    gates: dict[str, bool]
    note: str = ""


@dataclass(frozen=True)
class ProductionSummary:
    run_id: str
    status: str
    reason: str
    outcome: str
    promoted_model: str | None
    clusters: list[dict[str, Any]]
    triage: dict[str, int]
    iterations: list[Iteration]

    @property
    def promoted(self) -> bool:
        return self.promoted_model is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_run(store: Store, run_id: str, result: LoopResult | None = None) -> ProductionSummary:
    """Taxonomy, per-iteration scores and gate verdicts, and the final decision, from the stored run."""
    result = result or result_of(store, run_id)
    events = store.runs.events(run_id)
    taxonomy = next((e.payload for e in events if e.type == "taxonomy_built"), {})
    clusters = [{k: c.get(k) for k in ("id", "name", "kind", "size", "fixability", "confirmation_rate")}
                for c in taxonomy.get("clusters") or []]
    edges = {e["dst"]: e["operator"] for e in store.runs.edges(run_id)}
    iterations = []
    for n in store.runs.nodes(run_id):
        m = n["metrics"] or {}
        gates = {r["gate"]: bool(r["passed"]) for r in (m.get("gates") or {}).get("results") or []}
        note = m.get("veto_reason") or m.get("error") or m.get("exhausted_reason") or ""
        iterations.append(Iteration(n["id"], n["iteration"], edges.get(n["id"], "root"), n["status"], n["score"],
                                    n["regressions"], m.get("cross_checkpoint.regressions"), gates, str(note)))
    return ProductionSummary(run_id, result.status, result.reason, result.outcome, result.promoted_model, clusters,
                             dict(taxonomy.get("triage") or {}), iterations)


def improve(store: Store, config: ProductionConfig, *, reviewer: Reviewer, planner: Planner | None = None,
            subscribers: tuple[Subscriber, ...] = (), should_stop: Callable[[], bool] | None = None,
            run_id: str | None = None, loop: LoopConfig | None = None, root: Pipeline | None = None,
            diagnosis_from: str | None = None, forked_from: str | None = None) -> ProductionSummary:
    """Run production mode end to end: diagnose, search under the gates, promote through the Reviewer.
    `loop` replaces the search settings derived from `config`; `root` the root pipeline derived from the
    deployed model; `diagnosis_from` (a run id) adopts that run's diagnosis; `forked_from` names the node a
    fork starts from (see engine.fork). All are stored with the run, so a resume uses them."""
    deployed_model(store, config.model)  # fail before a run exists
    limits = config.limits()
    loop = loop or config.loop_config()
    run_config: dict[str, Any] = {"production": config.to_dict(), "loop": loop.to_dict(), "budget": asdict(limits)}
    if root is not None:
        run_config["root"] = root.to_dict()
    if diagnosis_from is not None:
        run_config["diagnosis_from"] = diagnosis_from
    if forked_from is not None:
        run_config["forked_from"] = forked_from
    bus = open_run(store, "production", run_config, run_id=run_id, subscribers=subscribers)
    try:
        parts = loop_parts(store, store.runs.get(bus.run_id), bus, planner)
    except BaseException as exc:
        store.runs.update(bus.run_id, status="failed", stop_reason=f"diagnosis failed: {type(exc).__name__}: {exc}")
        raise
    result = run_loop(bus, parts, reviewer, limits, should_stop)
    return summarize_run(store, bus.run_id, result)


__all__ = [
    "Diagnosis", "Iteration", "ProductionConfig", "ProductionRunner", "ProductionSummary", "deployed_model",
    "diagnose", "improve", "load_diagnosis", "loop_parts", "model_traces", "parent_data", "previous_checkpoint_set",
    "qc_checks", "root_pipeline", "summarize_run",
]
