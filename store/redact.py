"""Secrets never reach the database: every JSON column and free-text run field passes through here.

Redacting at the store layer means no caller upstream (a config, an event payload, an error
message quoting a key) can forget it. A value is a secret when its key names one (`api_key`,
`client_secret`, `Authorization`, `access_token`, ...; not `max_tokens` or `pad_token`), or when
it looks like a provider key (`sk-...`, `Bearer ...`, `AKIA...`, `ghp_...`, `hf_...`) anywhere in
a string. The stored value becomes REDACTED; a run that needs the key again (resume) takes it from
the environment, as litellm does.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(?i)^(?:token|auth|(?:[a-z0-9]+[_.-])*(?:api[_-]?key|apikey|secret|secret[_-]?key|password|passwd|"
    r"(?:access|auth|refresh|bearer|session|id|api)[_-]?token|authorization|credentials?|private[_-]?key|"
    r"access[_-]?key(?:[_-]?id)?|secret[_-]?access[_-]?key))$")
_SECRET_VALUE = re.compile(
    r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|"
    r"xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,})|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}")


def secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.match(name))


def redact_text(text: str) -> str:
    """`text` with every key-shaped substring replaced."""
    return _SECRET_VALUE.sub(REDACTED, text) if text else text


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secrets replaced (the input is never modified)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and secret_key(k) and v not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def without_redacted(value: Any) -> Any:
    """Drop the entries a stored config had redacted, so a resumed run falls back to the environment
    instead of sending the placeholder as a key."""
    if isinstance(value, dict):
        return {k: without_redacted(v) for k, v in value.items() if v != REDACTED}
    if isinstance(value, list):
        return [without_redacted(v) for v in value]
    return value
