"""Every key of the workbench, by where it works: the one table the help screen (`?`) and the README's
key table are rendered from, and that tests/test_tui_keys.py checks against each screen's bindings."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    shown: str  # as a person types it
    does: str
    names: tuple[str, ...] = ()  # Textual key names; default: `shown`

    @property
    def key_names(self) -> tuple[str, ...]:
        return self.names or (self.shown,)


@dataclass(frozen=True)
class Section:
    where: str
    keys: tuple[Key, ...]


ESC = Key("esc", "back / close", ("escape",))

SECTIONS: tuple[Section, ...] = (
    Section("Anywhere but in a dialog or a text box (dialogs show their own keys)", (
        Key("?", "this help", ("question_mark",)),
        Key("ctrl+t", "light / dark theme"),
        Key("q", "quit (asks first while a run is going)"),
        Key("ctrl+q", "quit from anywhere, dialogs included (asks first too)"),
        Key("ctrl+p", "command palette"),
    )),
    Section("Main screens: run, runs list, benchmark results", (
        Key("r", "runs list"),
        Key("t", "trace explorer (SQL, read and relabel traces)"),
        Key("B", "AdaptFT-Bench results"),
        Key("n", "new run"),
    )),
    Section("Run screen (and replay)", (
        Key("1 2 3 4", "graph · failure clusters · curation log · curriculum (data)", ("1", "2", "3", "4")),
        Key("F", "fork from the highlighted node"),
    )),
    Section("Main run screen", (
        Key("N", "the next step after a run, when one is offered: resume a stopped run, the demo's next week, "
                 "the deployed model's next run"),
        Key("d", "run the demo project (on a workspace without runs)"),
    )),
    Section("Search graph", (
        Key("↑ ↓ PgUp PgDn Home End", "move", ("up", "down", "pageup", "pagedown", "home", "end")),
        Key("enter", "node details"),
        Key("f", "fold / unfold a branch"),
        Key("p", "show / hide pruned branches"),
        Key("b", "jump to the best node"),
        Key("d", "jump to the deployed node"),
    )),
    Section("Replay (runs list → enter)", (
        Key("space", "play / pause"),
        Key(". ,", "step / step back", ("full_stop", "comma")),
        Key("] [", "next / previous iteration", ("right_square_bracket", "left_square_bracket")),
        Key("< >", "start / end", ("less_than_sign", "greater_than_sign")),
        Key("+ -", "faster / slower", ("plus", "minus")),
        ESC,
    )),
    Section("Runs list", (Key("enter", "replay the run"), Key("f5", "reload"), ESC)),
    Section("Trace explorer", (
        Key("enter", "run the SQL; on a result row: open it in full (a trace can be relabelled)"),
        Key("tab", "between the SQL and the result"),
        Key("ctrl+s", "save the result as CSV"),
        ESC,
    )),
    Section("Trace (enter on a row)", (Key("ctrl+s", "save your verdict / output (who and when are kept)"), ESC)),
    Section("New run", (Key("ctrl+o", "production / cold start"), Key("ctrl+s", "start it"),
                        Key("esc", "cancel", ("escape",)))),
    Section("Data for a cold start without data (esc decides nothing)", (
        Key("space", "tick a dataset (several of one task type are combined)"),
        Key("ctrl+s", "use the ticked"),
        Key("ctrl+n", "none of them (a teacher writes seed data, or the run says what to give)"),
    )),
    Section("Curriculum review (before every train step)", (
        Key("a", "approve"),
        Key("v", "veto with a reason"),
        Key("e", "edit the highlighted row"),
        Key("n", "add a row"),
        Key("x", "remove the row"),
        Key("s", "change the slice ratios"),
        Key("ctrl+s", "submit the edited curriculum"),
    )),
    Section("Veto (v in the review)", (
        Key("ctrl+s", "veto (also enter in your words; tab moves to the reasons, space picks one)"),
        Key("esc", "cancel", ("escape",)),
    )),
    Section("Edit a row (e / n in the review)", (
        Key("ctrl+s", "save (refused with the reason beside the field)"),
        Key("esc", "cancel", ("escape",)),
    )),
    Section("Rollback / promotion (esc decides nothing: the run waits)", (
        Key("y", "approve (promote / roll back)"),
        Key("n", "refuse (a promotion: keep searching with the budget left; a rollback: keep growing from this "
                 "node)"),
    )),
    Section("Close call: promote anyway (esc decides nothing)", (
        Key("ctrl+s", "promote anyway (needs your reason)"),
        Key("ctrl+n", "keep the deployed model"),
        Key("pgdn pgup", "the gates and broken items", ("pagedown", "pageup")),
    )),
    Section("Benchmark results", (
        Key("↑ ↓", "pick a result", ("up", "down")),
        Key("o", "open another result.json"),
        Key("f5", "reload"),
        ESC,
    )),
)

# The main screens' navigation keys (the second section), bound on each of them.
NAVIGATION: tuple[tuple[str, str, str], ...] = (
    ("r", "app.runs", "Runs"), ("t", "app.traces", "Traces"), ("B", "app.bench", "Bench"), ("n", "app.new_run", "New run"),
)


def navigation(*shown: str) -> list[Binding]:
    """The navigation bindings for a main screen; only the keys in `shown` take room in its footer."""
    return [Binding(key, action, label, show=key in shown) for key, action, label in NAVIGATION]


def _keys_text(section: Section) -> str:
    return " · ".join(f"`{k.shown}` {k.does}" for k in section.keys)


def help_markdown() -> str:
    """The key sections as Markdown for the help screen."""
    return "\n\n".join(f"**{s.where}**: {_keys_text(s)}" for s in SECTIONS)


def markdown_table() -> str:
    """The same keys as the README's key table, one row per place."""
    return "\n".join(["| where | keys |", "|---|---|", *(f"| {s.where} | {_keys_text(s)} |" for s in SECTIONS)])
