"""Dotted keys for nested dicts (`hyperparams.learning_rate`): how pipelines name their fields in
diffs, planner moves and the curation log. Its own module so both the search and the rendering of
runs can use it without depending on each other."""

from __future__ import annotations

from typing import Any


def flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists stay leaf values."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
