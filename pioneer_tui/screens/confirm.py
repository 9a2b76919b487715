"""Rollback and promotion approval, and the close call: what is restored or promoted, each gate's
verdict in words and numbers people read, the metrics before and after, and the broken items.

Text from traces and models (inputs, expected and predicted outputs) is rendered as rich `Text`,
never as markup."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from engine.gate_text import gate_words
from engine.search.loop import promote_command
from widgets.formatting import number, plural, signed


@dataclass(frozen=True)
class GateReview:
    """What a person needs to approve or refuse a rollback or a promotion (plain data). `gates` are
    GateReport results; `close_call`: the candidate failed only the regression budget."""

    kind: str  # "rollback" | "promotion"
    node_id: str | None = None
    from_model: str | None = None
    to_model: str | None = None
    reason: str = ""
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    regressions: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    rollback_to: str | None = None
    close_call: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        if self.kind == "rollback":
            return f"Roll back from {self.from_model or '?'} to {self.to_model or '?'}?"
        replacing = f" (replacing {self.from_model})" if self.from_model else ""
        if self.close_call:
            return f"Close call: promote {self.to_model or '?'}{replacing} anyway?"
        return f"Promote {self.to_model or '?'}{replacing}?"

    @property
    def columns(self) -> tuple[str, str]:
        """The metrics table's before / after headings."""
        if self.kind == "rollback":
            return f"restored {short(self.rollback_to)}", f"now {short(self.node_id)}"
        return "deployed", "candidate"


def short(node_id: str | None) -> str:
    """`run-x.n0003` -> `n0003`: the run is on screen already."""
    return str(node_id).rsplit(".", 1)[-1] if node_id else "?"


def gate_row(result: dict[str, Any]) -> tuple[Text, str, str]:
    """(✓/✗ and the gate's name, its value, what it must be): "+7.7%", "must be > 0"."""
    name, value, limit = gate_words(result)
    passed = bool(result.get("passed"))
    return Text.assemble(("✓ " if passed else "✗ ", "green" if passed else "bold red"), name), value, limit


def gates_table(gates: list[dict[str, Any]]) -> Table:
    table = Table(title="gates", title_justify="left", expand=False, pad_edge=False, show_header=False)
    for _ in range(3):
        table.add_column()
    for g in gates:
        table.add_row(*gate_row(g))
    return table


def metrics_table(before: dict[str, Any], after: dict[str, Any], columns: tuple[str, str]) -> Table:
    table = Table(title="metrics", title_justify="left", expand=False, pad_edge=False)
    table.add_column("metric")
    table.add_column(columns[0], justify="right")
    table.add_column(columns[1], justify="right")
    table.add_column("Δ", justify="right")
    for key in list(dict.fromkeys([*before, *after])):
        b, a = before.get(key), after.get(key)
        delta = Text("")
        if isinstance(a, int | float) and isinstance(b, int | float):
            d = round(a - b, 6)
            better = -d if "regression" in key else d  # fewer regressions is better
            delta = Text(signed(d), style="green" if better > 0 else "red" if better < 0 else "")
        table.add_row(Text(key), number(b), number(a), delta)
    return table


def shown(value: Any) -> str:
    """An evaluation's stored output (JSON text) as a person reads it: a label bare, spans as JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def regressions_table(regressions: list[dict[str, Any]]) -> RenderableType:
    table = Table(title=f"{plural(len(regressions), 'broken item')}: right before, wrong now", title_justify="left",
                  expand=True, pad_edge=False)
    table.add_column("input", ratio=3, overflow="fold")
    table.add_column("expected", ratio=1, overflow="fold")
    table.add_column("now predicted", ratio=1, overflow="fold")
    for r in regressions:
        table.add_row(Text(shown(r.get("input", ""))), Text(shown(r.get("expected", ""))),
                      Text(shown(r.get("prediction", "")), style="red"))
    return table


def what_happens(review: GateReview) -> Text:
    """The decision in one sentence, and what each answer does to the run."""
    if review.kind == "rollback":
        return Text(f"Restore node {short(review.rollback_to)}'s dataset and configuration (model "
                    f"{review.to_model or '?'}) and grow from there; {review.from_model or 'the current model'} is "
                    f"set aside. Refusing keeps growing from {short(review.node_id)}.")
    if review.close_call:
        return Text("Only the regression budget failed. Keeping the deployed model ends the run; it can be "
                    f"promoted later: {promote_command(review.node_id or 'NODE')}")
    return Text("Promoting ends the run. Refusing keeps the deployed model for now: the run continues with the "
                "budget left, and this candidate is not offered again.")


def render_review(review: GateReview) -> RenderableType:
    parts: list[RenderableType] = []
    if review.reason:
        parts.append(Text(review.reason, style="bold"))
    parts.append(what_happens(review))
    for key, value in review.details.items():
        parts.append(Text(f"{key}: {value}", style="dim"))
    if review.gates:
        parts.append(gates_table(review.gates))
    if review.before or review.after:
        parts.append(metrics_table(review.before, review.after, review.columns))
    if review.regressions:
        parts.append(regressions_table(review.regressions))
    return Group(*parts)


MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 96%; max-width: 120; height: 96%; border: thick $warning; background: $surface; padding: 0 1;
}}
{name} #confirm-title {{ text-style: bold; }}
{name} VerticalScroll {{ height: 1fr; }}
{name} Horizontal {{ height: auto; }}
{name} Button {{ margin-right: 2; }}
"""


