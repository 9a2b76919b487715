"""Start a run from the TUI: production mode (the deployed model, optionally a traces file to ingest),
cold-start mode (a task description, and data or a catalog search), or a fork of a historical node
(`fork_request`). The screen only validates and builds the engine configuration; it dismisses with a RunRequest that the
app starts on its engine worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TabbedContent, TabPane

from engine.coldstart.mode import ColdStartConfig
from engine.demo import DEMO_DIR, next_week
from engine.errors import ConfigError
from engine.production import ProductionConfig
from engine.production.fork import plan_fork
from store import Store


@dataclass(frozen=True)
class RunRequest:
    """What to start: `kind` "production", "cold_start" or "fork"; its engine config (a ForkPlan for a
    fork of a historical node); a traces file to ingest first (production)."""

    kind: str
    config: Any
    traces: Path | None = None


def model_options(store: Store) -> tuple[list[tuple[str, str]], str | None]:
    """The models production mode can improve, as (label, id): only the deployed one when there is one
    (the gates compare candidates with it, so no other model can be improved), else every model."""
    deployed = store.models.deployed()
    models = [deployed] if deployed is not None else sorted(store.models.list(), key=lambda m: (m["created_at"], m["id"]))
    options = [(" · ".join(dict.fromkeys([m["id"], m.get("name") or m["id"], m["status"]])), m["id"]) for m in models]
    return options, deployed["id"] if deployed is not None else None


def traces_count(store: Store, model: dict[str, Any]) -> int:
    return store.conn.execute("SELECT COUNT(*) FROM traces WHERE model_id IN (?, ?)",
                              (model["id"], model.get("name") or model["id"])).fetchone()[0]


def fork_request(store: Store, run_id: str | None, node_id: str | None) -> RunRequest:
    """A fork of a historical node (engine.production.fork): refused with a one-line reason when it cannot be."""
    if not run_id or not node_id:
        raise ConfigError("Fork: highlight a node of a stored run in the graph first")
    return RunRequest("fork", plan_fork(store, run_id, node_id))


def _number(text: str, field: str, kind: type) -> Any:
    """An optional positive number from an Input (blank: no limit)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{field}: {text!r} is not a number; enter a positive {kind.__name__} or leave it blank")\
            from None
    if value <= 0:
        raise ConfigError(f"{field}: must be positive (got {text}); leave it blank for no limit")
    return value


