"""Cold start's planning: the root recipe, the first iteration's portfolio, and a wrapper around the
search engine's planner that keeps every iteration at >= 2 configurations that can make a difference.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.coldstart.analysis import system_prompt_for
from engine.coldstart.setup import MODE, ColdStartConfig, ColdStartSetup
from engine.models.base import TrainConfig
from engine.search.pipeline import DatasetSpec, Pipeline, Strategy
from engine.search.planner import Planner, PlannerStep, Proposal, RulePlanner, SearchState

# Fields whose change does nothing for a method: a proposal changing only these is not trained.
_INERT = {"linear_probe": {"learning_rate", "head_learning_rate", "batch_size", "epochs", "warmup_ratio",
                           "lora_rank", "lora_alpha", "lora_dropout"},
          "full": {"lora_rank", "lora_alpha", "lora_dropout"}}


def root_pipeline(setup: ColdStartSetup, config: ColdStartConfig) -> Pipeline:
    """The recipe the first configurations derive from (the root itself is the baseline, not trained)."""
    if setup.family == "encoder":
        hyper: dict[str, Any] = {"method": "lora", "learning_rate": 5e-4, "head_learning_rate": 2e-3, "epochs": 3.0,
                                 "batch_size": 16, "max_length": 128, "lora_rank": 8, "lora_alpha": 16}
    else:
        hyper = {"method": "lora", "learning_rate": 1e-3, "epochs": 2.0, "batch_size": 8, "max_length": 256,
                 "lora_rank": 8, "lora_alpha": 16, "system_prompt": setup.system_prompt}
    hyper.update(config.hyperparams)
    hyper.update(task=setup.train_task, base_model=setup.base, seed=config.seed)
    return Pipeline(DatasetSpec(mode=MODE, source_versions=(setup.pool_version,)), TrainConfig(**hyper),
                    Strategy(eval_method=setup.analysis.metric))


def portfolio(setup: ColdStartSetup, root: Pipeline) -> list[tuple[dict[str, Any], str]]:
    """The first iteration's configurations, cheapest first."""
    if setup.family == "encoder":
        return [({"hyperparams.method": "linear_probe"},
                 "frozen encoder + linear head: the strong, cheap CPU baseline of the design notes"),
                ({"hyperparams.method": "full", "hyperparams.learning_rate": 5e-5},
                 "full fine-tuning (lr 5e-5, head lr 2e-3)"),
                ({"hyperparams.learning_rate": 1e-3}, "LoRA at a higher learning rate (1e-3)")]
    lr = root.hyperparams.learning_rate * 2
    moves = [({"hyperparams.learning_rate": lr}, f"LoRA at lr {lr:g} with the task's system prompt"),
             ({"hyperparams.learning_rate": lr, "hyperparams.system_prompt": None},
              f"LoRA at lr {lr:g} without a system prompt (the strategy choice: does the instruction help?)")]
    if setup.teacher:
        moves.insert(1, ({"hyperparams.learning_rate": lr, "strategy.supervision": "chain_of_thought",
                          "strategy.teacher": setup.teacher,
                          "hyperparams.system_prompt": system_prompt_for(setup.analysis, "chain_of_thought")},
                         "chain-of-thought supervision from the data's worked reasoning"))
    return moves


