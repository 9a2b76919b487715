"""The dataset picker a cold-start run without --data shows in the TUI (issue 18): the best match starts
ticked, the highlighted match says why it matches, several of one task type may be ticked, mixed task
types and an empty tick are refused in place, ctrl+n chooses none; card text is shown as data."""

from __future__ import annotations

import pytest
from test_catalog import NEWS, PEOPLE, SPAM, Cards, WordsEmbedder
from textual.app import App
from textual.widgets import SelectionList, Static

from engine.catalog import Catalog, DatasetCard
from pioneer_tui.screens.data_choice import DataChoiceScreen

pytestmark = pytest.mark.anyio

MARKUP = DatasetCard("evil", "SMS [bold]spam[/bold] messages", "classification",
                     "Text messages, spam or ham [link=x]click[/link].", ("ham", "spam"), 10, origin="local")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Host(App[None]):
    def __init__(self, search) -> None:
        super().__init__()
        self.search = search
        self.answers: list = []

    def on_mount(self) -> None:
        self.push_screen(DataChoiceScreen(self.search), self.answers.append)


def search(description: str = "flag spam text messages"):
    return Catalog([Cards(SPAM, MARKUP, NEWS, PEOPLE)], WordsEmbedder(), 0.3).search(description,
                                                                                      task="classification")


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_the_best_match_starts_ticked_and_ctrl_s_uses_it():
    found = search()
    app = Host(found)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert screen.query_one(SelectionList).selected == [found.matches.index(found.best)]
        assert "similarity" in text(screen, "#data-why")
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.answers == [(found.matches.index(found.best),)]


async def test_mixed_task_types_and_nothing_ticked_are_refused_in_place_and_ctrl_n_is_none():
    found = search()
    app = Host(found)
    people = next(i for i, m in enumerate(found.matches) if m.card.task == "ner")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        listing = screen.query_one(SelectionList)
        listing.select(people)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "different task types" in text(screen, "#data-check") and app.answers == []
        listing.deselect_all()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "tick a dataset" in text(screen, "#data-check")
        await pilot.press("escape")  # decides nothing: the run waits
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("ctrl+n")
        await pilot.pause()
    assert app.answers == [()]


async def test_card_text_is_shown_as_data_not_markup():
    found = search()
    app = Host(found)
    evil = next(i for i, m in enumerate(found.matches) if m.card.source == "evil")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        listing = app.screen.query_one(SelectionList)
        assert "[bold]spam[/bold]" in str(listing.get_option_at_index(evil).prompt)
        listing.highlighted = evil
        await pilot.pause()
        assert "[link=x]click[/link]" in text(app.screen, "#data-why")