class NewRunScreen(ModalScreen[RunRequest | None]):
    """Dismisses with a RunRequest (ctrl+s / Start) or None (escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "start", "Start"),
        Binding("ctrl+o", "other_mode", "Production / cold start"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    NewRunScreen { align: center middle; }
    NewRunScreen > Vertical {
        width: 90; max-width: 100%; height: auto; max-height: 100%; border: thick $primary;
        background: $surface; padding: 0 1;
    }
    NewRunScreen TabbedContent { height: auto; }
    NewRunScreen TabPane { height: auto; padding: 0; }
    NewRunScreen Horizontal { height: auto; }
    NewRunScreen Label { width: 16; padding: 1 1 0 0; }
    NewRunScreen Input, NewRunScreen Select { width: 1fr; }
    NewRunScreen #new-run-error { color: $error; height: auto; }
    NewRunScreen #new-run-buttons { height: auto; }
    NewRunScreen Button { margin-right: 2; }
    """

    def __init__(self, store: Store, *, traces_for: str | None = None, demo_dir: Path = DEMO_DIR) -> None:
        super().__init__()
        self.store = store
        self.traces_for = traces_for  # a model whose traces are asked for (the next step after a promotion)
        self.demo_dir = demo_dir

    def compose(self) -> ComposeResult:
        options, deployed = model_options(self.store)
        with Vertical():
            yield Static("[b]New run[/b] — ctrl+o switches production / cold start, ctrl+s starts it, escape "
                         "cancels.")
            if self.traces_for:
                yield Static(Text(f"{self.traces_for} has no traces yet: give a JSONL file of its judged traffic "
                                  "(the trace format in the README)."), id="new-run-hint")
            with TabbedContent(initial="production", id="new-run-kind"):
                with TabPane("Production", id="production"):
                    with Horizontal():
                        yield Label("Deployed model")
                        yield Select(options, value=deployed if deployed else Select.NULL,
                                     prompt="no models in the registry" if not options else "pick a model",
                                     allow_blank=deployed is None, id="prod-model")
                    with Horizontal():
                        yield Label("Traces file")
                        yield Input(placeholder="optional: JSONL of judged traces to ingest first", id="prod-traces")
                    with Horizontal():
                        yield Label("Max iterations")
                        yield Input("6", id="prod-iterations")
                    with Horizontal():
                        yield Label("Max minutes")
                        yield Input("30", id="prod-minutes")
                with TabPane("Cold start", id="cold_start"):
                    with Horizontal():
                        yield Label("Task")
                        yield Input(placeholder="e.g. detect spam in SMS messages", id="cold-description")
                    with Horizontal():
                        yield Label("Data")
                        yield Input(placeholder="empty: search the catalog; or a file, a source, e.g. "
                                    "reasoning-gym:basic_arithmetic", id="cold-data")
                    with Horizontal():
                        yield Label("Max iterations")
                        yield Input("4", id="cold-iterations")
                    with Horizontal():
                        yield Label("Max minutes")
                        yield Input("30", id="cold-minutes")
            yield Static("", id="new-run-error")
            with Horizontal(id="new-run-buttons"):
                yield Button("Start (ctrl+s)", id="start", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        if self.traces_for:
            self.query_one("#prod-traces", Input).focus()

    def action_other_mode(self) -> None:
        """The other tab, its first field focused (the tabs alone take a mouse or several shift+tabs)."""
        tabs = self.query_one(TabbedContent)
        tabs.active = "cold_start" if tabs.active == "production" else "production"
        self.query_one("#cold-description" if tabs.active == "cold_start" else "#prod-model").focus()

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value

    def request(self) -> RunRequest:
        """The run the form describes; ConfigError names the field to fix."""
        kind = self.query_one(TabbedContent).active
        if kind == "cold_start":
            description = self._value("cold-description").strip()
            if not description:
                raise ConfigError("Task: describe what the model should do, e.g. \"detect spam in SMS messages\"")
            return RunRequest("cold_start", ColdStartConfig(
                description=description, data=self._value("cold-data").strip() or None,
                max_iterations=_number(self._value("cold-iterations"), "Max iterations", int),
                max_minutes=_number(self._value("cold-minutes"), "Max minutes", float)))
        model = self.query_one("#prod-model", Select).value
        if model is Select.NULL or model is Select.BLANK:
            raise ConfigError("Deployed model: pick the model to improve (register one with `pioneer-tui train`)")
        row = self.store.models.get(str(model))
        if row is None:
            raise ConfigError(f"Deployed model: {model} is no longer in the registry; pick another")
        traces_text = self._value("prod-traces").strip()
        traces = Path(traces_text).expanduser() if traces_text else None
        if traces is not None and not traces.is_file():
            raise ConfigError(f"Traces file: {traces} does not exist; give a JSONL file of judged traces or leave it blank")
        if traces is None and not traces_count(self.store, row):
            demo = " (or press N on the main screen for the demo's next week)" if next_week(self.store, self.demo_dir) \
                else ""
            raise ConfigError(f"Traces file: {model} has no traces yet; give a JSONL file of its judged traffic{demo}")
        config = ProductionConfig(model=str(model),
                                  max_iterations=_number(self._value("prod-iterations"), "Max iterations", int),
                                  max_minutes=_number(self._value("prod-minutes"), "Max minutes", float))
        return RunRequest("production", config, traces)

    def action_start(self) -> None:
        try:
            request = self.request()
        except ConfigError as exc:
            self.query_one("#new-run-error", Static).update(Text(str(exc)))
            return
        self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()
        else:
            self.action_cancel()
