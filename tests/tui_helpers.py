"""Helpers shared by the Pilot tests of the workbench."""

from __future__ import annotations

import time


async def settle(pilot, predicate, timeout: float = 10.0) -> None:
    """Let the app run until `predicate()` holds (fails the test after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def notes(app) -> list[str]:
    """The messages of the app's notifications, oldest first."""
    return [n.message for n in app._notifications]


def screen_text(app) -> str:
    """What the terminal shows now, as plain text lines (as a person reads the screen)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