class ColdStartPlanner:
    """Cold start's first move, then the shared planner.

    From the baseline root: the portfolio (at least `n` configurations). Elsewhere: the inner
    planner (rules, or the LLM with its fallback), asked for extra candidates so proposals that would
    change nothing for their method (a learning rate for a linear probe) can be dropped, keeping at
    least `n`; a switch to chain-of-thought also switches the task's system prompt to the reasoning one."""

    def __init__(self, inner: Planner, moves: list[tuple[dict[str, Any], str]], n: int, prompts: dict[str, str | None]
                 ) -> None:
        self.inner = inner
        self.moves = moves
        self.n = n
        self.prompts = prompts
        self._rules = RulePlanner()
        self._steps: list[PlannerStep] = []

    def expand(self, state: SearchState) -> list[Proposal]:
        if state.node.parent_id is None and state.node.metrics.get("baseline"):
            proposals = self._portfolio(state)
            if proposals:
                self._steps.append(PlannerStep("expand", "rule"))
                return proposals
        want = max(state.n_candidates, self.n)
        asked = replace(state, n_candidates=want + 4)
        proposals = [self._fix_prompt(p) for p in self.inner.expand(asked)]
        useful = [p for p in proposals if not _inert(p, state.node.pipeline)]
        if len(useful) < want:
            seen = state.seen | {p.pipeline.hash for p in useful}
            useful += self._realise(state, _top_up(state.node.pipeline), seen, want - len(useful),
                                    "cold-start top-up")
        return (useful or proposals)[:want]

    def evolve(self, state: SearchState) -> Proposal:
        return self._fix_prompt(self.inner.evolve(state))

    def fuse(self, state: SearchState) -> Proposal:
        return self._fix_prompt(self.inner.fuse(state))

    def name_cluster(self, cluster: Any) -> str:
        return self.inner.name_cluster(cluster)

    def judge_fixability(self, cluster: Any) -> Any:
        return self.inner.judge_fixability(cluster)

    def take_steps(self) -> list[PlannerStep]:
        steps, self._steps = self._steps + self.inner.take_steps(), []
        return steps

    def _portfolio(self, state: SearchState) -> list[Proposal]:
        return self._realise(state, self.moves, state.seen, max(self.n, state.n_candidates), "cold-start portfolio")

    def _realise(self, state: SearchState, moves: list[tuple[dict[str, Any], str]], seen: frozenset[str], n: int,
                 prefix: str) -> list[Proposal]:
        """The rule planner's realisation (apply each move, skip invalid and seen pipelines)."""
        return self._rules.realise(replace(state, seen=seen), moves, "expand", n, f"{prefix}: ")

    def _fix_prompt(self, proposal: Proposal) -> Proposal:
        p = proposal.pipeline
        wanted = self.prompts.get(p.strategy.supervision)
        if p.hyperparams.system_prompt is None or wanted is None or p.hyperparams.system_prompt == wanted \
                or p.hyperparams.system_prompt not in self.prompts.values():
            return proposal
        fixed = p.modify({"hyperparams.system_prompt": wanted})
        return replace(proposal, pipeline=fixed, rationale=f"{proposal.rationale}; system prompt for "
                       f"{p.strategy.supervision} supervision")


def _top_up(p: Pipeline) -> list[tuple[dict[str, Any], str]]:
    """Moves that matter for the node's method, when the planner's rules offered too few."""
    h, data = p.hyperparams, p.data
    moves: list[tuple[dict[str, Any], str]] = []
    if h.method == "linear_probe":
        moves += [({"hyperparams.method": "full", "hyperparams.learning_rate": 5e-5},
                   "a probe cannot learn more: fine-tune the whole encoder"),
                  ({"hyperparams.weight_decay": 1e-4}, "weaker L2 on the probe"),
                  ({"hyperparams.weight_decay": 1e-2}, "stronger L2 on the probe")]
    else:
        moves += [({"hyperparams.epochs": h.epochs + 1}, "one more epoch"),
                  ({"hyperparams.learning_rate": h.learning_rate * 2}, "higher learning rate")]
    step = 0.05
    if data.gold_fraction + step <= 0.75 + 1e-9:
        moves.append(({"data.gold_fraction": round(data.gold_fraction + step, 4),
                       "data.hard_negative_fraction": round(data.hard_negative_fraction - step, 4)}, "more gold"))
    if data.hard_negative_fraction + step <= 0.45 + 1e-9:
        moves.append(({"data.gold_fraction": round(data.gold_fraction - step, 4),
                       "data.hard_negative_fraction": round(data.hard_negative_fraction + step, 4)},
                      "more hard negatives"))
    return moves


def _inert(proposal: Proposal, parent: Pipeline) -> bool:
    changed = {k.split(".", 1)[1] for k in parent.diff(proposal.pipeline) if k.startswith("hyperparams.")}
    others = [k for k in parent.diff(proposal.pipeline) if not k.startswith("hyperparams.")]
    inert = _INERT.get(proposal.pipeline.hyperparams.method, set())
    return bool(changed) and not others and changed <= inert
