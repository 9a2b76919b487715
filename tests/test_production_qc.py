"""The production curriculum's quality controls: the caps thin hard negatives, never gold, and never the
replayed pool when the pipeline replays all of it (thinning the parent's distribution is forgetting)."""

from __future__ import annotations

from engine.data.quality import run_quality_controls
from engine.production.runner import curriculum_qc
from engine.search.pipeline import DatasetSpec


def rows() -> list[dict]:
    """A 40-intent replay pool (6 utterances each) and one gold correction for a rare intent: the rarest
    label has one row, so a 3x label-ratio cap allows three rows per label."""
    replay = [{"input": f"request {i} about topic {lab} please", "output": f"intent_{lab}", "slice": "replay"}
              for lab in range(40) for i in range(6)]
    hard = [{"input": f"close call {i} near topic {lab}", "output": f"intent_{lab}", "slice": "hard_negative"}
            for lab in range(40) for i in range(4)]
    gold = [{"input": "a rare request nobody makes", "output": "intent_rare", "slice": "gold"}]
    return replay + hard + gold


def kept_slices(spec: DatasetSpec) -> dict[str, int]:
    kept, _ = run_quality_controls(rows(), "classification", config=curriculum_qc(spec, seed=0))
    return {part: sum(1 for r in kept if r["slice"] == part) for part in ("gold", "hard_negative", "replay")}


def test_whole_pool_replay_survives_the_label_ratio_cap():
    kept = kept_slices(DatasetSpec(mode="production", gold_fraction=0.5, hard_negative_fraction=0.3, replay_fraction=0.2, replay_scope="all"))
    assert kept["replay"] == 240 and kept["gold"] == 1
    assert kept["hard_negative"] < 160  # the cap still thins what the curriculum adds


def test_a_replay_band_is_capped_like_the_rest():
    kept = kept_slices(DatasetSpec(mode="production", gold_fraction=0.5, hard_negative_fraction=0.3, replay_fraction=0.2, replay_scope="share"))
    assert kept["replay"] < 240 and kept["gold"] == 1
