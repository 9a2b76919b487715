"""The root of the product's error family (engine.errors holds the rest). It lives in the store, the
bottom layer, so that every layer can raise a member of the one family and the CLI can map it once."""

from __future__ import annotations


class PioneerError(Exception):
    """An error a person can act on: its message is one line naming what to fix, and `exit_code` is
    what the command line returns for it (1: a step failed; see engine.errors for the others)."""

    exit_code = 1


class SchemaError(PioneerError, RuntimeError):
    """The database was written by a newer Pioneer TUI, or a migration failed."""

    exit_code = 2


class StoreBusy(PioneerError, RuntimeError):
    """Another process held the workspace's write lock for longer than the busy timeout: retry later
    (exit 75, EX_TEMPFAIL)."""

    exit_code = 75
