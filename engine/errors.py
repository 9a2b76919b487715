"""The product's one error family. Every error raised for a person to act on is a `PioneerError`
(rooted in store.errors, the bottom layer): its message is one line naming the file, line or field
and what to do, and its `exit_code` is what `pioneer-tui` returns, mapped once in `cli.main`:

- 2: the input must change (options, configuration, data, a query, a run that cannot resume);
- 1: a step failed (training, a promotion the gates refuse); the message says why;
- 75: the workspace was busy (store.StoreBusy); retry later.

Each kind also subclasses the builtin it stands for, so code that catches ValueError or RuntimeError
(the search failing one node, a dialog refusing a field) keeps working.
"""

from __future__ import annotations

from store.errors import PioneerError, SchemaError, StoreBusy

__all__ = [
    "ConfigError", "DatasetError", "GateError", "IngestError", "LeakageError", "PioneerError", "QueryError",
    "RunNotResumable", "SchemaError", "StoreBusy", "TrainingError", "UsageError",
]


class UsageError(PioneerError, ValueError):
    """Bad input or an impossible request."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value is out of range or refers to nothing; the message names the field."""


class DatasetError(UsageError):
    """A dataset row is malformed; the message names file, line and field."""


class IngestError(UsageError):
    """A trace source cannot be ingested; it keeps where (file, line or row, field) for the rejects."""

    def __init__(self, message: str, *, path: str, line: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.path, self.line, self.field = path, line, field


class QueryError(UsageError):
    """A refused, failed or over-limit query."""


class LeakageError(UsageError):
    """A training row is (after normalisation) an item of the held-out set."""


class RunNotResumable(UsageError):
    """The run does not exist, or its mode has no loop factory."""


class TrainingError(PioneerError, RuntimeError):
    """Training stopped (NaN loss, out of memory, bad data)."""


class GateError(PioneerError, RuntimeError):
    """A promotion or rollback that the gates or the registry state do not allow."""
