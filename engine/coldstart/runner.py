"""The cold-start node runner: D_cold -> train from the base model -> score on E.

Before a node trains, its curriculum (including a reviewer's edit) is checked against E's input
hashes and E against its recorded content hash, so E is never trained on and every node is scored
on the same E. A decoder is scored with the generation budget the task's answers need.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.coldstart.curriculum import build_cold_curriculum
from engine.coldstart.eval_sets import check_disjoint, check_unchanged, normalise_output, score_held_out
from engine.coldstart.setup import DATASET_TEACHER, ColdStartConfig, ColdStartSetup, make_embedder
from engine.curriculum import to_examples
from engine.data.quality import qc_checks
from engine.diagnosis.embedders import Embedder
from engine.errors import LeakageError
from engine.eval.metrics import score as score_metric
from engine.models.base import ProgressCallback, head_init
from engine.records import Example
from engine.search.graph import Node
from engine.search.loop import NodeEvaluation, NodeFailed
from engine.search.pipeline import Strategy
from engine.search.planner import FailureSummary
from engine.tasks import task_type
from store import Store, atomic_write_text

if TYPE_CHECKING:
    from engine.models.predictor import CachedPredictor

TRAIN_SCORE_ROWS = {"encoder": 300, "decoder": 16}


class ColdStartRunner:
    """D_cold -> train from the base -> score on E."""

    def __init__(self, store: Store, run_id: str, setup: ColdStartSetup, config: ColdStartConfig,
                 embedder: Embedder | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.setup = setup
        self.config = config
        self.analysis = setup.analysis
        self.eval_set = setup.eval_set
        check_unchanged(self.eval_set, setup.eval_hash)
        self.pool = [Example(r["input"], task_type(self.analysis.task).parse(r["output"], f"pool row {r['id']}"), r["id"])
                     for r in store.datasets.rows(setup.pool_version)]
        self.held_inputs = self.eval_set.inputs()
        self.embedder = embedder or make_embedder(config.embedder, setup.base, setup.family,
                                                  [*(ex.input for ex in self.pool), *self.held_inputs], config.seed)
        self.baseline_id = f"{run_id}.baseline"

    # -- NodeRunner --------------------------------------------------------------------------
    def labels(self) -> tuple[str, ...]:
        return tuple(self.analysis.labels)

    def baseline(self) -> str:
        if self.store.models.get(self.baseline_id) is None:
            best = self.setup.baselines.best
            self.store.models.register(
                base_model=self.setup.base, artifact_path=None, task=self.analysis.task, method=best.name,
                hyperparameters={"baseline": best.name, "description": best.description},
                metrics={"score": best.score, **best.metrics}, name=f"{self.run_id} baseline ({best.name})",
                model_id=self.baseline_id, wall_time_s=best.seconds)
        return self.baseline_id

    def build_curriculum(self, node: Node) -> str:
        spec, strategy = node.pipeline.data, node.pipeline.strategy
        built = build_cold_curriculum(self.pool, self.analysis.task, spec, embedder=self.embedder,
                                      held_out=self.held_inputs, seed=self.config.seed,
                                      max_rows=self.config.max_train_rows, targets=self._targets(node),
                                      labels=self.analysis.labels)
        rows = built.rows
        if strategy.supervision == "chain_of_thought":
            rows = self._with_reasoning(rows, strategy)
        if not rows:
            raise NodeFailed("the curriculum is empty after the quality controls")
        check_disjoint(self.eval_set, rows)
        qc = qc_checks(built.qc, built.qc_config)
        qc["bands"] = {"gold": {"value": round(built.composition()["gold"] / len(rows), 4),
                                "target": spec.gold_fraction},
                       "hard_negative": {"value": round(built.composition()["hard_negative"] / len(rows), 4),
                                         "target": spec.hard_negative_fraction}}
        qc["held_out_overlap"] = {"passed": True, "value": 0, "limit": 0, "eval_hash": self.setup.eval_hash[:16]}
        qc["hard_negative_shortfall"] = sum(c.get("shortfall", 0) for c in built.built.per_cluster.values())
        if built.targeted:
            qc["targeted"] = dict(built.targeted)
        return self.store.datasets.create(
            rows, name=f"{node.id} D_cold", task=self.analysis.task, parent_id=self.setup.pool_version,
            run_id=self.run_id, composition=built.composition(), qc_report=qc,
            note=f"D_cold for node {node.id}: {len(rows)} rows after quality controls ({built.qc.n_in} built from "
                 f"{built.n_pool} pool rows); supervision {strategy.supervision}")

    def train(self, node: Node, dataset_version_id: str, model_id: str, progress: ProgressCallback,
              should_stop: Callable[[], bool]) -> None:
        rows = self.store.datasets.rows(dataset_version_id)
        try:
            check_unchanged(self.eval_set, self.setup.eval_hash)
            check_disjoint(self.eval_set, rows, where=f"dataset version {dataset_version_id}")
        except LeakageError as exc:
            raise NodeFailed(str(exc)) from None
        examples = to_examples(rows, self.setup.train_task)
        config = node.pipeline.hyperparams
        options: dict[str, Any] = {}
        if self.setup.family == "encoder":
            options = {"labels": tuple(self.analysis.labels) or None, "fallback_label": self.analysis.negative_label,
                       "num_threads": self.config.trainer_threads,
                       "head_init": head_init(self.setup.train_task, config.method, self.config.probe_head)}
        from engine.models.factory import train_and_register, trainer_for  # torch: only when training

        trainer = trainer_for(self.setup.train_task, config.base_model, **options)
        train_and_register(self.store, examples, config, dataset_version_id=dataset_version_id, progress=progress,
                           should_stop=should_stop, trainer=trainer, model_id=model_id,
                           name=f"{self.run_id} {node.id.rsplit('.', 1)[-1]}")

    def evaluate(self, node: Node, model_id: str) -> NodeEvaluation:
        if model_id == self.baseline_id:
            return self._baseline_evaluation()
        model = self.store.models.get(model_id)
        if model is None or not model.get("artifact_path"):
            raise NodeFailed(f"model {model_id} has no artifact to evaluate")
        started = time.perf_counter()
        predictor = self._predictor(model["artifact_path"], node)
        threshold = node.pipeline.hyperparams.threshold if self.setup.family == "encoder" else None
        preds = predictor.predict(self.held_inputs, threshold)
        scored = score_held_out(self.eval_set, [p.output for p in preds], self.analysis)
        train_score = self._train_score(predictor, node, threshold)
        metrics = {**scored.metrics, "method": node.pipeline.hyperparams.method,
                   "eval_seconds": round(time.perf_counter() - started, 2),
                   **({"train.score": round(train_score, 6)} if train_score is not None else {}),
                   **({"threshold": threshold} if threshold is not None else {})}
        rows = self._rows(scored.outputs, [p.confidence for p in preds], scored.correct)
        failures, patterns = self._failures(scored.outputs, scored.correct, train_score, scored.score)
        return NodeEvaluation(score=float(scored.score), metrics=metrics, examples=rows, failures=failures,
                              patterns=patterns)

    # -- internals ----------------------------------------------------------------------------
    def _predictor(self, artifact: str, node: Node) -> CachedPredictor:
        """The model behind the prediction cache; a decoder generates at most what the task's answers
        need (worked reasoning gets 256 tokens), like the baseline did."""
        from engine.models.predictor import CachedPredictor, model_key

        if self.setup.family == "encoder":
            return CachedPredictor.for_artifact(artifact, self.store.cache)
        from engine.models.decoder import load_decoder_predictor

        budget = 256 if node.pipeline.strategy.supervision == "chain_of_thought" else self.setup.max_new_tokens
        inner = load_decoder_predictor(artifact, max_new_tokens=budget)
        return CachedPredictor(inner, self.store.cache, model_key(artifact, inner))

    def _baseline_evaluation(self) -> NodeEvaluation:
        best = self.setup.baselines.best
        metrics = {**best.metrics, "baseline_name": best.name,
                   "baselines": {r.name: round(r.score, 6) for r in self.setup.baselines.results}}
        kind = task_type(self.analysis.task)
        outputs = [kind.parse(o, "baseline output") if kind.spans else o for o in best.outputs]
        rows = self._rows(outputs, best.confidences, best.correct)
        failures, patterns = self._failures(outputs, best.correct, None, best.score)
        return NodeEvaluation(score=float(best.score), metrics=metrics, examples=rows, failures=failures,
                              patterns=patterns, promotable=False)

    def _rows(self, outputs: Sequence[Any], confidences: Sequence[float], correct: Sequence[bool]
              ) -> tuple[dict[str, Any], ...]:
        kind = task_type(self.analysis.task)
        return tuple({"eval_set": f"E_{item.subset}", "example_id": item.id, "input": item.input,
                      "expected": json.dumps(item.expected, ensure_ascii=False),
                      "prediction": json.dumps(kind.to_json(out),
                                               ensure_ascii=False, default=str),
                      "correct": int(ok), "score": None, "confidence": float(conf)}
                     for item, out, conf, ok in zip(self.eval_set.items, outputs, confidences, correct, strict=True))

    def _train_score(self, predictor: Any, node: Node, threshold: float | None) -> float | None:
        """The task's metric on a sample of the node's own curriculum: against the held-out score, the
        planner's overfitting signal."""
        if not node.dataset_version_id:
            return None
        rows = self.store.datasets.rows(node.dataset_version_id)
        limit = TRAIN_SCORE_ROWS[self.setup.family]
        if len(rows) > limit:
            rows = [rows[i] for i in sorted(random.Random(self.config.seed).sample(range(len(rows)), limit))]
        if not rows or self.analysis.metric == "pass@1":
            return None
        preds = predictor.predict([r["input"] for r in rows], threshold)
        expected = [task_type(self.analysis.task).parse(_answer(r["output"]), "curriculum row") for r in rows]
        outputs = [normalise_output(p.output, self.analysis) for p in preds]
        return score_metric(self.analysis.task, self.analysis.metric, expected, outputs).value

    def _failures(self, outputs: Sequence[Any], correct: Sequence[bool], train_score: float | None,
                  score: float) -> tuple[FailureSummary, dict[str, int]]:
        task, negative = self.analysis.task, self.analysis.negative_label
        kind = task_type(task)
        pairs: Counter = Counter()
        patterns: Counter = Counter()
        fp = fn = 0
        for item, out, ok in zip(self.eval_set.items, outputs, correct, strict=True):
            if ok:
                continue
            for pattern, _ in pattern_keys(task, item.expected, out, item.subset):
                patterns[pattern] += 1
            if kind.single_label:
                pairs[(str(item.expected), str(out))] += 1
                if negative is not None and item.expected != negative and out in (negative, None):
                    fn += 1
                elif negative is not None and item.expected == negative:
                    fp += 1
            elif kind.spans:
                gold = {(s["start"], s["end"], s["label"]) for s in item.expected}
                pred = {(s.start, s.end, s.label) for s in out or ()}
                fp, fn = fp + len(pred - gold), fn + len(gold - pred)
        ranked = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        summary = FailureSummary(confusion_pairs=tuple((e, p, n) for (e, p), n in ranked[:10]), false_positives=fp,
                                 false_negatives=fn, train_score=train_score, eval_score=score,
                                 patterns=tuple(sorted(patterns.items())[:50]))
        top = dict(sorted(patterns.items(), key=lambda kv: (-kv[1], kv[0]))[:20])
        return summary, dict(sorted(top.items()))

    def _targets(self, node: Node) -> dict[str, tuple[Any, list[str]]]:
        """Each failure pattern of the nearest evaluated ancestor: the answer it needed, and its inputs."""
        if not node.pipeline.data.targeted or node.parent_id is None:
            return {}
        out: dict[str, tuple[Any, list[str]]] = {}
        for row in self.store.runs.evaluations(node.parent_id):
            if row["correct"]:
                continue
            expected, prediction = json.loads(row["expected"]), json.loads(row["prediction"])
            subset = str(row["eval_set"]).removeprefix("E_")
            for pattern, wanted in pattern_keys(self.analysis.task, expected, prediction, subset):
                out.setdefault(pattern, (wanted, []))[1].append(row["input"])
        return out

    def _with_reasoning(self, rows: list[dict[str, Any]], strategy: Strategy) -> list[dict[str, Any]]:
        """Chain-of-thought targets 'reasoning\\n#### answer' from the data's rationales, or the teacher's."""
        out, missing = [], []
        for r in rows:
            rationale = self.setup.rationales.get(str(r.get("source")))
            if rationale:
                out.append({**r, "output": f"{rationale}\n#### {r['output']}"})
            else:
                missing.append(r)
        if missing and strategy.teacher and strategy.teacher != DATASET_TEACHER:
            out += teacher_rationales(missing, strategy.teacher, self.config.llm_options, self._rationale_cache())
        if not out:
            raise NodeFailed("chain-of-thought supervision needs rationales: the data has none and no teacher LLM "
                             "is configured (--llm MODEL)")
        return out

    def _rationale_cache(self) -> Path:
        return self.store.artifacts / "runs" / self.run_id / "rationales.json"


