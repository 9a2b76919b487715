"""data-curation.md, rendered purely from a run's events so it can never drift from what happened.

`render_curation_log(events)` is a pure function of the event stream (the same events give the
same bytes); `write_curation_log(store, run_id)` writes it atomically to
artifacts/runs/<run_id>/data-curation.md. The TUI renders the same function live and in replays.
Text that comes from traces, models, people or LLMs is escaped (engine.escape) wherever it lands.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.dotted import flatten
from engine.escape import code, markdown, markdown_block
from store import Event, Store, atomic_write_text

SLICE_ORDER = ("gold", "hard_negative", "replay")


@dataclass
class _NodeSection:
    node_id: str
    iteration: int = 0
    parent_id: str | None = None
    operator: str = ""
    rationale: str = ""
    change: str = ""
    lines: list[str] = field(default_factory=list)
    train_total: int | None = None
    last_progress: dict[str, Any] | None = None


def _cell(value: Any) -> str:
    """A markdown table cell: one line, the data's Markdown and HTML escaped (pipes too)."""
    return "—" if value is None or value == "" else markdown(_fmt(value))


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def composition_text(composition: dict[str, Any]) -> str:
    """`gold 40 (50%) · hard_negative 28 (35%) · replay 12 (15%) — 80 rows`, or percentages alone
    when the composition is given as fractions."""
    keys = [k for k in SLICE_ORDER if k in composition] + sorted(k for k in composition if k not in SLICE_ORDER)
    numbers = {k: composition[k] for k in keys if isinstance(composition[k], int | float)}
    total = sum(numbers.values())
    if not numbers or total <= 0:
        return _fmt(composition) if composition else "(empty)"
    if total <= 1.0001:
        return " · ".join(f"{k} {v:.0%}" for k, v in numbers.items())
    parts = " · ".join(f"{k} {int(v)} ({v / total:.0%})" for k, v in numbers.items())
    return f"{parts} — {int(total)} rows"


def qc_lines(qc: Any) -> list[str]:
    """Quality-control report as bullet lines with ✓/✗ where the check states pass or fail."""
    if not qc:
        return []
    if isinstance(qc, dict) and isinstance(qc.get("checks"), list):
        items = [(str(c.get("name", "check")), c) for c in qc["checks"] if isinstance(c, dict)]
        items += [(k, v) for k, v in qc.items() if k != "checks"]
    elif isinstance(qc, dict):
        items = list(qc.items())
    else:
        return [f"- {_fmt(qc)}"]
    lines = []
    for name, value in items:
        if isinstance(value, dict) and "passed" in value:
            mark = "✓" if value["passed"] else "✗"
            rest = [_fmt(value["value"])] if "value" in value else []
            if "limit" in value:
                rest.append(f"(limit {_fmt(value['limit'])})")
            rest += [f"{k} {_fmt(v)}" for k, v in value.items() if k not in ("passed", "name", "value", "limit")]
            lines.append(f"- {mark} {name}" + (f": {' '.join(rest)}" if rest else ""))
        else:
            lines.append(f"- {name}: {_fmt(value)}")
    return lines


def pipeline_change(parent: dict[str, Any] | None, child: dict[str, Any] | None, limit: int = 3,
                    short: bool = False) -> str:
    """What a node changed relative to its parent, e.g. `hyperparams.epochs 3 → 5; +1 more`.
    `short` drops the D/H/S prefix and cuts long values (for one-line graph labels)."""
    if not parent or not child:
        return ""
    before, after = flatten(parent), flatten(child)
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))

    def value(v: Any) -> str:
        text = _fmt(v)
        return text if not short or len(text) <= 16 else text[:15] + "…"

    parts = [f"{k.rsplit('.', 1)[-1] if short else k} {value(before.get(k))} → {value(after.get(k))}"
             for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"+{len(keys) - limit} more")
    return "; ".join(parts)


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _regressions(count: Any) -> str:
    """`2 regressions`; a root scored on its own traces has no count (`regressions —`)."""
    return "regressions —" if count is None else _plural(count, "regression")


def diff_text(diff: dict[str, Any]) -> str:
    """Edits summarised: list-valued entries by count, the rest inline (removed, added, changed first)."""
    order = ["removed", "added", "changed"]
    parts = []
    for key in [k for k in order if k in diff] + sorted(k for k in diff if k not in order):
        value = diff[key]
        if isinstance(value, list):
            parts.append(f"{key} {len(value)}")
        else:
            parts.append(f"{key} {_fmt(value)}")
    return "; ".join(parts)


def _decision_line(p: dict[str, Any]) -> str:
    line = (f"- **Decision** ({markdown(p.get('kind', '?'))}): **{markdown(p.get('action', '?'))}** by "
            f"{markdown(p.get('who', '?'))}")
    if p.get("dataset_version_id"):
        line += f" → dataset {code(p['dataset_version_id'])}"
    if p.get("reason"):
        line += f" — {markdown(p['reason'])}"
    if p.get("diff"):
        line += f" (diff: {markdown(diff_text(p['diff']))})"
    return line


