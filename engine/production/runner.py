"""The production NodeRunner: curriculum (gold + hard negatives + replay under the quality controls)
-> train from the BASE model -> score on the failure set, its fix holdout, the regression set and the
previous checkpoint's set, with the traffic rule's evidence."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from engine import curriculum as cur
from engine.data.quality import QCConfig, input_hash, qc_checks, run_quality_controls
from engine.diagnosis.embedders import (
    make_embedder,
)
from engine.diagnosis.eval_sets import EvalItem
from engine.diagnosis.fixability import (
    label_error_flags,
)
from engine.diagnosis.taxonomy import Taxonomy
from engine.diagnosis.traces import pool_from_rows, pool_from_traces
from engine.errors import ConfigError
from engine.eval.metrics import example_correct
from engine.eval.regressions import compare
from engine.models.base import NEGATIVE_LABELS, ProgressCallback, TrainConfig, head_init, write_manifest
from engine.models.merging import merge_blocker, merge_with_deployed
from engine.production.config import ProductionConfig
from engine.production.diagnosis import (
    Diagnosis,
    model_traces,
)
from engine.records import Example
from engine.search.gates import TrafficEvidence
from engine.search.graph import Node
from engine.search.loop import (
    NodeEvaluation,
    NodeFailed,
)
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.planner import INERT, FailureSummary
from engine.tasks import task_type
from store import Store
from store.artifacts import atomic_write_dir


@dataclasses.dataclass(frozen=True)
class Churn:
    """What retraining the deployed model's own recipe and data with another seed broke: `broken` of the
    `guarded` items (the regression set and the previous checkpoint's; ProductionRunner.retraining_churn)."""

    model_id: str
    seed: int
    rows: int
    broken: int
    guarded: int

    @property
    def rate(self) -> float:
        return round(self.broken / self.guarded, 6) if self.guarded else 0.0


def curriculum_qc(spec: DatasetSpec, seed: int) -> QCConfig:
    """The quality controls for a pipeline's curriculum. The caps never drop gold, and under whole-pool
    replay never drop replay either: that pool is the parent's own distribution, and thinning it is
    forgetting. (On an AdaptFT CLINC150 stage the label-ratio cap, 3x the rarest label of the curriculum,
    dropped 703 of 1,174 rows, 63% of the pool, and both candidates broke 16-18% of held-out passes.)"""
    c = spec.constraints
    return QCConfig(max_label_ratio=c.max_label_ratio, max_surface_repeats=c.max_surface_repeats,
                    patterns_per_label=(c.min_patterns_per_label, c.max_patterns_per_label),
                    near_dup_jaccard=c.near_dup_jaccard, seed=seed,
                    protect_slices=("gold", "replay") if spec.replay_scope == "all" else ("gold",))


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
                                      replay_all=spec.replay_scope == "all", balance=spec.balance,
                                      seed=self.config.seed)
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
        qc_config = curriculum_qc(spec, self.config.seed)
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
        config, share = node.pipeline.hyperparams, node.pipeline.strategy.merge_deployed
        twin = self._trained_twin(node.pipeline, dataset_version_id)
        if twin is not None:
            self._reuse(twin, config, model_id, dataset_version_id)
            return
        if share:  # the average starts from the candidate trained without it (reused when there is one)
            deployed = self._mergeable_deployed(config)
            plain = node.pipeline.modify({"strategy.merge_deployed": 0.0})
            twin = self._trained_twin(plain, dataset_version_id)
            if twin is not None:
                self._reuse(twin, config, model_id, dataset_version_id)
            else:
                self._train(node, dataset_version_id, model_id, progress, should_stop)
            try:
                merge_with_deployed(Path(self.store.models.get(model_id)["artifact_path"]),
                                    Path(deployed["artifact_path"]), share, deployed["id"])
            except ConfigError as exc:
                raise NodeFailed(str(exc)) from None
            return
        self._train(node, dataset_version_id, model_id, progress, should_stop)

    def _train(self, node: Node, dataset_version_id: str, model_id: str, progress: ProgressCallback,
               should_stop: Callable[[], bool]) -> None:
        from engine.models.factory import train_and_register

        config = node.pipeline.hyperparams
        rows = self.store.datasets.rows(dataset_version_id)
        examples = cur.to_examples(rows, self.task)
        spec = node.pipeline.data
        if spec.balance:  # the composition holds as loss shares (engine.curriculum)
            shares = {"gold": spec.gold_fraction, "hard_negative": spec.hard_negative_fraction,
                      "replay": spec.replay_fraction}
            examples = [replace(ex, weight=w) for ex, w in zip(examples, cur.slice_weights(rows, shares), strict=True)]
        strategy = node.pipeline.strategy
        if strategy.distillation == "focal":
            examples = self._with_teacher(examples, [r.get("slice") == "replay" for r in rows])
        train_and_register(self.store, examples, config, parent_id=self.d.deployed_id,
                           dataset_version_id=dataset_version_id, progress=progress, should_stop=should_stop,
                           trainer=self._trainer(config, strategy.distill_weight), model_id=model_id)

    def _trainer(self, config: TrainConfig, distill_weight: float = 1.0) -> Any:
        from engine.models.factory import trainer_for

        options: dict[str, Any] = {}
        if task_type(self.task).backend == "encoder":
            options = {"labels": tuple(self.d.labels), "num_threads": self.config.trainer_threads,
                       "head_init": head_init(self.task, config.method, self.config.probe_head),
                       "distill_weight": distill_weight}
        return trainer_for(self.task, config.base_model, **options)

    def retraining_churn(self, root: Pipeline) -> Churn | None:
        """Retrain the deployed model's recipe (the root pipeline's) on its own training data with the
        next seed and count what that retrain breaks on the two sets the budget guards: regression-set
        passes, and previous-checkpoint items that checkpoint got right (over each set's size, as the
        gates count them). Pooled, because churn belongs to the recipe, not to a set, and the sets are
        small. None when the deployed model has no recorded training data."""
        from engine.models.factory import train_and_register
        from engine.models.predictor import CachedPredictor

        guarded = [(i.input, i.expected, True) for i in self.d.regression.items] + \
            [(r["input"], r["expected"], bool(r["correct"])) for r in self.d.cross]
        if not self.d.parent_version or not guarded:
            return None
        seed = int((self.deployed.get("hyperparameters") or {}).get("seed") or 0) + 1
        config = replace(root.hyperparams, seed=seed)
        rows = self.store.datasets.rows(self.d.parent_version)
        model = train_and_register(self.store, cur.to_examples(rows, self.task), config,
                                   parent_id=self.d.deployed_id, dataset_version_id=self.d.parent_version,
                                   trainer=self._trainer(config), model_id=f"{self.run_id}.churn",
                                   name=f"{self.run_id}.churn")
        predictor = CachedPredictor.for_artifact(model.artifact_dir, self.store.cache)
        predicted = predictor.predict([text for text, _, _ in guarded], config.threshold)
        broken = sum(was_right and not example_correct(self.task, root.strategy.eval_method, expected, p.output)
                     for (_, expected, was_right), p in zip(guarded, predicted, strict=True))
        return Churn(model.model_id, seed, len(rows), broken, len(guarded))

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
        if not task_type(self.task).single_label:
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

    def _mergeable_deployed(self, config: TrainConfig) -> dict[str, Any]:
        """The deployed model's registry row, when a candidate trained with `config` can be averaged with it."""
        from engine.models.predictor import read_manifest

        deployed = self.store.models.get(self.d.deployed_id)
        if deployed is None or not deployed.get("artifact_path") or not Path(deployed["artifact_path"]).is_dir():
            raise NodeFailed(f"averaging with the deployed model needs its weights; {self.d.deployed_id} has none")
        found = read_manifest(deployed["artifact_path"])
        planned = {"backend": task_type(self.task).backend, "task": self.task, "method": config.method,
                   "base_model": config.base_model, "labels": found.get("labels")}  # labels: checked once trained
        if (why := merge_blocker(planned, found)) is not None:
            raise NodeFailed(f"cannot average with the deployed model {self.d.deployed_id}: {why}")
        return deployed

    def _trained_twin(self, pipeline: Pipeline, dataset_version_id: str) -> dict[str, Any] | None:
        """A model of this run trained on the same rows with the same recipe up to the threshold (applied
        at inference) and the fields its method ignores, and the same distillation: training again would
        give the same weights, so a threshold sweep or an inert move costs an evaluation, not a training run."""
        digest = (self.store.datasets.get(dataset_version_id) or {}).get("content_hash")
        want = _training_key(pipeline.hyperparams.to_dict())
        extras = _beyond_rows(pipeline.to_dict())
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
        kind = task_type(self.task)
        errors = [*((tid, fixable[tid].expected, outputs.get(tid)) for tid in failing), *broken]
        for where, expected, output in errors:
            e = kind.errors(kind.parse(expected, f"expected for {where}"), kind.parse(output, f"prediction for {where}"),
                            negative)
            fp, fn = fp + e.false_positives, fn + e.false_negatives
            pairs.update(e.confusions)
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
            kind, targets = task_type(self.task), [t.correction for t in failing]
            candidates = [p for p in pool if input_hash(p.input) not in taken and kind.resembles(p.output, targets)]
            if not candidates:
                continue
            sims = (self.embedder.embed([p.input for p in candidates])
                    @ self.embedder.embed([t.input for t in failing]).T).max(axis=1)
            for j in np.argsort(-sims, kind="stable")[:n]:
                p = candidates[int(j)]
                taken.add(input_hash(p.input))
                out.append({"input": p.input, "output": task_type(self.task).to_json(p.output), "slice": "gold",
                            "source": f"targeted:{p.id}", "cluster": cid})
        return out


