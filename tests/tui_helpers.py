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
