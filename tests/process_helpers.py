"""Finding processes a test started, by a marker in their command line (tests/test_query.py,
tests/test_sandbox.py: nothing may be left running)."""

from __future__ import annotations

import time
from pathlib import Path


def running(marker: str, grace_s: float = 2.0) -> list[int]:
    """Pids whose command line holds `marker`, once processes already sent SIGKILL had `grace_s` to go."""
    deadline = time.monotonic() + grace_s
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(proc.name))
            except (OSError, ValueError):
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
