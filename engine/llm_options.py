"""Options every litellm call of a run shares, from the command line's `--llm-api-base`.

A local OpenAI-compatible server (vLLM, Ollama, llama.cpp) takes any key, but litellm's OpenAI client
insists on one: without OPENAI_API_KEY in the environment the key sent is a placeholder. The store
redacts `api_key` like every secret, so a resumed run takes it from the environment again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

PLACEHOLDER_KEY = "none"


def completion_options(api_base: str | None, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`base` with `api_base` (and a key litellm accepts) when a server address is given."""
    options = dict(base or {})
    if api_base:
        options.update(api_base=api_base, api_key=os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY)
    return options
