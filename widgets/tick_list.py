"""A SelectionList whose boxes say whether they are ticked: Textual draws the same "X" in every box and
tells ticked from unticked by colour alone, which a monochrome terminal, a screen reader or a text
capture loses."""

from __future__ import annotations

from typing import Generic, TypeVar

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import Checkbox, SelectionList

T = TypeVar("T")
TICKED, UNTICKED = "✓", " "


class TickList(SelectionList[T], Generic[T]):
    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        index = self.scroll_offset.y + y
        # segment 1 is the box's inside, the X of Textual's toggle buttons (Checkbox's, SelectionList's)
        if len(segments) < 2 or segments[1].text != Checkbox.BUTTON_INNER or index >= self.option_count:
            return strip
        ticked = self.get_option_at_index(index).value in self.selected
        segments[1] = Segment(TICKED if ticked else UNTICKED, segments[1].style)
        return Strip(segments, strip.cell_length)
