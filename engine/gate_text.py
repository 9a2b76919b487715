"""How a person reads a gate's verdict: what it measures, its value and what it must be, in the words and
numbers the promotion dialog, the node details, the curation log, the headless printer and a run's stop
reason all use."""

from __future__ import annotations

from typing import Any

# Each gate: what it measures, how its value reads ("gain" a signed share, "share" a share, "count"
# regressions, "score" a metric) and its rule (for events recorded before they carried it).
GATE_WORDS: dict[str, tuple[str, str, str]] = {
    "gain": ("estimated gain on traffic, lower bound", "gain", ">"),
    "regression_rate": ("held-out passes broken", "share", "<="),
    "regression_budget": ("held-out passes broken", "count", "<="),
    "cross_budget": ("broken on the previous checkpoint's set", "share", "<="),
    "failure_set": ("accuracy on the failure set", "score", ">="),
    "regression_set": ("regressions on the regression set", "count", "<="),
    "cross_checkpoint": ("regressions on the previous checkpoint's set", "count", "<="),
    "monotone": ("score (floor: the deployed model's)", "score", ">="),
    "stop": ("score (floor: the threshold)", "score", ">="),
}
RULE_SIGNS = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


def _percent(fraction: float) -> str:
    return f"{round(100 * float(fraction), 1):g}%"


def gate_value(kind: str, value: float) -> str:
    """A gate's value as a person reads it: "+7.7%", "5%", "2 regressions", "0.931"."""
    if kind == "gain":
        return ("+" if value > 0 else "") + _percent(value)
    if kind == "share":
        return _percent(value)
    if kind == "count":
        return f"{int(value)} regression{'' if int(value) == 1 else 's'}"
    return f"{float(value):.3g}"


def gate_words(result: dict[str, Any]) -> tuple[str, str, str]:
    """(what a gate measures, its value, what it must be): ("held-out passes broken", "5%", "must be ≤ 2%")."""
    name, kind, rule = GATE_WORDS.get(str(result.get("gate")), (str(result.get("gate")), "score", ">="))
    rule = str(result.get("rule") or rule)
    value, threshold = result.get("value"), result.get("threshold")
    if value is None or threshold is None:
        return name, "—" if value is None else gate_value(kind, value), "no limit recorded"
    limit = f"{int(threshold)}" if kind == "count" else gate_value(kind, threshold).lstrip("+") if threshold else "0"
    return name, gate_value(kind, value), f"must be {RULE_SIGNS.get(rule, rule)} {limit}"


def gates_summary(results: list[dict[str, Any]]) -> str:
    """Every gate in one line: "estimated gain on traffic, lower bound +6.7% (must be > 0, passed); ..."."""
    parts = []
    for r in results:
        name, value, limit = gate_words(r)
        parts.append(f"{name} {value} ({limit}, {'passed' if r.get('passed') else 'failed'})")
    return "; ".join(parts) or "no gates checked"
