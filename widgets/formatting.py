"""Numbers, durations, counts and quality-control reports as people read them.

Every pane formats through this module, so a score, a delta or a count reads the same everywhere and
never as float noise ("+41.0000", "0.39999999999999997", "1 regressions").
"""

from __future__ import annotations

import math
from typing import Any

DASH = "—"
SLICE_NAMES = {"gold": "gold", "hard_negative": "hard negatives", "replay": "replay",
               "replay_coverage": "replay pool covered"}
DROP_NAMES = {"exact_duplicate": "exact duplicates", "near_duplicate": "near duplicates", "leakage": "leaked",
              "surface_repeat": "surface repeats"}


def number(value: Any) -> str:
    """Ints as ints; floats rounded to what a person reads: whole floats as ints ("41"), three significant
    digits below 100 ("0.4", "0.825", "53.4"), whole numbers above ("1,230")."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer():
            return f"{int(value):,}"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def score(value: float | None) -> str:
    """A score in [0, 1] with three decimals, the way the graph and the status bar show it."""
    return DASH if value is None else f"{value:.3f}"


def signed(value: float | int | None) -> str:
    """A change with its sign: "+41", "-0.0133", "0"."""
    if value is None:
        return DASH
    text = number(value)
    return text if text.startswith("-") or text == "0" else "+" + text


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage to `digits` decimals at most: "9.5%", "40%"."""
    return DASH if fraction is None else number(float(round(100 * float(fraction), digits))) + "%"


def plural(n: int, noun: str, many: str | None = None) -> str:
    """"1 regression", "2 regressions"."""
    return f"{number(n)} {noun if n == 1 else many or noun + 's'}"


def duration(seconds: float) -> str:
    """Wall time as m:ss, or h:mm:ss from an hour on."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def tokens(n: float) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else f"{int(n)}"


def budget_text(spent: dict[str, float], limits: dict[str, float]) -> str:
    """What a run spent against its limits: "0:48/20:00 12.4k tok $0.03", or "—" before anything."""
    parts = []
    if "seconds" in spent:
        limit = limits.get("seconds")
        parts.append(duration(spent["seconds"]) + (f"/{duration(limit)}" if limit else ""))
    if spent.get("tokens"):
        parts.append(f"{tokens(spent['tokens'])} tok")
    if spent.get("dollars") or limits.get("dollars"):
        limit = limits.get("dollars")
        parts.append(f"${spent.get('dollars', 0.0):.2f}" + (f"/${limit:.2f}" if limit else ""))
    return " ".join(parts) if parts else DASH


def value_text(value: Any) -> str:
    """Any stored value on one line: dicts as "key value" pairs, lists joined, numbers via `number`."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {value_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(value_text(v) for v in value)
    return number(value)


def qc_lines(qc: Any) -> list[str]:
    """A curriculum's quality-control report (engine.production.qc_checks) in sentences: one line per
    check with ✓/✗, then the slice bands, what was dropped, the length match and the per-cluster counts."""
    if not isinstance(qc, dict) or not qc:
        return [] if not qc else [value_text(qc)]
    lines = []
    for check in qc.get("checks") or []:
        mark = "✓" if check.get("passed") else "✗"
        name = str(check.get("name", "check")).replace("_", " ")
        text = f"{mark} {name} {number(check.get('value'))}"
        if "limit" in check:
            text += f" (limit {number(check['limit'])})"
        extra = [f"{k.replace('_', ' ')} {number(v)}" for k, v in check.items()
                 if k not in ("name", "passed", "value", "limit") and v]
        lines.append(text + (": " + ", ".join(extra) if extra else ""))
    bands = qc.get("bands") or {}
    if bands:
        lines.append("slices: " + " · ".join(_band_text(name, b) for name, b in bands.items()))
    dropped = {k: v for k, v in (qc.get("dropped") or {}).items() if v}
    if dropped and not qc.get("checks"):  # the checks already say what each of them dropped
        lines.append("dropped " + ", ".join(f"{number(v)} {DROP_NAMES.get(k, k.replace('_', ' '))}"
                                            for k, v in dropped.items()))
    length = qc.get("length_distance") or {}
    if length.get("train_mean") is not None:
        lines.append(f"input length: {number(length['train_mean'])} words on average in training vs "
                     f"{number(length['target_mean'])} in the {plural(length.get('n_target') or 0, 'failing input')}"
                     f" (KS {number(length.get('ks'))})")
    clusters = qc.get("per_cluster") or {}
    if clusters:
        lines.append("gold / hard negatives per cluster: " + ", ".join(
            f"{cid} {number(c.get('gold'))}/{number(c.get('hard_negative'))}"
            + (f" (short {number(c['shortfall'])})" if c.get("shortfall") else "") for cid, c in clusters.items()))
    if qc.get("rows"):
        lines.append(f"rows: {qc['rows']}")
    known = {"checks", "bands", "dropped", "length_distance", "per_cluster", "rows"}
    lines += [f"{k.replace('_', ' ')}: {value_text(v)}" for k, v in qc.items() if k not in known]
    return lines


def _band_text(name: str, band: dict[str, Any]) -> str:
    """`✓ gold 52.6% of the loss (want 40%–60%)`; a share with no band to check (a cold-start target) is
    stated without a verdict."""
    label = f"{SLICE_NAMES.get(name, name)} {percent(band.get('value'))}" + \
        (" of the loss" if band.get("of") == "loss" else "")
    if not band.get("band"):
        target = band.get("target")
        return label + ("" if target is None else f" (target {percent(target)})")
    low, high = band["band"][:2]
    want = f"{percent(low)}–{percent(high)}" if high is not None and high < 1 else f"≥ {percent(low)}"
    return f"{'✓' if band.get('ok') else '✗'} {label} (want {want})"
