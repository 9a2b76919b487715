"""Text from traces, models and LLMs is data: the one place it is escaped for where it is shown.

- terminal / one_line: control characters (ESC sequences that retitle or clear the terminal,
  carriage returns, C1 codes, bidirectional overrides) become visible escapes such as `\\x1b`.
  Rich markup is never parsed from data: print it as `rich.text.Text`, not as a markup string.
- markdown / code / markdown_block: for data-curation.md (rendered by Textual and by Markdown
  viewers): no raw HTML, no emphasis, links or table breaks from the data.
- html: html.escape plus the control characters.
"""

from __future__ import annotations

import html as _html
import re

_CONTROLS = {**{c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c not in (0x09, 0x0A)},
             **{c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}}
_ONE_LINE = {**_CONTROLS, 0x0A: "\\n"}
# `_` is escaped only at a word's edge (below): `change_language` stays readable and never emphasises.
_MARKDOWN = {**_ONE_LINE, **{ord(c): "\\" + c for c in "\\`*[]|~#!"}, ord("<"): "&lt;", ord("&"): "&amp;",
             0x0A: " "}
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.DOTALL)


def terminal(text: object) -> str:
    """For a terminal: every control character except tab and newline shown as an escape."""
    return str(text).translate(_CONTROLS)


def one_line(text: object) -> str:
    """terminal(), and newlines shown as `\\n` too: one record stays on one line."""
    return str(text).translate(_ONE_LINE)


def markdown(text: object) -> str:
    """Inline Markdown (a sentence, a table cell): the data's punctuation is literal, on one line."""
    return _EDGE_UNDERSCORE.sub(r"\\_", str(text).translate(_MARKDOWN))


def code(text: object) -> str:
    """A Markdown code span around the data, whatever backticks it holds."""
    body = one_line(text)
    fence = "`" * (max(map(len, re.findall("`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def markdown_block(text: object) -> str:
    """Markdown written by the engine that may quote data: its structure is kept, raw HTML and
    control characters are not (`<` outside code spans becomes `&lt;`)."""
    body = terminal(text)
    out, last = [], 0
    for span in _CODE_SPAN.finditer(body):
        out += [body[last:span.start()].replace("<", "&lt;"), span.group()]
        last = span.end()
    return "".join([*out, body[last:].replace("<", "&lt;")])


def html(text: object) -> str:
    """For HTML text and attribute values."""
    return _html.escape(terminal(text), quote=True)
