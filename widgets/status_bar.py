"""Two-line run status: mode, iteration, best score, regressions, budget, and the running step's progress."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.widget import Widget

from widgets.formatting import budget_text, duration, number, plural, score

BAR_WIDTH = 24


@dataclass(frozen=True)
class StepProgress:
    label: str
    step: int
    total: int  # 0 until the trainer's first report says how many steps it counts
    eta_s: float | None = None
    loss: float | None = None
    elapsed_s: float | None = None  # in the current phase: preparing (since the start) or evaluating


@dataclass(frozen=True)
class RunStatus:
    run_id: str = ""
    mode: str = ""
    state: str = "idle"
    iteration: int = 0
    best_score: float | None = None
    regressions: int | None = None
    spent: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    progress: StepProgress | None = None
    note: str = ""


def progress_bar(step: int, total: int, width: int = BAR_WIDTH) -> str:
    frac = 0.0 if total <= 0 else min(max(step / total, 0.0), 1.0)
    filled = frac * width
    whole = int(filled)
    bar = "━" * whole
    if whole < width:
        bar += "╸" if filled - whole >= 0.5 else "─"
        bar += "─" * (width - whole - 1)
    return bar


def progress_text(p: StepProgress) -> str:
    """"train n0003 ━━━╸── 45/120  37% loss 0.412 ETA 0:32"; before the trainer's first report the step
    says it is preparing and for how long, after its last one that it is evaluating."""
    if p.total <= 0:
        waited = "" if p.elapsed_s is None else f" {duration(p.elapsed_s)}"
        return f"{p.label} · preparing (loading, tokenizing or embedding){waited}"
    pct = int(100 * min(p.step, p.total) / p.total)
    text = f"{p.label} {progress_bar(p.step, p.total)} {number(p.step)}/{number(p.total)} {pct:3d}%"
    if p.loss is not None:
        text += f" loss {p.loss:.3f}"
    if p.step >= p.total:
        return text + " · evaluating" + ("" if p.elapsed_s is None else f" {duration(p.elapsed_s)}")
    if p.eta_s is not None:
        text += f" ETA {duration(p.eta_s)}"
    return text


def status_lines(status: RunStatus) -> tuple[str, str]:
    if not status.run_id:
        return "No run on screen", status.note or "d runs the demo project · n starts a new run · r lists runs"
    regressions = "" if status.regressions is None else f" ({plural(status.regressions, 'regression')})"
    first = (f"{status.mode or 'run'} · {status.state} · iter {status.iteration} · best "
             f"{score(status.best_score)}{regressions} · {budget_text(status.spent, status.limits)}")
    second = progress_text(status.progress) if status.progress is not None else status.note or status.state
    return first, second


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar {
        height: 2; background: $panel; color: $foreground; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._status = RunStatus()

    @property
    def status(self) -> RunStatus:
        return self._status

    def set_status(self, status: RunStatus) -> None:
        if status != self._status:
            self._status = status
            self.refresh()

    def render(self) -> Text:
        first, second = status_lines(self._status)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(first, "bold")
        text.append("\n")
        text.append(second)
        return text
