"""JSON column helpers and timestamps shared by the table modules."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from store.redact import redact


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def dumps(value: Any) -> str:
    """JSON text for a column, secrets redacted (store/redact.py): nothing stored can carry a key."""
    return json.dumps(redact(value), ensure_ascii=False, sort_keys=True, default=str)


def decode(row: dict[str, Any] | None, *columns: str) -> dict[str, Any] | None:
    """Decode the named JSON text columns of a row in place."""
    if row is None:
        return None
    for col in columns:
        if isinstance(row.get(col), str):
            row[col] = json.loads(row[col])
    return row
