"""The run's data-curation.md as rendered Markdown that follows the end of a growing log."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown

EMPTY = "*No curation log yet: it starts with the run's first event.*"


class CurationLogView(VerticalScroll):
    """Anchored to the end (Textual's `anchor`): it follows new entries until the reader scrolls
    up, and follows again once they scroll back to the end."""

    DEFAULT_CSS = """
    CurationLogView { padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = ""

    def compose(self) -> ComposeResult:
        yield Markdown(EMPTY)

    def on_mount(self) -> None:
        self.anchor()

    @property
    def text(self) -> str:
        return self._text

    def set_markdown(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.query_one(Markdown).update(text or EMPTY)
