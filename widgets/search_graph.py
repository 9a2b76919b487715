"""The search-graph pane: the MCGS tree as compact lines, one node per line.

A Line-API widget (ScrollView) so a refresh costs O(nodes) to lay out and only the visible lines
are styled. Single-child chains stay in one column (indentation grows only where the search
branched), so a 200-iteration greedy chain stays legible; pruned branches (every node rejected or
rolled back) fold into one line until `p` shows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

PRUNED_STATUSES = frozenset({"rejected", "rolled_back", "failed", "vetoed"})
STATUS_MARKERS = {
    "proposed": "○", "approved": "○", "training": "◐", "evaluated": "●", "accepted": "●",
    "rejected": "✗", "vetoed": "⊘", "rolled_back": "↺", "deployed": "◆", "failed": "!", "stopped": "‖",
    "refused": "⊖", "close_call": "◒",
}


@dataclass
class GraphNode:
    """One node of the search graph as the pane shows it."""

    id: str
    parent_id: str | None = None
    name: str = ""  # short display name; the id when empty
    iteration: int = 0
    status: str = "proposed"
    score: float | None = None
    regressions: int | None = None
    operator: str = ""
    modification: str = ""
    rationale: str = ""
    pipeline: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # each gate's verdict, with "words": (what it measures, its value, what it must be) as a person reads them
    gates: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Line:
    node: GraphNode
    guide: str
    hidden: int  # descendants folded under this line


def node_label(node: GraphNode, *, best: bool, deployed: bool, hidden: int) -> list[tuple[str, str]]:
    """The label's text parts as (text, component-class suffix) pairs; plain data, easy to test."""
    parts = [(STATUS_MARKERS.get(node.status, "?") + " ", node.status), (node.name or node.id, "id")]
    if node.score is not None:
        parts.append((f" {node.score:.3f}", "score"))
    if node.regressions is not None:
        parts.append((f" r{node.regressions}", "regressions" if node.regressions else "dim"))
    parts.append((f" {node.status.replace('_', ' ')}", node.status))
    if best:
        parts.append((" ★best", "best"))
    if deployed:
        parts.append((" ◆deployed", "deployed"))
    if hidden:
        parts.append((f" ▸ +{hidden} folded", "dim"))
    if node.modification:
        parts.append((f"  ← {node.modification}", "edge"))
    elif node.operator and node.parent_id:
        parts.append((f"  ← {node.operator}", "edge"))
    return parts


