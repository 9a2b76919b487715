"""Dotted keys for nested dicts (`hyperparams.learning_rate`): how pipelines name their fields in
diffs, planner moves and the curation log, and how `ingest --map` reads a field out of a nested record.
Its own module so the search, the rendering of runs and ingest can use it without depending on each other."""

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


def lookup(value: Any, path: str) -> Any:
    """The value at a dotted path such as `request.messages.-1.content`, as `--map` reads it. A name
    indexes an object: the longest key that matches wins, so a key holding dots (an OpenTelemetry
    attribute such as `gen_ai.request.model`) is reachable; an integer indexes an array (negative counts
    from the end). Raises LookupError naming the first part of the path that is not there."""
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if isinstance(value, dict):
            j = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in value), None)
            if j is None:
                raise LookupError(".".join(parts[:i + 1]))
            value, i = value[".".join(parts[i:j])], j
        elif isinstance(value, list) and parts[i].lstrip("-").isdigit() and -len(value) <= int(parts[i]) < len(value):
            value, i = value[int(parts[i])], i + 1
        else:
            raise LookupError(".".join(parts[:i + 1]))
    return value
