"""The real AgentLoop on the fake NodeRunner, started from the TUI: a person answers its human gates with
keys (tests/test_tui_review.py, tests/test_tui_confirm.py). Milliseconds per node, no model."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from fake_runner import Result, fake_run
from rich.console import Console
from textual.app import App
from textual.screen import Screen

from engine.search.budget import BudgetLimits
from engine.search.gates import GateConfig
from engine.search.loop import LoopConfig, run_loop
from pioneer_tui.app import EngineSession, create_app
from store import Store


def loop_hook(box: dict[str, Any], outcome: Callable[[Any], Result], iterations: int, budget: float = 0.02):
    """A StartRun hook: a production-like run on the fake runner; `box` gets its run id, then its result."""
    def hook(session: EngineSession) -> None:
        store = Store(session.workspace)
        try:
            bus, parts, _ = fake_run(store, outcome, LoopConfig(gates=GateConfig(max_regression_rate=budget)))
            bus.subscribe(session.on_event)
            box["run_id"] = bus.run_id
            box["result"] = run_loop(bus, parts, session.reviewer, BudgetLimits(iterations=iterations),
                                     session.should_stop)
        finally:
            store.close()
    return hook


def loop_app(tmp_path, box: dict[str, Any], outcome: Callable[[Any], Result], iterations: int, **kw: Any):
    store = Store(tmp_path / "ws")
    return create_app(store, start_demo=loop_hook(box, outcome, iterations, **kw), offer_demo=False), store


def rendered(renderable: Any, width: int = 400) -> str:
    """A rich renderable as the plain text a terminal of `width` columns shows (wide: sentences unwrapped)."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.file.getvalue()


class ScreenHost(App):
    """A bare app showing one screen: snapshots of a modal that other panes' changes cannot move."""

    def __init__(self, make_screen: Callable[[], Screen]) -> None:
        super().__init__()
        self.make_screen = make_screen

    def on_mount(self) -> None:
        self.push_screen(self.make_screen())
