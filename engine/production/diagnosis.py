"""Diagnosis, once per run: T_fail / T_pass from the `traces` view (a person's verdict wins), fixable
vs poison triage, the failure taxonomy, probes through the deployed model, D_parent through the
registry's lineage, and the sets candidates are gated on (failure set and its fix holdout, regression
set, previous checkpoint's set). Snapshotted to artifacts/runs/<run>/diagnosis.json so a resumed or
forked run works on exactly the same sets."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.data.quality import input_hash
from engine.diagnosis.embedders import (
    Embedder,
    make_embedder,
)
from engine.diagnosis.eval_sets import EvalItem, EvalSet, failure_set, fix_holdout, regression_set
from engine.diagnosis.fixability import (
    TriageConfig,
    TriageResult,
    apply_judgment,
    poison_map,
    summarize,
    triage,
)
from engine.diagnosis.probing import ProbeConfig, generate_probes, run_probes
from engine.diagnosis.taxonomy import FailureCluster, Taxonomy, TaxonomyConfig, build_taxonomy
from engine.diagnosis.traces import (
    LabelledText,
    Trace,
    TraceWindow,
    load_window,
    partition,
    pool_from_rows,
    pool_from_traces,
)
from engine.errors import ConfigError
from engine.events import CurationNote, EventBus, TaxonomyBuilt
from engine.production.config import MAX_REGRESSION_ITEMS, ProductionConfig
from engine.search.pipeline import Pipeline
from engine.search.planner import ClusterInfo, Planner, RulePlanner
from engine.tasks import task_type
from store import Store, atomic_write_text


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


def model_traces(store: Store, model: dict[str, Any], task: str | None, window: TraceWindow | None = None
                 ) -> list[Trace]:
    """The deployed model's judged traces (stored under its id or its name), within the run's window."""
    return model_window(store, model, task, window or TraceWindow())[0]


def model_window(store: Store, model: dict[str, Any], task: str | None, window: TraceWindow
                 ) -> tuple[list[Trace], int]:
    return load_window(store, [k for k in dict.fromkeys([model["id"], model["name"]]) if k], task, window)


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



def diagnose(store: Store, bus: EventBus, config: ProductionConfig, planner: Planner | None = None) -> Diagnosis:
    """Diagnose once, snapshot, and emit taxonomy_built plus curation notes."""
    deployed = deployed_model(store, config.model)
    if store.models.deployed() is None:
        store.models.set_status(deployed["id"], "deployed")
        bus.emit(CurationNote(section="Deployment",
                              markdown=f"Nothing was deployed: `{deployed['id']}` is recorded as the deployed model."))
    task = config.task or deployed.get("task")
    window = config.trace_window()
    traces, in_window = model_window(store, deployed, task, window)
    if not traces:
        where = " in the window" if window.since or window.until else ""
        raise ConfigError(f"no traces{where} for model {deployed['id']} ({deployed['name']}): ingest them with "
                          "`pioneer-tui ingest FILE` or `improve --traces FILE`")
    if window != TraceWindow(seed=window.seed):
        span = f"from {window.since or 'the first'} until {window.until or 'the last'}"
        sample = f"; a seeded sample of {len(traces):,}, stratified by verdict" if len(traces) < in_window else ""
        bus.emit(CurationNote(section="Traces", markdown=f"- {in_window:,} traces {span}{sample}"))
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
        bus.emit(TaxonomyBuilt(clusters=(), task=task, n_fail=0, n_pass=len(parts.pass_)))
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
    holdout = set(fix_holdout(failure.items, config.holdout_share, seed=config.seed, at_least=config.min_fix_holdout))
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
        bus.emit(TaxonomyBuilt.from_payload({**taxonomy.to_dict(), "triage": summarize(verdicts)}))
        for section, markdown in _diagnosis_notes(diagnosis, parent_rows, config.full_replay_below):
            bus.emit(CurationNote(section=section, markdown=markdown))
    return diagnosis


def _labels(deployed: dict[str, Any], traces: list[Trace], parent: list[LabelledText], task: str) -> list[str]:
    """The label set a retrained model must be able to emit: the deployed model's plus every gold one."""
    from engine.models.predictor import read_manifest  # torch: loaded only when a run needs it

    found: set[str] = set()
    if deployed.get("artifact_path") and Path(deployed["artifact_path"]).exists():
        found |= set(read_manifest(deployed["artifact_path"]).get("labels") or [])
    for t in traces:
        found |= set(task_type(task).labels(t.gold))
    for p in parent:
        found |= set(task_type(task).labels(p.output))
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
               f"- fix holdout: {len(d.holdout_ids)} of the {corrected} fixable failures never trained on"
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



def adopt_diagnosis(store: Store, bus: EventBus, run_config: dict[str, Any]) -> Diagnosis:
    """Snapshot the source run's diagnosis as this run's, with its taxonomy_built event and a note
    on where the fork came from (engine.production.loop_parts calls this once per forked run)."""
    source = str(run_config["diagnosis_from"])
    diagnosis = source_diagnosis(store, source)
    events = store.runs.events(source)
    taxonomy = next(e.payload for e in events if e.type == "taxonomy_built")
    with store.transaction():
        save_diagnosis(store, bus.run_id, diagnosis)
        bus.emit(TaxonomyBuilt.from_payload(taxonomy))
        bus.emit(CurationNote(section="Fork", markdown=fork_note(store, source, run_config, diagnosis)))
    return diagnosis


def fork_note(store: Store, source: str, run_config: dict[str, Any], d: Diagnosis) -> str:
    """Where the fork came from: the node, what its pipeline changed from the source's root, the sets."""
    node_id = run_config.get("forked_from")
    lines = [f"Forked from node `{node_id}` of run `{source}`." if node_id else f"Search restarted on run "
             f"`{source}`'s diagnosis."]
    if run_config.get("root"):
        root = Pipeline.from_dict(run_config["root"])
        source_root = next((n for n in store.runs.nodes(source) if n["parent_id"] is None), None)
        changes = Pipeline.from_dict(source_root["pipeline"]).diff(root) if source_root else {}
        lines.append("Its pipeline is this run's root; it differs from the source's root in: " + (
            "; ".join(f"`{k}` {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in changes.items()) or "nothing")
            + ".")
    failure, regression = d.failure, d.regression
    lines.append(f"Diagnosis adopted from run `{source}`, not rebuilt: deployed model `{d.deployed_id}`, "
                 f"failure set {len(failure) if failure else 0}, regression set {len(regression) if regression else 0}, "
                 f"previous checkpoint's set {len(d.cross)}, {len(d.taxonomy.clusters) if d.taxonomy else 0} "
                 f"clusters, {len(d.probes)} probe reports.")
    return "\n\n".join(lines)


def source_diagnosis(store: Store, run_id: str) -> Diagnosis:
    try:
        diagnosis = load_diagnosis(store, run_id)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"Fork: run {run_id}'s diagnosis snapshot cannot be read ({type(exc).__name__}: {exc}); "
                          "it cannot be forked") from exc
    if diagnosis is None:
        raise ConfigError(f"Fork: run {run_id} was never diagnosed (no taxonomy_built event); start a new run")
    return diagnosis
