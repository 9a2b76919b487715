"""data-curation.md, rendered purely from a run's events so it can never drift from what happened.

`render_curation_log(events)` is a pure function of the event stream (the same events give the
same bytes), folding the typed events of engine.events like the TUI does; `write_curation_log(store,
run_id)` writes it atomically to artifacts/runs/<run_id>/data-curation.md. The TUI renders the same
function live and in replays.
Text that comes from traces, models, people or LLMs is escaped (engine.escape) wherever it lands.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.dotted import flatten
from engine.escape import code, markdown, markdown_block
from engine.events import (
    BudgetSpent,
    CurationNote,
    CurriculumProposed,
    DecisionRecorded,
    GateChecked,
    NodeAdded,
    NodeEvaluated,
    Promoted,
    Rollback,
    RunFinished,
    RunStarted,
    TaxonomyBuilt,
    TrainProgress,
    TrainStarted,
    decode,
)
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
    last_progress: TrainProgress | None = None


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


def pipeline_change(parent: Mapping[str, Any] | None, child: Mapping[str, Any] | None, limit: int | None = 3,
                    short: bool = False) -> str:
    """What a node changed relative to its parent, e.g. `hyperparams.epochs 3 → 5; +1 more` (every change
    when `limit` is None). `short` drops the D/H/S prefix and cuts long values (for one-line graph labels)."""
    if not parent or not child:
        return ""
    before, after = flatten(parent), flatten(child)
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))

    def value(v: Any) -> str:
        text = _fmt(v)
        return text if not short or len(text) <= 16 else text[:15] + "…"

    parts = [f"{k.rsplit('.', 1)[-1] if short else k} {value(before.get(k))} → {value(after.get(k))}"
             for k in keys[:limit]]
    if limit is not None and len(keys) > limit:
        parts.append(f"+{len(keys) - limit} more")
    return "; ".join(parts)


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _regressions(count: Any) -> str:
    """`2 regressions`; a root scored on its own traces has no count (`regressions —`)."""
    return "regressions —" if count is None else _plural(count, "regression")


def diff_text(diff: Mapping[str, Any]) -> str:
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


def _decision_line(d: DecisionRecorded) -> str:
    line = f"- **Decision** ({markdown(d.kind)}): **{markdown(d.action)}** by {markdown(d.who)}"
    if d.dataset_version_id:
        line += f" → dataset {code(d.dataset_version_id)}"
    if d.reason:
        line += f" — {markdown(d.reason)}"
    if d.diff:
        line += f" (diff: {markdown(diff_text(d.diff))})"
    return line


def _gate_line(g: GateChecked) -> str:
    name, value, limit = g.words
    return f"- {'✓' if g.passed else '✗'} {name}: {value} ({limit})"


def composition_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
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
    pipelines: dict[str, Mapping[str, Any]] = {}
    decisions: list[DecisionRecorded] = []
    curricula: dict[str, Mapping[str, Any]] = {}  # node -> its curriculum's composition
    setup: list[tuple[str, list[str]]] = []  # sections written before the first node: read first
    notes: list[tuple[str, str]] = []
    run_level: list[str] = []
    budget: BudgetSpent | None = None
    outcome: list[str] = []

    def section(node_id: str | None) -> _NodeSection | None:
        if not node_id:
            return None
        return nodes.setdefault(node_id, _NodeSection(node_id))

    for ev in events:
        event = decode(ev)
        sec = section(getattr(event, "node_id", None))  # an event about a node goes under its iteration
        target = sec.lines if sec is not None else run_level
        match event:
            case RunStarted():
                header.append(f"- Mode: **{markdown(event.mode)}**, started {ev.ts}")
                for key, value in event.config.items():
                    # a fork's root pipeline is the root node's, listed with the nodes below
                    shown = "the forked node's pipeline (the root node below)" if key == "root" else \
                        markdown(_fmt(value))
                    header.append(f"- {code(key)}: {shown}")
            case TaxonomyBuilt():
                taxonomy = ["| cluster | kind | size | fixability | probe confirmation |",
                            "|---|---|---:|---|---:|"]
                for c in event.clusters:
                    rate = c.confirmation_rate
                    taxonomy.append(f"| {_cell(c.name)} | {_cell(c.kind)} | {_cell(c.size)} | "
                                    f"{_cell(c.fixability)} | {'—' if rate is None else f'{rate:.0%}'} |")
                failures = sum(c.size for c in event.clusters)
                fixable = sum(c.size for c in event.clusters if c.fixability == "fixable")
                taxonomy.append("")
                taxonomy.append(f"{len(event.clusters)} clusters covering {failures} failures; {fixable} judged "
                                f"fixable, {failures - fixable} external (not trained on).")
            case NodeAdded() if sec is not None:
                pipelines[sec.node_id] = event.pipeline
                sec.change = pipeline_change(pipelines.get(str(event.parent_id)), event.pipeline)
                sec.iteration = event.iteration
                sec.parent_id = event.parent_id
                sec.operator = event.operator
                sec.rationale = event.rationale or ""
            case CurriculumProposed():
                version = event.dataset_version_id or "?"
                comp = composition_text(event.composition)
                target.append(f"- **Curriculum** dataset {code(version)}: {markdown(comp)}")
                target.extend("  " + line for line in qc_lines(event.qc))
                if event.carried:
                    target.append(f"  - {markdown(event.carried)}")
                if sec is not None:
                    curricula[sec.node_id] = event.composition
                    parent = curricula.get(str(sec.parent_id))
                    if parent is not None:
                        target.append(f"  - against the parent's curriculum: "
                                      f"{composition_delta(parent, event.composition)}")
                entry = datasets.setdefault(version, {"nodes": [], "origin": "proposed"})
                entry["composition"] = comp
                if event.node_id and event.node_id not in entry["nodes"]:
                    entry["nodes"].append(event.node_id)
            case DecisionRecorded():
                decisions.append(event)
                (setup[-1][1] if sec is None and setup and not nodes else target).append(_decision_line(event))
                if event.action == "edit" and event.dataset_version_id:
                    entry = datasets.setdefault(event.dataset_version_id, {"nodes": [], "composition": "—"})
                    entry["origin"] = f"edit by {event.who}" + (f" ({diff_text(event.diff)})" if event.diff else "")
                    if event.node_id and event.node_id not in entry["nodes"]:
                        entry["nodes"].append(event.node_id)
            case TrainStarted() if sec is not None:
                sec.train_total = event.total_steps
            case TrainProgress() if sec is not None:
                sec.last_progress = event
            case NodeEvaluated() if sec is not None:
                if sec.last_progress is not None or sec.train_total is not None:
                    lp = sec.last_progress
                    step, total = (lp.step, lp.total_steps) if lp is not None else (0, "?")
                    line = f"- **Training**: {step}/{sec.train_total or total} steps"
                    if lp is not None and lp.loss is not None:
                        line += f", last loss {_fmt(lp.loss)}"
                    if lp is not None and lp.examples_per_s is not None:
                        line += f", {_fmt(lp.examples_per_s)} ex/s"
                    sec.lines.append(line)
                    sec.last_progress, sec.train_total = None, None
                score = event.score
                sec.lines.append(f"- **Result**: score {'—' if score is None else f'{score:.4f}'}, "
                                 f"{_regressions(event.regressions)} → **{event.status}**")
                if event.metrics:
                    sec.lines.append("  - metrics: " + ", ".join(f"{markdown(k)} {markdown(_fmt(v))}"
                                                                 for k, v in event.metrics.items()))
            case GateChecked():
                target.append(_gate_line(event))
            case Rollback():
                target.append(f"- **Rollback**: model {code(event.from_model)} → {code(event.to_model)}"
                              f" — {markdown(event.reason or 'no reason given')}")
            case Promoted():
                target.append(f"- **Promoted** model {code(event.model_id)}"
                              + ("" if event.score is None else f" (score {event.score:.4f})")
                              + (f", anyway (over the regression budget): {markdown(event.override)}"
                                 if event.override else ""))
            case CurationNote():
                text = markdown_block(event.markdown.strip())
                if sec is not None:
                    sec.lines.append(text)
                elif not nodes and setup and setup[-1][0] == (event.section or "Notes"):
                    setup[-1][1].append(text)  # a section written in steps stays one section
                elif not nodes:
                    setup.append((event.section or "Notes", [text]))
                else:
                    notes.append((event.section or "Notes", text))
            case BudgetSpent():
                budget = event
            case RunFinished():
                best = event.best_score
                outcome.append(f"- Status: **{markdown(event.status)}** at {ev.ts}")
                if event.reason:
                    outcome.append(f"- Reason: {markdown(event.reason)}")
                outcome.append(f"- Best node: {code(event.best_node or '—')}"
                               + ("" if best is None else f", score {best:.4f}"))
                if event.outcome:
                    outcome.append(f"- Decision: {markdown(event.outcome)}")
                if event.promote_command:
                    outcome.append(f"- To promote the close call {code(event.close_call)} later: "
                                   f"{code(event.promote_command)}")

    out = [f"# Data curation log — run {code(run_id)}", ""]
    out += (header or ["- (run_started not recorded)"]) + [""]
    for title, lines in setup:
        out += [f"## {markdown(title)}", "", *lines, ""]
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
        out += [f"| {_cell(d.decision_id)} | {_cell(d.kind)} | {_cell(d.action)} | {_cell(d.who)} | "
                f"{_cell(d.node_id)} | {_cell(d.reason)} |" for d in decisions] + [""]
    for title, text in notes:
        out += [f"## {markdown(title)}", "", text, ""]
    if budget is not None:
        out += ["## Budget", ""]
        out += [f"- {k}: {_fmt(v)}" + (f" of {_fmt(budget.limits[k])}" if budget.limits.get(k) is not None else "")
                for k, v in budget.spent.items()] + [""]
    if outcome:
        out += ["## Outcome", ""] + outcome + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def curation_log_path(store: Store, run_id: str) -> Path:
    return store.artifacts / "runs" / run_id / "data-curation.md"


def write_curation_log(store: Store, run_id: str) -> Path:
    """Regenerate the run's data-curation.md from its events and write it atomically."""
    return atomic_write_text(curation_log_path(store, run_id),
                             render_curation_log(store.runs.events(run_id)))