def _answer(value: Any) -> Any:
    return value.rsplit("####", 1)[1].strip() if isinstance(value, str) and "####" in value else value


def pattern_keys(task: str, expected: Any, prediction: Any, subset: str) -> list[tuple[str, Any]]:
    """Failure patterns of one wrong held-out answer, each with the answer a targeted example must have:
    'expected->predicted' (classification), 'missed:<type>' / 'spurious:<type>' (NER), the subset
    (generation)."""
    kind = task_type(task)
    if kind.single_label:
        return [(f"{expected}->{prediction}", expected)]
    if kind.spans:
        gold = {s["label"] if isinstance(s, Mapping) else s.label for s in expected or ()}
        pred = {s["label"] if isinstance(s, Mapping) else s.label for s in prediction or ()}
        return [(f"missed:{t}", t) for t in sorted(gold)] + [(f"spurious:{t}", t) for t in sorted(pred - gold)]
    return [(f"E_{subset}", None)]


def teacher_rationales(rows: Sequence[Mapping[str, Any]], model: str, options: Mapping[str, Any], cache: Path,
                       limit: int = 200) -> list[dict[str, Any]]:
    """Rationales written by a teacher LLM for rows that have none (cached per input, so a resumed run
    asks nothing twice); a row whose rationale does not end in its answer is dropped."""
    from engine.search.llm_planner import default_completion

    known: dict[str, str] = json.loads(cache.read_text(encoding="utf-8")) if cache.exists() else {}
    completion = default_completion()
    out = []
    for r in list(rows)[:limit]:
        key = r["input"]
        if key not in known:
            prompt = (f"Question: {r['input']}\nCorrect answer: {r['output']}\nWrite the short step-by-step reasoning "
                      "that leads to this answer. Do not state the final answer on its own line.")
            try:
                response = completion(model=model, messages=[{"role": "user", "content": prompt}], **dict(options))
                known[key] = (response.choices[0].message.content or "").strip()
            except Exception:  # noqa: BLE001 - a failed call leaves this row without a rationale
                continue
        if known[key]:
            out.append({**r, "output": f"{known[key]}\n#### {r['output']}"})
    atomic_write_text(cache, json.dumps(known, ensure_ascii=False))
    return out
