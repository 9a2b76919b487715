"""AdaptFT-Bench report: the per-checkpoint table (paper Table 6), the final gap, the
per-perturbation table (Table 7) and the stage trajectories as a self-contained plotly chart."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.data.perturb_types import BY_NAME, TYPES
from store.artifacts import atomic_write_text

if TYPE_CHECKING:  # the result type only; importing adaptft loads torch
    from engine.bench.adaptft import BenchResult, Checkpoint

ARM_NAMES = {"agent": "agent", "naive": "naive (realistic)", "naive_cumulative": "naive, cumulative from base",
             "naive_random": "naive, cumulative, random wrong labels", "oracle": "naive (oracle labels)",
             "clean_only": "clean only", "random_aug": "random augmentation"}
EXTRA_ARMS = ("naive_cumulative", "naive_random", "oracle", "clean_only", "random_aug")  # table order


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def checkpoint_rows(result: BenchResult) -> list[dict[str, Any]]:
    rows = []
    for c in result.checkpoints:
        naive, agent = c.scores.get("naive"), c.scores["agent"]
        rows.append({"checkpoint": c.name, "poison_rate": c.poison_rate, "naive": naive, "agent": agent,
                     "delta": None if naive is None else round(agent - naive, 4),
                     **{arm: c.scores[arm] for arm in EXTRA_ARMS if arm in c.scores},
                     "promoted": c.agent_promoted})
    return rows


def final_gap(result: BenchResult, arm: str = "naive") -> float | None:
    """Agent minus `arm` at the last checkpoint."""
    last = result.checkpoints[-1].scores
    return None if arm not in last else round(last["agent"] - last[arm], 4)


def agent_monotone(result: BenchResult) -> bool:
    curve = [c.scores["agent"] for c in result.checkpoints]
    return all(b >= a for a, b in zip(curve, curve[1:], strict=False))


def _outcome(log: dict[str, Any]) -> str:
    """passed | trained (fixable with a correction) | uncorrected (fixable, nothing to train on) |
    poison | other. Results written before `corrected` was recorded count every fixable as trained."""
    action = log["action"]
    if action == "fixable":
        return "trained" if log.get("corrected", True) else "uncorrected"
    return "poison" if action.startswith("poison") else ("passed" if action == "passed" else "other")


def perturbation_rows(result: BenchResult) -> list[dict[str, Any]]:
    """Per type: logs carrying it, its class, and what the agent did with those logs."""
    counts: Counter = Counter()
    outcomes: dict[str, Counter] = defaultdict(Counter)
    for log in result.logs:
        for name in dict.fromkeys(log["types"]):
            counts[name] += 1
            outcomes[name][_outcome(log)] += 1
    return [{"type": t.name, "count": counts[t.name], "fixable": BY_NAME[t.name].cls == "fixable",
             "passed": outcomes[t.name]["passed"], "trained_as_fixable": outcomes[t.name]["trained"],
             "fixable_uncorrected": outcomes[t.name]["uncorrected"],
             "excluded_as_poison": outcomes[t.name]["poison"], "other": outcomes[t.name]["other"]}
            for t in TYPES if counts[t.name]]


def triage_scores(result: BenchResult) -> dict[str, Any]:
    """How well the agent's fixable/poison triage matches the hidden truth, over failing logs, and
    over the failing logs with a correction (the ones triage keeps out of training or lets in)."""
    failing = [log for log in result.logs if log["action"] not in ("passed", "failed, not triaged")]

    def scores(logs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
        poison = [log for log in logs if log["poisoned"]]
        caught = sum(1 for log in poison if log["action"].startswith("poison"))
        flagged = [log for log in logs if log["action"].startswith("poison")]
        return {f"{prefix}failing": len(logs), f"{prefix}poisoned": len(poison), f"{prefix}poison_caught": caught,
                f"{prefix}poison_recall": round(caught / len(poison), 4) if poison else None,
                f"{prefix}poison_precision": round(sum(1 for log in flagged if log["poisoned"]) / len(flagged), 4)
                if flagged else None,
                f"{prefix}clean_flagged": sum(1 for log in flagged if not log["poisoned"])}

    old = scores(failing, "")
    return {"failing_logs": old.pop("failing"), "poisoned_failing": old.pop("poisoned"), **old,
            **scores([log for log in failing if log.get("corrected", True)], "corrected_")}


def markdown(result: BenchResult) -> str:
    arms = [a for a in EXTRA_ARMS if a in result.checkpoints[0].scores]
    head = ["checkpoint", "poison rate", "naive", "agent", "delta", *(ARM_NAMES[a] for a in arms), "agent promoted"]
    lines = [f"# AdaptFT-Bench: {result.dataset} (seed {result.seed})", "",
             f"Metric: {result.metric} (x100) on the held-out union of stage test splits: "
             f"{result.n_held_out_scored} of {result.n_held_out} rows have an answer in the task's space. "
             f"Wall time {result.seconds / 60:.1f} min.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in checkpoint_rows(result):
        cells = [r["checkpoint"], "—" if r["poison_rate"] is None else f"{r['poison_rate']:.0%}", _pct(r["naive"]),
                 _pct(r["agent"]), "—" if r["delta"] is None else f"{100 * r['delta']:+.1f}",
                 *(_pct(r.get(a)) for a in arms), "—" if r["promoted"] is None else ("yes" if r["promoted"] else "no")]
        lines.append("| " + " | ".join(cells) + " |")
    def gap_text(arm: str) -> str:
        gap = final_gap(result, arm)
        return "—" if gap is None else f"{100 * gap:+.1f} points"

    last = result.checkpoints[-1].name
    lines += ["", f"Final gap (agent - realistic naive at {last}): {gap_text('naive')}; agent curve never "
              f"decreases: {'yes' if agent_monotone(result) else 'NO'}."]
    lines += [f"Final gap against {ARM_NAMES[a]} at {last}: {gap_text(a)}." for a in ("naive_cumulative", "naive_random")
              if a in result.checkpoints[-1].scores]
    if result.seconds_by_phase:
        parts = [f"{k} {v / 60:.1f} min" for k, v in result.seconds_by_phase.items()]
        parts += [", ".join(f"{v:g} {k}" for k, v in result.training_rates.items())] if result.training_rates else []
        lines += ["", "Where the time went: " + "; ".join(parts) + "."]
    lines += ["", f"Realistic-naive labels: {json.dumps(result.naive_labels)}", "",
              f"Agent triage vs hidden truth: {json.dumps(triage_scores(result))}", "",
              "## Perturbations in the agent's logs", "",
              "| type | count | fixable | passed | trained as fixable | fixable, no correction | excluded as poison "
              "| other |", "|---|---|---|---|---|---|---|---|"]
    for r in perturbation_rows(result):
        lines.append(f"| {r['type']} | {r['count']} | {'yes' if r['fixable'] else 'no'} | {r['passed']} | "
                     f"{r['trained_as_fixable']} | {r['fixable_uncorrected']} | {r['excluded_as_poison']} | "
                     f"{r['other']} |")
    lines += ["", "## Agent runs", ""]
    lines += [f"- {c.name}: run `{c.agent_run}`, {'promoted' if c.agent_promoted else 'kept the deployed model'} "
              f"({c.agent_reason})" + candidates_text(c) for c in result.checkpoints[1:]]
    return "\n".join(lines) + "\n"


def candidates_text(c: Checkpoint) -> str:
    """`; candidates on the held-out union: n0001 44.0, n0002 50.0 (deployed)`: each model the run
    trained, scored after the run on rows the agent never saw, the one it left deployed marked."""
    if not c.candidates:
        return ""
    return "; candidates on the held-out union: " + ", ".join(
        f"{node} {_pct(v['score'])}" + (" (deployed)" if v["model"] == c.agent_model else "")
        for node, v in c.candidates.items())


def chart_html(result: BenchResult) -> str:
    import plotly.graph_objects as go

    names = [c.name for c in result.checkpoints]
    fig = go.Figure()
    for arm in result.checkpoints[0].scores:
        fig.add_trace(go.Scatter(x=names, y=[100 * c.scores[arm] for c in result.checkpoints], mode="lines+markers",
                                 name=ARM_NAMES.get(arm, arm), line={"width": 4 if arm == "agent" else 2}))
    fig.update_layout(title=f"AdaptFT-Bench {result.dataset}: held-out {result.metric} by checkpoint",
                      xaxis_title="checkpoint (poison rate rises 15% -> 25% -> 40%)",
                      yaxis_title=f"{result.metric} x100", template="plotly_white")
    return fig.to_html(full_html=True, include_plotlyjs=True)


def write_report(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"result": out_dir / "result.json", "report": out_dir / "report.md", "chart": out_dir / "chart.html"}
    atomic_write_text(paths["result"], json.dumps(result.to_dict(), ensure_ascii=False, indent=1, default=str))
    atomic_write_text(paths["report"], markdown(result))
    atomic_write_text(paths["chart"], chart_html(result))
    return paths
