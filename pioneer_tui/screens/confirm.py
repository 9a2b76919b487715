"""Rollback and promotion approval: before/after metrics, the regressions, each gate's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


@dataclass(frozen=True)
class GateReview:
    """What a person needs to approve or refuse a rollback or a promotion (plain data)."""

    kind: str  # "rollback" | "promotion"
    node_id: str | None = None
    from_model: str | None = None
    to_model: str | None = None
    reason: str = ""
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    regressions: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        if self.kind == "rollback":
            return f"Roll back from {self.from_model or '?'} to {self.to_model or '?'}?"
        return f"Promote {self.to_model or '?'}" + (f" (replacing {self.from_model})?" if self.from_model else "?")


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(before: dict[str, Any], after: dict[str, Any]) -> Table:
    table = Table(title="metrics", title_justify="left", expand=False, pad_edge=False)
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("Δ", justify="right")
    for key in list(dict.fromkeys([*before, *after])):
        b, a = before.get(key), after.get(key)
        delta = ""
        if isinstance(a, int | float) and isinstance(b, int | float):
            d = a - b
            delta = Text(f"{d:+.4f}", style="green" if d > 0 else "red" if d < 0 else "")
        table.add_row(key, "—" if b is None else _num(b), "—" if a is None else _num(a), delta)
    return table


def gates_table(gates: list[dict[str, Any]]) -> Table:
    table = Table(title="gates", title_justify="left", expand=False, pad_edge=False)
    for col in ("gate", "verdict", "value", "threshold"):
        table.add_column(col)
    for g in gates:
        verdict = Text("✓ pass", style="green") if g.get("passed") else Text("✗ fail", style="red")
        table.add_row(str(g.get("gate")), verdict, _num(g.get("value")),
                      f"{g.get('rule', '')} {_num(g.get('threshold'))}".strip())
    return table


def regressions_table(regressions: list[dict[str, Any]]) -> RenderableType:
    if not regressions:
        return Text("No regressions.", style="green")
    table = Table(title=f"{len(regressions)} regressions (passed before, fail now)", title_justify="left",
                  expand=False, pad_edge=False)
    columns = list(dict.fromkeys(k for r in regressions for k in r))
    for col in columns:
        table.add_column(col, overflow="fold", max_width=40)
    for r in regressions:
        table.add_row(*(str(r.get(c, "")) for c in columns))
    return table


def render_review(review: GateReview) -> RenderableType:
    parts: list[RenderableType] = []
    if review.node_id:
        parts.append(Text(f"node {review.node_id}", style="dim"))
    if review.reason:
        parts.append(Text(review.reason))
    for key, value in review.details.items():
        parts.append(Text(f"{key}: {value}", style="dim"))
    if review.before or review.after:
        parts.append(metrics_table(review.before, review.after))
    if review.gates:
        parts.append(gates_table(review.gates))
    parts.append(regressions_table(review.regressions))
    return Group(*parts)


class GateConfirmScreen(ModalScreen[bool]):
    """`y` approves, `n` refuses; escape decides nothing (the engine is waiting for an answer)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "decide(True)", "Approve"),
        Binding("n", "decide(False)", "Refuse"),
        Binding("escape", "nudge", "", show=False),
    ]
    DEFAULT_CSS = """
    GateConfirmScreen { align: center middle; }
    GateConfirmScreen > Vertical {
        width: 90%; max-width: 110; height: 90%; border: thick $warning; background: $surface; padding: 0 1;
    }
    GateConfirmScreen #confirm-title { text-style: bold; margin-bottom: 1; }
    GateConfirmScreen VerticalScroll { height: 1fr; }
    GateConfirmScreen Horizontal { height: auto; }
    GateConfirmScreen Button { margin-right: 2; }
    """

    def __init__(self, review: GateReview) -> None:
        super().__init__()
        self.review = review

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.review.title, id="confirm-title")
            with VerticalScroll():
                yield Static(render_review(self.review), id="confirm-body")
            with Horizontal():
                yield Button("Approve (y)", id="approve", variant="success")
                yield Button("Refuse (n)", id="refuse", variant="error")

    def action_decide(self, approve: bool) -> None:
        self.dismiss(approve)

    def action_nudge(self) -> None:
        self.notify(f"The run waits for this {self.review.kind} decision: y approves, n refuses.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "approve")
