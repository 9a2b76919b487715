"""Details of one search node: its pipeline (D, H, S), rationale, gate verdicts and per-slice metrics."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from widgets.formatting import number, score
from widgets.search_graph import GraphNode

PIPELINE_PARTS = (
    ("D dataset", ("D", "data", "dataset")),
    ("H hyperparameters", ("H", "hyperparams", "hyperparameters")),
    ("S strategy", ("S", "strategy")),
)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted (key, leaf) pairs, in key order, so any pipeline shape reads as a list."""
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for key in value:
            items.extend(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return items
    return [(prefix, value)]


def _fmt(value: Any) -> str:
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return ", ".join(_fmt(v) for v in value) if len(value) <= 6 else f"[{len(value)} items]"
    return number(value)


def _pipeline_sections(pipeline: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Split a pipeline into its D / H / S parts, whichever key spelling the engine used."""
    sections, rest = [], dict(pipeline)
    for title, keys in PIPELINE_PARTS:
        for key in keys:
            if key in rest:
                part = rest.pop(key)
                sections.append((title, part if isinstance(part, dict) else {"value": part}))
                break
    if rest:
        sections.append(("other", rest))
    return sections


def _metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, expand=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in flatten(metrics):
        table.add_row(key, _fmt(value))
    return table


def render_node(node: GraphNode | None, *, best: bool = False, deployed: bool = False) -> RenderableType:
    if node is None:
        return Text("Select a node (enter or click) to see its pipeline, rationale and metrics.",
                    style="italic")
    head = Text.assemble((node.name or node.id, "bold"), f"  iteration {node.iteration}  ", (node.status, "bold"))
    if best:
        head.append("  ★ best")
    if deployed:
        head.append("  ◆ deployed")
    parts: list[RenderableType] = [
        head,
        Text(node.id, style="dim"),
        Text(f"score {score(node.score)}   regressions {number(node.regressions)}   operator {node.operator or '—'}"),
    ]
    if node.modification:
        parts.append(Text(f"change: {node.modification}", style="italic"))
    if node.rationale:
        parts += [Text("\nRationale", style="bold underline"), Text(node.rationale)]
    for title, part in _pipeline_sections(node.pipeline):
        parts.append(Text(f"\n{title}", style="bold underline"))
        parts.append(Text("\n".join(f"{k} = {_fmt(v)}" for k, v in flatten(part)) or "(empty)"))
    if node.gates:
        parts.append(Text("\nGates", style="bold underline"))
        for gate in node.gates:
            verdict = ("✓ pass", "green") if gate.get("passed") else ("✗ fail", "red")
            name, value, limit = gate["words"]
            parts.append(Text.assemble((f"{verdict[0]} ", verdict[1]), f"{name}: {value} ({limit})"))
    if node.metrics:
        parts += [Text("\nMetrics", style="bold underline"), _metrics_table(node.metrics)]
    return Group(*parts)


class NodeDetails(VerticalScroll):
    """A scrollable panel; `show` replaces its content."""

    DEFAULT_CSS = """
    NodeDetails { padding: 0 1; }
    NodeDetails > Static { width: 1fr; }
    """

    def compose(self):
        yield Static(render_node(None), id="node-details-body")

    def show(self, node: GraphNode | None, *, best: bool = False, deployed: bool = False) -> None:
        self.query_one("#node-details-body", Static).update(render_node(node, best=best, deployed=deployed))
