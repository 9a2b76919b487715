"""`pioneer-tui report RUN`: one self-contained HTML file (plotly.js inline, works offline).

Charts, all read from the run's events and stored graph: score per node over time, regressions per
node against epsilon, failure-cluster sizes before the run and after its final model, and the
curriculum composition each trained node used (after any edit). Written atomically. Text from
traces, models and LLMs is escaped for HTML (engine.escape.html), chart labels included, since
plotly renders a subset of HTML in them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from engine.curation_log import SLICE_ORDER as SLICES
from engine.escape import html
from engine.events import EngineEvent, NodeEvaluated, Promoted, RunFinished, TaxonomyBuilt, decode
from store import Store, atomic_write_text

SLICE_COLOURS = {"gold": "#d4a017", "hard_negative": "#c0392b", "replay": "#2e86c1", "other": "#7f8c8d"}


def report_path(store: Store, run_id: str) -> Path:
    return store.artifacts / "runs" / run_id / "report.html"


def build_report(store: Store, run_id: str) -> str:
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    run = store.runs.get(run_id)
    if run is None:
        raise KeyError(f"run {run_id} does not exist (see `pioneer-tui runs`)")
    events = [decode(e) for e in store.runs.events(run_id)]
    nodes = {n["id"]: n for n in store.runs.nodes(run_id)}
    short = {nid: nid.rsplit(".", 1)[-1] for nid in nodes}
    # a run that has not finished (or stopped without saying so) reads as one with nothing to report yet
    finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), RunFinished(status=run["status"]))
    taxonomy = next((e for e in events if isinstance(e, TaxonomyBuilt)), TaxonomyBuilt())
    gates_cfg = ((run["config"] or {}).get("loop") or {}).get("gates") or {}

    evaluated = [e for e in events if isinstance(e, NodeEvaluated)]
    figures = []

    score = go.Figure()
    scored = [e for e in evaluated if e.score is not None]
    score.add_trace(go.Scatter(x=list(range(1, len(scored) + 1)), y=[e.score for e in scored],
                               mode="lines+markers+text", text=[short.get(e.node_id, e.node_id) for e in scored],
                               textposition="top center", name="score f"))
    best = [max(e.score for e in scored[: i + 1]) for i in range(len(scored))]
    score.add_trace(go.Scatter(x=list(range(1, len(scored) + 1)), y=best, mode="lines", name="best so far",
                               line={"dash": "dot"}))
    if gates_cfg.get("tau") is not None:
        score.add_hline(y=gates_cfg["tau"], line_dash="dash", annotation_text=f"tau {gates_cfg['tau']}")
    score.update_layout(title="Score per node, in evaluation order", xaxis_title="evaluation #",
                        yaxis_title="score", yaxis_range=[0, 1.05])
    figures.append(("score", score))

    regress = go.Figure()
    with_r = [e for e in evaluated if e.regressions is not None]
    names = [short.get(e.node_id, e.node_id) for e in with_r]
    regress.add_trace(go.Bar(x=names, y=[e.regressions for e in with_r], name="regression set"))
    cross = [e.metrics.get("cross_checkpoint.regressions") for e in with_r]
    if any(c is not None for c in cross):
        regress.add_trace(go.Bar(x=names, y=cross, name="previous checkpoint's set"))
    if gates_cfg.get("epsilon") is not None:
        regress.add_hline(y=gates_cfg["epsilon"], line_dash="dash", annotation_text=f"epsilon {gates_cfg['epsilon']}")
    regress.update_layout(title="Regressions per node", barmode="group", yaxis_title="examples right before, wrong now")
    figures.append(("regressions", regress))

    clusters = taxonomy.clusters
    if clusters:
        final_id = _final_node(events, finished)
        after = (nodes.get(final_id) or {}).get("metrics", {}).get("patterns") if final_id else None
        labels = [html(f"{c.id} {c.name}") for c in clusters]
        bars = go.Figure(go.Bar(x=labels, y=[c.size for c in clusters], name="before (failing traces)"))
        if after is not None:
            bars.add_trace(go.Bar(x=labels, y=[after.get(c.id, 0) if c.fixability == "fixable" else None
                                               for c in clusters],
                                  name=f"after ({short.get(final_id, final_id)}, fixable clusters)"))
        bars.update_layout(title="Failure clusters before / after", barmode="group", yaxis_title="failing traces")
        figures.append(("clusters", bars))

    composition = go.Figure()
    trained = [n for n in nodes.values() if n["dataset_version_id"] and n["status"] not in ("proposed", "vetoed")]
    counts = {n["id"]: _slices(store, n["dataset_version_id"]) for n in trained}
    for part in [*SLICES, "other"]:
        ys = [counts[n["id"]].get(part, 0) for n in trained]
        if any(ys):
            composition.add_trace(go.Bar(x=[f"{short[n['id']]} (it {n['iteration']})" for n in trained], y=ys,
                                         name=part, marker_color=SLICE_COLOURS[part]))
    composition.update_layout(title="Curriculum composition per trained node", barmode="stack", yaxis_title="rows")
    figures.append(("composition", composition))

    charts = "\n".join(f'<section>{fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{key}")}</section>'
                       for key, fig in figures)
    return _page(run, finished, taxonomy, nodes, short, get_plotlyjs(), charts)


def write_report(store: Store, run_id: str, out: Path | None = None) -> Path:
    return atomic_write_text(Path(out) if out else report_path(store, run_id), build_report(store, run_id))


def _final_node(events: list[EngineEvent], finished: RunFinished) -> str | None:
    promoted = next((e.node_id for e in events if isinstance(e, Promoted)), None)
    return promoted or finished.best_node


def _slices(store: Store, version_id: str) -> Counter:
    try:
        rows = store.datasets.rows(version_id)
    except (KeyError, OSError):
        return Counter()
    return Counter(r.get("slice") if r.get("slice") in SLICES else "other" for r in rows)


def _page(run: dict[str, Any], finished: RunFinished, taxonomy: TaxonomyBuilt, nodes: dict[str, Any],
          short: dict[str, str], plotly_js: str, charts: str) -> str:
    e = html
    summary = [("run", run["id"]), ("mode", run["mode"]), ("status", run["status"]),
               ("outcome", finished.outcome or "—"), ("reason", finished.reason or run.get("stop_reason") or "—"),
               ("best node", finished.best_node or "—"),
               ("best score", _score(finished.best_score)),
               ("spent", json.dumps((run.get("spent") or {}).get("spent") or {}))]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in summary)
    node_rows = "".join(
        f"<tr><td>{e(short[n['id']])}</td><td>{n['iteration']}</td><td>{e(n['status'])}</td>"
        f"<td>{_score(n['score'])}</td>"
        f"<td>{'—' if n['regressions'] is None else n['regressions']}</td>"
        f"<td>{e(_gates(n))}</td><td>{e(n['rationale'] or '')}</td></tr>" for n in nodes.values())
    cluster_rows = "".join(
        f"<tr><td>{e(c.id)}</td><td>{e(c.name)}</td><td>{e(c.kind)}</td>"
        f"<td>{e(c.size)}</td><td>{e(c.fixability)}</td></tr>"
        for c in taxonomy.clusters)
    clusters = (f"<h2>Failure taxonomy</h2><table><tr><th>id</th><th>name</th><th>kind</th><th>size</th>"
                f"<th>fixability</th></tr>{cluster_rows}</table>") if cluster_rows else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Pioneer TUI report — {e(run['id'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}section{{margin:2em 0}}</style>
<script type="text/javascript">{plotly_js}</script></head>
<body><h1>Run {e(run['id'])}</h1><table>{rows}</table>{clusters}
<h2>Search nodes</h2><table><tr><th>node</th><th>iteration</th><th>status</th><th>score</th><th>regressions</th>
<th>gates</th><th>rationale</th></tr>{node_rows}</table>
{charts}
</body></html>
"""


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _gates(node: dict[str, Any]) -> str:
    results = ((node.get("metrics") or {}).get("gates") or {}).get("results") or []
    return ", ".join(f"{r['gate']} {'✓' if r['passed'] else '✗'}" for r in results)
