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
    from engine.bench.adaptft import BenchResult

ARM_NAMES = {"agent": "agent", "naive": "naive (realistic)", "oracle": "naive (oracle labels)",
             "clean_only": "clean only", "random_aug": "random augmentation"}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def checkpoint_rows(result: BenchResult) -> list[dict[str, Any]]:
    rows = []
    for c in result.checkpoints:
        naive, agent = c.scores.get("naive"), c.scores["agent"]
        rows.append({"checkpoint": c.name, "poison_rate": c.poison_rate, "naive": naive, "agent": agent,
                     "delta": None if naive is None else round(agent - naive, 4),
                     **{arm: c.scores[arm] for arm in ("oracle", "clean_only", "random_aug") if arm in c.scores},
                     "promoted": c.agent_promoted})
    return rows


def final_gap(result: BenchResult) -> float | None:
    last = result.checkpoints[-1].scores
    return None if "naive" not in last else round(last["agent"] - last["naive"], 4)


def agent_monotone(result: BenchResult) -> bool:
    curve = [c.scores["agent"] for c in result.checkpoints]
    return all(b >= a for a, b in zip(curve, curve[1:], strict=False))


def perturbation_rows(result: BenchResult) -> list[dict[str, Any]]:
    """Per type: logs carrying it, its class, and what the agent did with those logs."""
    counts: Counter = Counter()
    actions: dict[str, Counter] = defaultdict(Counter)
    for log in result.logs:
        for name in dict.fromkeys(log["types"]):
            counts[name] += 1
            actions[name][log["action"]] += 1
    rows = []
    for t in TYPES:
        if counts[t.name]:
            acts = actions[t.name]
            rows.append({"type": t.name, "count": counts[t.name], "fixable": BY_NAME[t.name].cls == "fixable",
                         "passed": acts["passed"], "trained_as_fixable": acts["fixable"],
                         "excluded_as_poison": sum(v for k, v in acts.items() if k.startswith("poison")),
                         "other": sum(v for k, v in acts.items()
                                      if k not in ("passed", "fixable") and not k.startswith("poison"))})
    return rows


def triage_scores(result: BenchResult) -> dict[str, Any]:
    """How well the agent's fixable/poison triage matches the hidden truth, over failing logs."""
    failing = [log for log in result.logs if log["action"] not in ("passed", "failed, not triaged")]
    poison = [log for log in failing if log["poisoned"]]
    caught = sum(1 for log in poison if log["action"].startswith("poison"))
    flagged = [log for log in failing if log["action"].startswith("poison")]
    return {"failing_logs": len(failing), "poisoned_failing": len(poison), "poison_caught": caught,
            "poison_recall": round(caught / len(poison), 4) if poison else None,
            "poison_precision": round(sum(1 for log in flagged if log["poisoned"]) / len(flagged), 4) if flagged else None}


def markdown(result: BenchResult) -> str:
    arms = [a for a in ("oracle", "clean_only", "random_aug") if a in result.checkpoints[0].scores]
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
    gap = final_gap(result)
    lines += ["", f"Final gap (agent - realistic naive at {result.checkpoints[-1].name}): "
              f"{'—' if gap is None else f'{100 * gap:+.1f} points'}; agent curve never decreases: "
              f"{'yes' if agent_monotone(result) else 'NO'}.", "",
              f"Realistic-naive labels: {json.dumps(result.naive_labels)}", "",
              f"Agent triage vs hidden truth: {json.dumps(triage_scores(result))}", "",
              "## Perturbations in the agent's logs", "",
              "| type | count | fixable | passed | trained as fixable | excluded as poison | other |",
              "|---|---|---|---|---|---|---|"]
    for r in perturbation_rows(result):
        lines.append(f"| {r['type']} | {r['count']} | {'yes' if r['fixable'] else 'no'} | {r['passed']} | "
                     f"{r['trained_as_fixable']} | {r['excluded_as_poison']} | {r['other']} |")
    lines += ["", "## Agent runs", ""]
    lines += [f"- {c.name}: run `{c.agent_run}`, {'promoted' if c.agent_promoted else 'kept the deployed model'} "
              f"({c.agent_reason})" for c in result.checkpoints[1:]]
    return "\n".join(lines) + "\n"


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