def _row(eval_set: str, example_id: str, text: str, expected: Any, prediction: Any, correct: bool | None,
         task: str) -> dict[str, Any]:
    output = getattr(prediction, "output", prediction)
    confidence = getattr(prediction, "confidence", None)
    return {"eval_set": eval_set, "example_id": example_id, "input": text,
            "expected": json.dumps(expected, ensure_ascii=False),
            "prediction": json.dumps(task_type(task).to_json(output) if isinstance(output, tuple) else output,
                                     ensure_ascii=False, default=str),
            "correct": None if correct is None else int(correct), "score": None,
            "confidence": None if confidence is None else float(confidence)}


def _beyond_rows(pipeline: dict[str, Any]) -> tuple[Any, ...]:
    """What a training run reads from its pipeline besides the rows and hyperparameters: the
    distillation, the slice shares that weight the loss when the slices are balanced, and the average
    with the deployed model."""
    strategy, data = pipeline.get("strategy") or {}, pipeline.get("data") or {}
    shares = tuple(data.get(k) for k in ("gold_fraction", "hard_negative_fraction", "replay_fraction")) \
        if data.get("balance") else ()
    return (strategy.get("distillation", "none"), strategy.get("distill_weight", 1.0), shares,
            strategy.get("merge_deployed", 0.0))


def _training_key(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """What a training run reads from its hyperparameters (not the threshold, not the method's inert fields)."""
    ignored = {"threshold", *INERT.get(hyperparameters.get("method"), ())}
    return {k: v for k, v in hyperparameters.items() if k not in ignored}


def _band(center: float, width: float = 0.05) -> tuple[float, float]:
    return max(0.01, center - width), min(0.99, center + width)


def _mean(values: Sequence[bool | float]) -> float:
    return sum(float(v) for v in values) / len(values) if values else 0.0
