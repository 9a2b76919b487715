"""Two-line run status: mode, iteration, best score, regressions, budget, and the running step's progress."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.widget import Widget

BAR_WIDTH = 24


@dataclass(frozen=True)
class StepProgress:
    label: str
    step: int
    total: int
    eta_s: float | None = None
    loss: float | None = None


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


def format_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_tokens(tokens: float) -> str:
    return f"{tokens / 1000:.1f}k" if tokens >= 1000 else f"{int(tokens)}"


def progress_bar(step: int, total: int, width: int = BAR_WIDTH) -> str:
    frac = 0.0 if total <= 0 else min(max(step / total, 0.0), 1.0)
    filled = frac * width
    whole = int(filled)
    bar = "━" * whole
    if whole < width:
        bar += "╸" if filled - whole >= 0.5 else "─"
        bar += "─" * (width - whole - 1)
    return bar


def budget_text(spent: dict[str, float], limits: dict[str, float]) -> str:
    parts = []
    if "seconds" in spent:
        limit = limits.get("seconds")
        parts.append(format_duration(spent["seconds"]) + (f"/{format_duration(limit)}" if limit else ""))
    if spent.get("tokens"):
        parts.append(f"{format_tokens(spent['tokens'])} tok")
    if "dollars" in spent:
        limit = limits.get("dollars")
        parts.append(f"${spent['dollars']:.2f}" + (f"/${limit:.2f}" if limit else ""))
    return " ".join(parts) if parts else "—"


def status_lines(status: RunStatus) -> tuple[str, str]:
    best = "—" if status.best_score is None else f"{status.best_score:.3f}"
    regressions = "—" if status.regressions is None else str(status.regressions)
    first = (f"{status.mode or 'no run'} · {status.state} · iter {status.iteration} · best {best} "
             f"(regr {regressions}) · {budget_text(status.spent, status.limits)}")
    p = status.progress
    if p is None:
        second = status.note or "idle"
    else:
        pct = 0 if p.total <= 0 else int(100 * p.step / p.total)
        second = f"{p.label} {progress_bar(p.step, p.total)} {p.step}/{p.total} {pct:3d}%"
        if p.loss is not None:
            second += f" loss {p.loss:.3f}"
        if p.eta_s is not None:
            second += f" ETA {format_duration(p.eta_s)}"
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
