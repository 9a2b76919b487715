"""Failure clusters: a table (size, fixability, probe confirmation) and the highlighted cluster's examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static


@dataclass(frozen=True)
class ClusterExample:
    trace_id: str
    input: str
    prediction: str
    correction: str
    reasoning: str = ""


@dataclass(frozen=True)
class ClusterView:
    id: str
    name: str
    kind: str
    size: int
    fixability: str
    confirmation_rate: float | None = None
    characteristics: dict[str, Any] = field(default_factory=dict)
    examples: tuple[ClusterExample, ...] = ()


def characteristic_text(value: Any) -> str:
    """One characteristic on one line: dicts as `key value` pairs, lists joined, floats short."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {characteristic_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(characteristic_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def render_examples(cluster: ClusterView | None) -> RenderableType:
    if cluster is None:
        return Text("No failure taxonomy yet.", style="italic")
    parts: list[RenderableType] = [Text.assemble(
        (cluster.name, "bold"), f"  ({cluster.kind}, {cluster.size} failures, {cluster.fixability})")]
    for key, value in cluster.characteristics.items():
        parts.append(Text.assemble((f"{key}: ", "bold"), characteristic_text(value)))
    if not cluster.examples:
        parts.append(Text("no representative examples recorded"))
    for ex in cluster.examples:
        parts.append(Text.assemble(("\n" + ex.trace_id, "bold"), "\n  input      ", ex.input,
                                   "\n  prediction ", (ex.prediction, "red"),
                                   "\n  correction ", (ex.correction, "green")))
        if ex.reasoning:
            parts.append(Text("  judge      " + ex.reasoning, style="italic"))
    return Group(*parts)


class ClusterPane(Vertical):
    """Move through the table; the panel below follows the highlighted cluster."""

    DEFAULT_CSS = """
    ClusterPane > DataTable { height: 1fr; min-height: 4; }
    ClusterPane > VerticalScroll { height: 1fr; border-top: solid $primary; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clusters: list[ClusterView] = []

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="cluster-table")
        table.add_columns("cluster", "kind", "size", "fixability", "probe conf.")
        yield table
        with VerticalScroll(id="cluster-examples"):
            yield Static(render_examples(None), id="cluster-examples-body")

    @property
    def clusters(self) -> list[ClusterView]:
        return list(self._clusters)

    def set_clusters(self, clusters: Sequence[ClusterView]) -> None:
        if list(clusters) == self._clusters:
            return
        self._clusters = list(clusters)
        table = self.query_one(DataTable)
        table.clear()
        for c in self._clusters:
            rate = "—" if c.confirmation_rate is None else f"{c.confirmation_rate:.0%}"
            table.add_row(c.name, c.kind, str(c.size), c.fixability, rate, key=c.id)
        self._show(0 if self._clusters else None)

    def _show(self, index: int | None) -> None:
        cluster = self._clusters[index] if index is not None and index < len(self._clusters) else None
        self.query_one("#cluster-examples-body", Static).update(render_examples(cluster))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._show(event.cursor_row)
        self.query_one("#cluster-examples", VerticalScroll).focus()
