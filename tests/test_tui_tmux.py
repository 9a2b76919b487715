"""Smoke test of the real `pioneer-tui` in a real 80x24 terminal: tmux runs it, sends keys, and the
screen is read back with capture-pane. Skipped (with the reason) where tmux is not installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.fixture_run import build_fixture_run

from store import Store

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install -y tmux)")


def pioneer_command(workspace: Path) -> list[str]:
    script = Path(sys.executable).parent / "pioneer-tui"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "pioneer_tui.cli"]
    return [*base, "--workspace", str(workspace)]


class Tmux:
    """One private tmux server (its own socket) holding one session running the app. The pane stays
    after the app exits (remain-on-exit), so an app that dies shows its traceback and fails the wait
    at once instead of after the timeout."""

    def __init__(self, tmp_path: Path, command: list[str]) -> None:
        self.socket = f"pioneer-test-{os.getpid()}-{tmp_path.name}"
        # COLUMNS/LINES (set by pytest) would override the pane's real size: drop them.
        env_cmd = ["env", "-u", "COLUMNS", "-u", "LINES", "TERM=xterm-256color", *command]
        self.run("-f", "/dev/null", "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
                 "new-session", "-d", "-s", "app", "-x", "80", "-y", "24", " ".join(map(_quote, env_cmd)))

    def run(self, *args: str) -> str:
        out = subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=20)
        return out.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "app")

    def send(self, *keys: str) -> None:
        self.run("send-keys", "-t", "app", *keys)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            assert self.alive(), f"the app exited before {text!r} appeared; the screen was:\n{self.screen()}"
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def wait_gone(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text in self.screen():
            assert time.monotonic() < deadline, f"{text!r} never went away"
            time.sleep(0.2)

    def alive(self) -> bool:
        """Whether the app still runs (its pane is kept, dead, once it exits)."""
        return self.run("display-message", "-p", "-t", "app", "#{pane_dead}").strip() == "0"

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True)


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"


@pytest.fixture
def tmux_app(tmp_path):
    sessions: list[Tmux] = []

    def start(workspace: Path) -> Tmux:
        session = Tmux(tmp_path, pioneer_command(workspace))
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


def test_real_app_in_tmux_shows_the_run_and_answers_keys(tmp_path, tmux_app):
    workspace = tmp_path / "ws"
    with Store(workspace) as store:
        build_fixture_run(store)
    tmux = tmux_app(workspace)
    screen = tmux.wait_for("best 0.968")
    assert "◆ n0005 0.968 r1 deployed ★best" in screen
    tmux.send("2")
    assert "c1  change_language ↔ translate" in tmux.wait_for("fixability  probe")
    tmux.send("?")
    tmux.wait_for("Pioneer TUI — keys")
    tmux.send("Escape")  # alone: an escape followed at once by a key would read as alt+key
    tmux.wait_gone("Pioneer TUI — keys")
    tmux.send("r")
    tmux.wait_for("enter replays the highlighted run")
    tmux.send("Enter")
    tmux.wait_for("paused · 0/54 events")
    tmux.send("]")  # to the first node
    assert "○ n0000 proposed" in tmux.wait_for("5/54 events")
    tmux.send("q")
    deadline = time.monotonic() + 15
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not tmux.alive(), "q did not quit the app"


def test_empty_workspace_offers_the_demo(tmp_path, tmux_app):
    tmux = tmux_app(tmp_path / "empty")
    tmux.wait_for("No runs yet")
    assert "Dismiss (esc)" in tmux.wait_for("Run the demo (d)")  # the buttons render after the title
    tmux.send("Escape")
    tmux.wait_gone("No runs yet")
    screen = tmux.wait_for("No run on screen")  # the demo stays on offer after the welcome is dismissed
    assert "d runs the demo project" in screen and "d Demo" in screen
    tmux.send("q")


@pytest.mark.slow
def test_the_demo_through_veto_revision_typo_refusal_and_promotion(tmp_path, tmux_app):
    """The person in the loop on the real demo (real training, a few minutes): a veto with a reason
    changes the next proposal, a ratio typo is refused in place, refusing a promotion keeps the search
    going, and a later candidate is promoted. The store then holds exactly those decisions."""
    workspace = tmp_path / "demo"
    tmux = tmux_app(workspace)
    tmux.wait_for("Run the demo (d)")
    tmux.send("d")
    tmux.wait_for("Curriculum for node n0001", timeout=300)
    tmux.send("v")
    tmux.wait_for("What is wrong with this curriculum?")
    for keys in ("too many hard negatives", "Tab", "Down", "Space", "C-s"):  # the second reason: too little gold
        tmux.send(keys)
        time.sleep(0.5)  # one key at a time, as a person types: the dialog moves focus between them
    tmux.wait_for("Revision of n0001, vetoed (too little gold; too many hard negatives)", timeout=300)
    revision = tmux.wait_for("revised after")  # the revision's rationale, once the review has drawn it
    tmux.send("s")  # the slice ratios, mistyped
    tmux.wait_for("slice")
    time.sleep(0.5)
    tmux.send("hard=50")
    time.sleep(0.5)
    tmux.send("Enter")
    assert "write slice=value" in tmux.wait_for("✗ 'hard=50'")
    tmux.send("Escape")
    tmux.wait_gone("✗ 'hard=50'")
    approved = set(re.findall(r"Curriculum for node (n\d+)", revision))
    tmux.send("a")
    deadline = time.monotonic() + 600
    while "Promote run-" not in (screen := tmux.screen()):  # the search settles over a few children first
        assert time.monotonic() < deadline, f"no promotion was offered; the screen was:\n{screen}"
        assert tmux.alive(), f"the app exited; the screen was:\n{screen}"
        if (shown := re.search(r"Curriculum for node (n\d+)", screen)) and shown[1] not in approved:
            approved.add(shown[1])
            tmux.send("a")
        elif (rollback := re.search(r"Roll back from \S+ to \S+", screen)) and rollback[0] not in approved:
            approved.add(rollback[0])
            tmux.send("y")
        time.sleep(1.0)
    refused = re.search(r"Promote (run-\S+) ", screen)[1]
    tmux.send("n")  # refuse: the search goes on, and any other candidate that passes is offered in turn
    deadline = time.monotonic() + 900
    while "· finished ·" not in (screen := tmux.screen()):
        assert time.monotonic() < deadline, f"the run never finished; the screen was:\n{screen}"
        offer = re.search(r"Promote (run-\S+) ", screen)
        rollback = re.search(r"Roll back from \S+ to \S+", screen)
        shown = re.search(r"Curriculum for node (n\d+)", screen)
        for found, key in ((offer, "y"), (rollback, "y"), (shown, "a")):
            name = found and (found[1] if found.re.groups else found[0])
            if name and name != refused and name not in approved:
                approved.add(name)
                tmux.send(key)
                break
        time.sleep(1.0)
    with Store(workspace) as store:
        run = store.runs.list()[-1]["id"]
        decisions = [(d["kind"], d["action"]) for d in store.runs.decisions(run)]
        veto = next(d for d in store.runs.decisions(run) if d["action"] == "veto")
        assert veto["diff"]["reasons"] == ["too_little_gold"] and veto["reason"] == "too many hard negatives"
        assert ("promotion", "refuse") in decisions and decisions[-1] == ("promotion", "approve")
        assert store.models.deployed()["id"] != "demo-intent-v1"