class SearchGraph(ScrollView, can_focus=True):
    """Keyboard: up/down/page keys move, enter selects, f folds, b best, d deployed, p pruned."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump_line(0)", "Top", show=False),
        Binding("end", "jump_line(-1)", "Bottom", show=False),
        Binding("enter", "select", "Details", show=False),
        Binding("f", "toggle_fold", "Fold", show=False),
        Binding("b", "jump_best", "Best"),
        Binding("d", "jump_deployed", "Deployed", show=False),
        Binding("p", "toggle_pruned", "Pruned", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "search-graph--cursor", "search-graph--guide", "search-graph--id", "search-graph--dim",
        "search-graph--score", "search-graph--regressions", "search-graph--best",
        "search-graph--deployed", "search-graph--edge", "search-graph--proposed",
        "search-graph--approved", "search-graph--training", "search-graph--evaluated",
        "search-graph--accepted", "search-graph--rejected", "search-graph--vetoed",
        "search-graph--rolled_back", "search-graph--failed", "search-graph--stopped",
        "search-graph--refused", "search-graph--close_call",
    }
    DEFAULT_CSS = """
    SearchGraph { background: $surface; }
    SearchGraph > .search-graph--cursor { background: $accent 40%; }
    SearchGraph:focus > .search-graph--cursor { background: $accent; color: $text; }
    SearchGraph > .search-graph--guide { color: $text-muted; }
    SearchGraph > .search-graph--id { color: $text; text-style: bold; }
    SearchGraph > .search-graph--dim { color: $text-muted; }
    SearchGraph > .search-graph--score { color: $text; }
    SearchGraph > .search-graph--regressions { color: $warning; }
    SearchGraph > .search-graph--best { color: $warning; text-style: bold; }
    SearchGraph > .search-graph--deployed { color: $success; text-style: bold; }
    SearchGraph > .search-graph--edge { color: $secondary; }
    SearchGraph > .search-graph--proposed { color: $text-muted; }
    SearchGraph > .search-graph--approved { color: $text-muted; text-style: bold; }
    SearchGraph > .search-graph--training { color: $accent; text-style: bold; }
    SearchGraph > .search-graph--evaluated { color: $text; }
    SearchGraph > .search-graph--accepted { color: $success; }
    SearchGraph > .search-graph--rejected { color: $error; }
    SearchGraph > .search-graph--vetoed { color: $error; text-style: italic; }
    SearchGraph > .search-graph--rolled_back { color: $error; text-style: italic; }
    SearchGraph > .search-graph--failed { color: $error; text-style: bold; }
    SearchGraph > .search-graph--stopped { color: $warning; text-style: italic; }
    SearchGraph > .search-graph--refused { color: $warning; text-style: italic; }
    SearchGraph > .search-graph--close_call { color: $warning; }
    """

    class NodeHighlighted(Message):
        """The cursor moved onto a node."""

        def __init__(self, node_id: str) -> None:
            self.node_id = node_id
            super().__init__()

    class NodeSelected(Message):
        """A node was chosen (enter or click)."""

        def __init__(self, node_id: str) -> None:
            self.node_id = node_id
            super().__init__()

    cursor_line: reactive[int] = reactive(0, always_update=True)
    show_pruned: reactive[bool] = reactive(False)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._graph_nodes: list[GraphNode] = []
        self._kids: dict[str | None, list[GraphNode]] = {}
        self._by_id: dict[str, GraphNode] = {}
        self._pruned_roots: set[str] = set()
        self._folded: set[str] = set()
        self._unfolded: set[str] = set()
        self._lines: list[_Line] = []
        self._line_of: dict[str, int] = {}
        self._styles: dict[str, Style] = {}
        self.best_id: str | None = None
        self.deployed_id: str | None = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """An empty graph lets its keys through (`d` on the main screen of a new workspace is the demo)."""
        return bool(self._lines) or action not in ("jump_deployed", "jump_best", "toggle_fold", "toggle_pruned")

    # -- data --------------------------------------------------------------------------------
    def set_graph(self, nodes: Sequence[GraphNode], *, best_id: str | None = None,
                  deployed_id: str | None = None) -> None:
        """Replace the graph; the cursor stays on the same node when it still exists."""
        current = self.highlighted_id
        self._graph_nodes = list(nodes)
        self._by_id = {n.id: n for n in self._graph_nodes}
        self.best_id, self.deployed_id = best_id, deployed_id
        had_lines = bool(self._lines)
        self._kids = {}
        for node in self._graph_nodes:
            parent = node.parent_id if node.parent_id in self._by_id else None
            self._kids.setdefault(parent, []).append(node)
        self._pruned_roots = self._find_pruned_roots()
        self._relayout(keep=current)
        if had_lines != bool(self._lines):
            self.refresh_bindings()

    @property
    def line_count(self) -> int:
        return len(self._lines)

    @property
    def highlighted_id(self) -> str | None:
        if 0 <= self.cursor_line < len(self._lines):
            return self._lines[self.cursor_line].node.id
        return None

    def visible_text(self) -> list[str]:
        """Every laid-out line as plain text (what the pane would show with infinite height)."""
        return [line.guide + "".join(t for t, _ in self._label_parts(line)) for line in self._lines]

    def _find_pruned_roots(self) -> set[str]:
        """Nodes whose whole subtree is rejected/rolled back, and whose parent's is not."""
        pruned: dict[str, bool] = {}
        for node in self._post_order():
            kids = self._kids.get(node.id, [])
            pruned[node.id] = node.status in PRUNED_STATUSES and all(pruned[k.id] for k in kids)
        return {
            n.id for n in self._graph_nodes
            if pruned[n.id] and not (n.parent_id in self._by_id and pruned[n.parent_id])
        }

    def _post_order(self) -> list[GraphNode]:
        order: list[GraphNode] = []
        stack: list[tuple[GraphNode, bool]] = [(n, False) for n in reversed(self._kids.get(None, []))]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(self._kids.get(node.id, [])))
        return order

    def _is_folded(self, node_id: str) -> bool:
        if node_id in self._folded:
            return True
        return node_id in self._pruned_roots and not self.show_pruned and node_id not in self._unfolded

    def _subtree_size(self, node: GraphNode) -> int:
        count, stack = 0, list(self._kids.get(node.id, []))
        while stack:
            child = stack.pop()
            count += 1
            stack.extend(self._kids.get(child.id, []))
        return count

    def _relayout(self, keep: str | None = None) -> None:
        lines: list[_Line] = []
        roots = self._kids.get(None, [])
        stack: list[tuple[GraphNode, str, str]] = [(r, "", "") for r in reversed(roots)]
        while stack:
            node, guide, cont = stack.pop()
            kids = self._kids.get(node.id, [])
            folded = bool(kids) and self._is_folded(node.id)
            lines.append(_Line(node, guide, self._subtree_size(node) if folded else 0))
            if folded or not kids:
                continue
            if len(kids) == 1:
                stack.append((kids[0], cont, cont))
                continue
            for i in reversed(range(len(kids))):
                last = i == len(kids) - 1
                stack.append((kids[i], cont + ("└─" if last else "├─"), cont + ("  " if last else "│ ")))
        self._lines = lines
        self._line_of = {line.node.id: i for i, line in enumerate(lines)}
        width = max((len(line.guide) + 60 for line in lines), default=0)
        self.virtual_size = Size(width, len(lines))
        if keep is not None and keep in self._line_of:
            self.cursor_line = self._line_of[keep]
        else:
            self.cursor_line = min(self.cursor_line, max(len(lines) - 1, 0))
        self.refresh()

    # -- navigation --------------------------------------------------------------------------
    def jump_to(self, node_id: str) -> bool:
        """Move the cursor to a node, unfolding whatever hides it; False if it is unknown."""
        node = self._by_id.get(node_id)
        if node is None:
            return False
        ancestor = self._by_id.get(node.parent_id or "")
        while ancestor is not None:
            self._folded.discard(ancestor.id)
            if ancestor.id in self._pruned_roots:
                self._unfolded.add(ancestor.id)
            ancestor = self._by_id.get(ancestor.parent_id or "")
        self._relayout(keep=node_id)
        self.scroll_to_region_line(self.cursor_line)
        return True

    def scroll_to_region_line(self, line: int) -> None:
        height = max(self.scrollable_content_region.height, 1)
        if line < self.scroll_y or line >= self.scroll_y + height:
            self.scroll_to(y=max(line - height // 2, 0), animate=False, immediate=True, force=True)

    def watch_cursor_line(self, old: int, new: int) -> None:
        self.refresh()
        if self._lines and 0 <= new < len(self._lines) and old != new:
            self.scroll_to_region_line(new)
            self.post_message(self.NodeHighlighted(self._lines[new].node.id))

    def watch_show_pruned(self) -> None:
        self._unfolded.clear()
        self._relayout(keep=self.highlighted_id)

    def action_cursor(self, delta: int) -> None:
        if self._lines:
            self.cursor_line = max(0, min(len(self._lines) - 1, self.cursor_line + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(self.scrollable_content_region.height - 1, 1))

    def action_jump_line(self, line: int) -> None:
        if self._lines:
            self.cursor_line = line % len(self._lines)

    def action_select(self) -> None:
        if (node_id := self.highlighted_id) is not None:
            self.post_message(self.NodeSelected(node_id))

    def action_toggle_fold(self) -> None:
        node_id = self.highlighted_id
        if node_id is None or not self._kids.get(node_id):
            return
        if self._is_folded(node_id):
            self._folded.discard(node_id)
            self._unfolded.add(node_id)
        else:
            self._unfolded.discard(node_id)
            self._folded.add(node_id)
        self._relayout(keep=node_id)

    def action_toggle_pruned(self) -> None:
        self.show_pruned = not self.show_pruned

    def action_jump_best(self) -> None:
        if self.best_id is None or not self.jump_to(self.best_id):
            self.notify("No best node yet: nothing has been accepted.", severity="warning")

    def action_jump_deployed(self) -> None:
        if self.deployed_id is None or not self.jump_to(self.deployed_id):
            self.notify("No node of this run is deployed.", severity="warning")

    def on_click(self, event: events.Click) -> None:
        line = int(self.scroll_y) + event.y
        if 0 <= line < len(self._lines):
            self.cursor_line = line
            self.action_select()

    # -- rendering ---------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            key = f"search-graph--{name}"
            style = self.get_component_rich_style(key) if key in self.COMPONENT_CLASSES else Style()
            self._styles[name] = style
        return style

    def _label_parts(self, line: _Line) -> list[tuple[str, str]]:
        node = line.node
        return node_label(node, best=node.id == self.best_id, deployed=node.id == self.deployed_id,
                          hidden=line.hidden)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, base)
        line = self._lines[index]
        text = Text(no_wrap=True, end="")
        text.append(line.guide, self._style("guide"))
        for part, style in self._label_parts(line):
            text.append(part, self._style(style))
        if index == self.cursor_line:
            text.stylize(self._style("cursor"))
        segments: Iterable[Segment] = text.render(self.app.console)
        strip = Strip(list(segments)).apply_style(base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)
