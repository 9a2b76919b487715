"""Smoke test of the real `pioneer-tui` in a real 80x24 terminal: tmux runs it, sends keys, and the
screen is read back with capture-pane. Skipped (with the reason) where tmux is not installed."""

from __future__ import annotations

import os
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
    """One private tmux server (its own socket) holding one session running the app."""

    def __init__(self, tmp_path: Path, command: list[str]) -> None:
        self.socket = f"pioneer-test-{os.getpid()}-{tmp_path.name}"
        # COLUMNS/LINES (set by pytest) would override the pane's real size: drop them.
        env_cmd = ["env", "-u", "COLUMNS", "-u", "LINES", "TERM=xterm-256color", *command]
        self.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", " ".join(map(_quote, env_cmd)))

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
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def wait_gone(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text in self.screen():
            assert time.monotonic() < deadline, f"{text!r} never went away"
            time.sleep(0.2)

    def alive(self) -> bool:
        return subprocess.run([TMUX, "-L", self.socket, "has-session", "-t", "app"],
                              capture_output=True).returncode == 0

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