class GateConfirmScreen(ModalScreen[bool]):
    """`y` approves, `n` refuses; escape decides nothing (the engine is waiting for an answer)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "decide(True)", "Approve"),
        Binding("n", "decide(False)", "Refuse"),
        Binding("escape", "nudge", "", show=False),
    ]
    DEFAULT_CSS = MODAL_CSS.format(name="GateConfirmScreen")

    def __init__(self, review: GateReview) -> None:
        super().__init__()
        self.review = review

    def compose(self) -> ComposeResult:
        refuse = "Refuse: keep growing" if self.review.kind == "rollback" else "Refuse: keep searching"
        with Vertical():
            yield Static(Text(self.review.title), id="confirm-title")
            with VerticalScroll():
                yield Static(render_review(self.review), id="confirm-body")
            with Horizontal():
                yield Button(f"{'Roll back' if self.review.kind == 'rollback' else 'Promote'} (y)", id="approve",
                             variant="success")
                yield Button(f"{refuse} (n)", id="refuse", variant="error")
        yield Footer()

    def action_decide(self, approve: bool) -> None:
        self.dismiss(approve)

    def action_nudge(self) -> None:
        self.notify(f"The run waits for this {self.review.kind} decision: y approves, n refuses.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "approve")


class PromoteAnywayScreen(ModalScreen[str | None]):
    """A close call: the best candidate failed only the regression budget. Dismisses with the person's
    reason to promote it anyway (required), or None to keep the deployed model; escape decides nothing."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "promote", "Promote anyway"),
        Binding("ctrl+n", "keep", "Keep the deployed model"),
        Binding("pagedown", "page(1)", "More", show=False),
        Binding("pageup", "page(-1)", "Back", show=False),
        Binding("escape", "nudge", "", show=False),
    ]
    DEFAULT_CSS = MODAL_CSS.format(name="PromoteAnywayScreen") + """
    PromoteAnywayScreen #override-check { color: $text-error; text-style: bold; }
    """

    def __init__(self, review: GateReview) -> None:
        super().__init__()
        self.review = review

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.review.title), id="confirm-title")
            with VerticalScroll():
                yield Static(render_review(self.review), id="confirm-body")
            yield Label("Why promote anyway? Required, recorded with your name (pgdn: more above)")
            yield Input(placeholder="e.g. the broken items are mislabelled traces", id="override-reason")
            yield Static(id="override-check")
            with Horizontal():
                yield Button("Promote anyway (ctrl+s)", id="promote", variant="warning", disabled=True)
                yield Button("Keep the deployed model (ctrl+n)", id="keep", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#promote", Button).disabled = not event.value.strip()
        if event.value.strip():
            self.query_one("#override-check", Static).update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_promote()

    def action_promote(self) -> None:
        reason = self.query_one(Input).value.strip()
        if reason:
            self.dismiss(reason)
        else:
            self.query_one("#override-check", Static).update("✗ write why: a promotion past the budget needs a reason")

    def action_keep(self) -> None:
        self.dismiss(None)

    def action_page(self, direction: int) -> None:
        """Scroll the gates and broken items while the reason keeps the focus."""
        body = self.query_one(VerticalScroll)
        body.scroll_page_down() if direction > 0 else body.scroll_page_up()

    def action_nudge(self) -> None:
        self.notify("The run waits: ctrl+s promotes anyway (with a reason), ctrl+n keeps the deployed model.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_promote() if event.button.id == "promote" else self.action_keep()
