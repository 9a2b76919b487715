"""Failure clusters: a one-line count of what is fixable, a table (id, size, fixability, probe confirmation)
and the highlighted cluster's kind, characteristics and examples. The ids (C4, ...) are the ones the
curriculum's quality report, the node metrics and the curation log use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from widgets.formatting import number, percent, plural, value_text


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


def cluster_summary(clusters: Sequence[ClusterView]) -> str:
    """The split every other pane uses: fixable failures (with a correction) are what the search targets;
    external ones are not trained on: those without a correction, and poison."""
    if not clusters:
        return "Failure clusters · no failure taxonomy yet"
    total = sum(c.size for c in clusters)
    fixable = sum(c.size for c in clusters if c.fixability == "fixable")
    uncorrected = sum(c.size for c in clusters if c.fixability != "fixable" and c.kind == "uncorrected")
    poison = total - fixable - uncorrected
    return (f"Failure clusters · {plural(total, 'failure')} in {plural(len(clusters), 'cluster')}: {fixable} fixable "
            f"(what the search targets), {total - fixable} external ({uncorrected} without a correction, {poison} poison)")


def render_examples(cluster: ClusterView | None) -> RenderableType:
    if cluster is None:
        return Text("No failure taxonomy yet.", style="italic")
    parts: list[RenderableType] = [Text.assemble(
        (f"{cluster.id} {cluster.name}", "bold"),
        f"  ({cluster.kind.replace('_', ' ')}, {plural(cluster.size, 'failure')}, {cluster.fixability})")]
    for key, value in cluster.characteristics.items():
        parts.append(Text.assemble((f"{key}: ", "bold"), value_text(value)))
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
    NAME_WIDTH = 40

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clusters: list[ClusterView] = []

    def compose(self) -> ComposeResult:
        yield Static(cluster_summary([]), id="cluster-summary", classes="pane-title")
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="cluster-table")
        table.add_column("id")
        table.add_column("cluster", width=self.NAME_WIDTH)
        table.add_columns("size", "fixability", "probe")
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
        self.query_one("#cluster-summary", Static).update(Text(cluster_summary(self._clusters)))
        table = self.query_one(DataTable)
        table.clear()
        for c in self._clusters:
            name = c.name if len(c.name) <= self.NAME_WIDTH else c.name[: self.NAME_WIDTH - 1] + "…"
            table.add_row(Text(c.id), Text(name), Text(number(c.size), justify="right"), Text(c.fixability),
                          Text(percent(c.confirmation_rate, digits=0), justify="right"), key=c.id)
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