def _gate_line(p: dict[str, Any]) -> str:
    mark = "✓" if p.get("passed") else "✗"
    rule = p.get("rule") or "vs threshold"
    return f"- {mark} gate `{p.get('gate', '?')}`: {_fmt(p.get('value'))} {rule} {_fmt(p.get('threshold'))}"


def composition_delta(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What a curriculum changed against its parent's, slice by slice: `gold 33 → 45; replay 561 → 90`."""
    keys = [k for k in SLICE_ORDER if k in before or k in after]
    keys += sorted(k for k in set(before) | set(after) if k not in SLICE_ORDER)
    return "; ".join(f"{k} {before.get(k, 0)} → {after.get(k, 0)}" for k in keys
                     if before.get(k, 0) != after.get(k, 0)) or "the same slice sizes"


def render_curation_log(events: Iterable[Event]) -> str:
    """The whole document for one run's events (in seq order)."""
    events = sorted(events, key=lambda e: e.seq)
    run_id = events[0].run_id if events else "?"
    header: list[str] = []
    taxonomy: list[str] = []
    nodes: dict[str, _NodeSection] = {}
    datasets: dict[str, dict[str, Any]] = {}
    pipelines: dict[str, dict[str, Any]] = {}
    decisions: list[dict[str, Any]] = []
    curricula: dict[str, dict[str, Any]] = {}  # node -> its curriculum's composition
    notes: list[tuple[str, str]] = []
    run_level: list[str] = []
    budget: dict[str, Any] | None = None
    outcome: list[str] = []

    def section(node_id: Any) -> _NodeSection | None:
        if not node_id:
            return None
        return nodes.setdefault(str(node_id), _NodeSection(str(node_id)))

    for ev in events:
        p, t = ev.payload, ev.type
        sec = section(p.get("node_id"))
        if t == "run_started":
            header.append(f"- Mode: **{markdown(p.get('mode', '?'))}**, started {ev.ts}")
            for key, value in (p.get("config") or {}).items():
                # a fork's root pipeline is the root node's, listed with the nodes below
                shown = "the forked node's pipeline (the root node below)" if key == "root" else markdown(_fmt(value))
                header.append(f"- {code(key)}: {shown}")
        elif t == "taxonomy_built":
            clusters = p.get("clusters") or []
            taxonomy = ["| cluster | kind | size | fixability | probe confirmation |",
                        "|---|---|---:|---|---:|"]
            for c in clusters:
                rate = c.get("confirmation_rate")
                taxonomy.append(f"| {_cell(c.get('name'))} | {_cell(c.get('kind'))} | {_cell(c.get('size'))} | "
                                f"{_cell(c.get('fixability'))} | {'—' if rate is None else f'{rate:.0%}'} |")
            sizes = [int(c.get("size") or 0) for c in clusters]
            fixable = sum(int(c.get("size") or 0) for c in clusters if c.get("fixability") == "fixable")
            taxonomy.append("")
            taxonomy.append(f"{len(clusters)} clusters covering {sum(sizes)} failures; {fixable} judged fixable, "
                            f"{sum(sizes) - fixable} external (not trained on).")
        elif t == "node_added" and sec is not None:
            pipelines[sec.node_id] = p.get("pipeline") or {}
            sec.change = pipeline_change(pipelines.get(str(p.get("parent_id"))), pipelines[sec.node_id])
            sec.iteration = int(p.get("iteration") or 0)
            sec.parent_id = p.get("parent_id")
            sec.operator = str(p.get("operator") or "")
            sec.rationale = str(p.get("rationale") or "")
        elif t == "curriculum_proposed":
            comp = composition_text(p.get("composition") or {})
            target = sec.lines if sec is not None else run_level
            target.append(f"- **Curriculum** dataset {code(p.get('dataset_version_id', '?'))}: {markdown(comp)}")
            target.extend("  " + line for line in qc_lines(p.get("qc")))
            if sec is not None:
                curricula[sec.node_id] = dict(p.get("composition") or {})
                parent = curricula.get(str(sec.parent_id))
                if parent is not None:
                    target.append(f"  - against the parent's curriculum: "
                                  f"{composition_delta(parent, curricula[sec.node_id])}")
            entry = datasets.setdefault(str(p.get("dataset_version_id", "?")), {"nodes": [], "origin": "proposed"})
            entry["composition"] = comp
            if p.get("node_id") and p["node_id"] not in entry["nodes"]:
                entry["nodes"].append(p["node_id"])
        elif t == "decision_recorded":
            decisions.append(p)
            (sec.lines if sec is not None else run_level).append(_decision_line(p))
            if p.get("action") == "edit" and p.get("dataset_version_id"):
                entry = datasets.setdefault(str(p["dataset_version_id"]), {"nodes": [], "composition": "—"})
                entry["origin"] = f"edit by {p.get('who', '?')}" + (f" ({diff_text(p['diff'])})" if p.get("diff") else "")
                if p.get("node_id") and p["node_id"] not in entry["nodes"]:
                    entry["nodes"].append(p["node_id"])
        elif t == "train_started" and sec is not None:
            sec.train_total = p.get("total_steps")
        elif t == "train_progress" and sec is not None:
            sec.last_progress = p
        elif t == "node_evaluated" and sec is not None:
            if sec.last_progress is not None or sec.train_total is not None:
                lp = sec.last_progress or {}
                line = f"- **Training**: {lp.get('step', 0)}/{sec.train_total or lp.get('total_steps', '?')} steps"
                if lp.get("loss") is not None:
                    line += f", last loss {_fmt(lp['loss'])}"
                if lp.get("examples_per_s") is not None:
                    line += f", {_fmt(lp['examples_per_s'])} ex/s"
                sec.lines.append(line)
                sec.last_progress, sec.train_total = None, None
            score = p.get("score")
            sec.lines.append(f"- **Result**: score {'—' if score is None else f'{score:.4f}'}, "
                             f"{_regressions(p.get('regressions'))} → **{p.get('status', '?')}**")
            metrics = p.get("metrics") or {}
            if metrics:
                sec.lines.append("  - metrics: " + ", ".join(f"{markdown(k)} {markdown(_fmt(v))}"
                                                             for k, v in metrics.items()))
        elif t == "gate_checked":
            (sec.lines if sec is not None else run_level).append(_gate_line(p))
        elif t == "rollback":
            line = (f"- **Rollback**: model {code(p.get('from_model', '?'))} → {code(p.get('to_model', '?'))}"
                    f" — {markdown(p.get('reason', 'no reason given'))}")
            (sec.lines if sec is not None else run_level).append(line)
        elif t == "promoted":
            score = p.get("score")
            line = (f"- **Promoted** model {code(p.get('model_id', '?'))}"
                    + ("" if score is None else f" (score {score:.4f})")
                    + (f", anyway (over the regression budget): {markdown(p['override'])}" if p.get("override") else ""))
            (sec.lines if sec is not None else run_level).append(line)
        elif t == "curation_note":
            text = markdown_block(str(p.get("markdown") or "").strip())
            if sec is not None:
                sec.lines.append(text)
            else:
                notes.append((str(p.get("section") or "Notes"), text))
        elif t == "budget":
            budget = p
        elif t == "run_finished":
            best = p.get("best_score")
            outcome.append(f"- Status: **{markdown(p.get('status', '?'))}** at {ev.ts}")
            if p.get("reason"):
                outcome.append(f"- Reason: {markdown(p['reason'])}")
            outcome.append(f"- Best node: {code(p.get('best_node') or '—')}"
                           + ("" if best is None else f", score {best:.4f}"))
            if p.get("outcome"):
                outcome.append(f"- Decision: {markdown(p['outcome'])}")
            if p.get("promote_command"):
                outcome.append(f"- To promote the close call {code(p.get('close_call'))} later: "
                               f"{code(p['promote_command'])}")

    out = [f"# Data curation log — run {code(run_id)}", ""]
    out += (header or ["- (run_started not recorded)"]) + [""]
    if taxonomy:
        out += ["## Failure taxonomy", ""] + taxonomy + [""]
    if nodes or run_level:
        out += ["## Iterations", ""]
        out += run_level + ([""] if run_level else [])
        for sec in nodes.values():
            origin = f"{markdown(sec.operator)} from {code(sec.parent_id)}" if sec.parent_id else \
                (markdown(sec.operator) or "root")
            out += [f"### Iteration {sec.iteration} · node {code(sec.node_id)} ({origin})", ""]
            if sec.rationale:
                out += [f"Rationale: {markdown(sec.rationale)}", ""]
            if sec.change:
                out += [f"Change: {markdown(sec.change)}", ""]
            out += sec.lines + [""]
    if datasets:
        out += ["## Dataset versions", "", "| version | used by | composition | origin |", "|---|---|---|---|"]
        out += [f"| {code(v)} | {_cell(', '.join(d['nodes']))} | {_cell(d.get('composition'))} | "
                f"{_cell(d.get('origin'))} |" for v, d in datasets.items()] + [""]
    if decisions:
        out += ["## Decisions", "", "| # | kind | action | who | node | reason |", "|---:|---|---|---|---|---|"]
        out += [f"| {_cell(d.get('decision_id'))} | {_cell(d.get('kind'))} | {_cell(d.get('action'))} | "
                f"{_cell(d.get('who'))} | {_cell(d.get('node_id'))} | {_cell(d.get('reason'))} |"
                for d in decisions] + [""]
    for title, text in notes:
        out += [f"## {markdown(title)}", "", text, ""]
    if budget is not None:
        spent, limits = budget.get("spent") or {}, budget.get("limits") or {}
        out += ["## Budget", ""]
        out += [f"- {k}: {_fmt(v)}" + (f" of {_fmt(limits[k])}" if limits.get(k) is not None else "")
                for k, v in spent.items()] + [""]
    if outcome:
        out += ["## Outcome", ""] + outcome + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def curation_log_path(store: Store, run_id: str) -> Path:
    return store.artifacts / "runs" / run_id / "data-curation.md"


def write_curation_log(store: Store, run_id: str) -> Path:
    """Regenerate the run's data-curation.md from its events and write it atomically."""
    return atomic_write_text(curation_log_path(store, run_id),
                             render_curation_log(store.runs.events(run_id)))
