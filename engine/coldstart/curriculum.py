"""D_cold: the cold-start curriculum, gold + hard negatives at about 65:35, under production mode's
quality controls.

Gold is a label-stratified sample of the training pool (gold_fraction of the rows used). Hard
negatives are mined by production's 2-for-1 rule (engine.curriculum in cold_start mode): for
each gold example, up to two of the most similar remaining pool inputs whose answer differs, across
the focus label pairs when the search names some (else across any label). Targeted examples (the
policy's surgical augmentation) are pool inputs nearest to the held-out failures of a pattern that
carry the answer those failures should have had. Inputs of the held-out set are never mined, and
the quality controls drop any that slipped in.

Unlike production, where gold rows are the failures being fixed and are never dropped by the caps,
here gold is a random sample of plentiful data and the hard negatives are the scarce boundary
examples, so the caps (label ratio, NER surface repeats) drop gold rows first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine import curriculum as cur
from engine.coldstart.eval_sets import stratified_sample
from engine.data.quality import QCConfig, input_hash, run_quality_controls
from engine.diagnosis.embedders import Embedder
from engine.diagnosis.taxonomy import FailureCluster, Taxonomy
from engine.diagnosis.traces import LabelledText, Trace
from engine.records import Example
from engine.search.pipeline import DatasetSpec
from engine.tasks import task_type

QC_PROTECT = ("hard_negative", "targeted")


@dataclass
class ColdCurriculum:
    rows: list[dict[str, Any]]
    qc: Any
    qc_config: QCConfig
    built: cur.Curriculum
    targeted: dict[str, int]
    n_pool: int

    def composition(self) -> dict[str, int]:
        counts = Counter(r["slice"] for r in self.rows)
        return {"gold": counts.get("gold", 0), "hard_negative": counts.get("hard_negative", 0),
                **({"targeted": counts["targeted"]} if counts.get("targeted") else {})}


def _cluster(cid: str, name: str, gold: Sequence[Example], labels: Sequence[str]) -> FailureCluster:
    return FailureCluster(
        id=cid, name=name, kind="cold_start", trace_ids=tuple(str(ex.id) for ex in gold), labels=tuple(labels),
        error_mode="boundary", precision_share=1.0, fixability="fixable",
        fixability_reason="cold start: every gold example is learnable", characteristics={}, examples=[])


def build_cold_curriculum(
    pool: Sequence[Example], task: str, spec: DatasetSpec, *, embedder: Embedder | None, held_out: Sequence[str],
    seed: int = 0, max_rows: int | None = None, targets: Mapping[str, tuple[Any, Sequence[str]]] | None = None,
    labels: Sequence[str] = (),
) -> ColdCurriculum:
    """D_cold for one node. `targets` maps a failure pattern to (the answer its failures should have
    had, their held-out inputs); `spec.targeted` says how many examples each pattern gets."""
    used = list(pool)
    if max_rows is not None and len(used) > max_rows:
        used = stratified_sample(used, max_rows, task, seed)
    n_gold = max(1, round(spec.gold_fraction * len(used)))
    gold = stratified_sample(used, n_gold, task, seed)
    gold_ids = {id(ex) for ex in gold}
    rest = [ex for ex in used if id(ex) not in gold_ids]
    clusters, members = _clusters(gold, task, spec, labels)
    traces = [Trace(str(ex.id), ex.input, None, ex.output, "fail", task) for ex in gold]
    taxonomy = Taxonomy(task, [_cluster(cid, name, members[cid], labs) for cid, name, labs in clusters],
                        len(gold), 0, {})
    config = cur.CurriculumConfig(mode="cold_start", cold_start_ratio=(spec.gold_fraction,
                                                                       spec.hard_negative_fraction), seed=seed)
    candidates = [LabelledText(str(ex.id), ex.input, ex.output, "pool") for ex in rest]
    built = cur.build_curriculum(taxonomy, traces, pool=candidates, embedder=embedder, config=config,
                                 exclude_inputs=held_out)
    rows = list(built.rows)
    targeted = _targeted(rows, rest, task, spec, targets or {}, embedder)
    rows += targeted
    c = spec.constraints
    qc_config = QCConfig(max_label_ratio=c.max_label_ratio, max_surface_repeats=c.max_surface_repeats,
                         patterns_per_label=(c.min_patterns_per_label, c.max_patterns_per_label),
                         near_dup_jaccard=c.near_dup_jaccard, protect_slices=QC_PROTECT, seed=seed)
    kept, report = run_quality_controls(rows, task, target_inputs=held_out, protected={"eval": held_out},
                                        config=qc_config)
    return ColdCurriculum(cur.with_row_ids(kept), report, qc_config, built, Counter(r["cluster"] for r in targeted
                                                                              if r["slice"] == "targeted"), len(used))


def _clusters(gold: Sequence[Example], task: str, spec: DatasetSpec, labels: Sequence[str]
              ) -> tuple[list[tuple[str, str, tuple[str, ...]]], dict[str, list[Example]]]:
    """One cluster per focus pair (its hard negatives come from across that pair) and one for the rest
    (any different answer). For single-label tasks (classification) the rest cluster's labels are the
    whole label set; focus pairs are pairs of such labels."""
    single_label = task_type(task).single_label
    members: dict[str, list[Example]] = {}
    clusters: list[tuple[str, str, tuple[str, ...]]] = []
    taken: set[int] = set()
    if single_label:
        for k, (a, b) in enumerate(spec.focus_pairs):
            chosen = [ex for ex in gold if ex.output in (a, b) and id(ex) not in taken]
            if chosen:
                cid = f"focus{k}"
                clusters.append((cid, f"{a} vs {b}", (a, b)))
                members[cid] = chosen
                taken |= {id(ex) for ex in chosen}
    rest = [ex for ex in gold if id(ex) not in taken]
    if rest:
        everything = tuple(labels) or tuple(sorted({str(ex.output) for ex in gold})) if single_label else ()
        clusters.append(("all", "every label", everything))
        members["all"] = rest
    return clusters, members


def _targeted(rows: list[dict[str, Any]], rest: Sequence[Example], task: str, spec: DatasetSpec,
              targets: Mapping[str, tuple[Any, Sequence[str]]], embedder: Embedder | None) -> list[dict[str, Any]]:
    """Surgical augmentation: per pattern, the n unused pool inputs nearest its failing held-out inputs
    whose answer is the one those failures needed."""
    if not spec.targeted or embedder is None:
        return []
    taken = {input_hash(r["input"]) for r in rows}
    out: list[dict[str, Any]] = []
    for pattern, n in spec.targeted:
        if pattern not in targets:
            continue
        wanted, failing = targets[pattern]
        candidates = [ex for ex in rest if input_hash(ex.input) not in taken and _matches(ex, wanted, task)]
        if not candidates or not failing:
            continue
        sims = (embedder.embed([ex.input for ex in candidates]) @ embedder.embed(list(failing)).T).max(axis=1)
        for j in np.argsort(-sims, kind="stable")[:n]:
            ex = candidates[int(j)]
            taken.add(input_hash(ex.input))
            out.append({"input": ex.input, "output": task_type(task).to_json(ex.output), "slice": "targeted",
                        "source": str(ex.id), "cluster": pattern})
    return out


def _matches(example: Example, wanted: Any, task: str) -> bool:
    """Whether the example carries the answer a pattern's failures needed: that label (the class, or one
    of its entity types); any example of a task without labels."""
    kind = task_type(task)
    return not kind.labelled or wanted in kind.labels(example.output)
