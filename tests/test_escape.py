"""Text from traces, models and LLMs is data wherever it is shown: the terminal (query and models
tables, headless runs, errors), data-curation.md and the HTML report (engine.escape)."""

from __future__ import annotations

import io
import re

import pytest

from engine.curation_log import render_curation_log
from engine.escape import code, html, markdown, markdown_block, one_line, terminal
from pioneer_tui.cli import main
from store import Event, Store

EVIL = ("[link=https://evil.example]click[/link] [bold red]X[/] \x1b]0;PWNED\x07 \x1b[2J \x9b31m \u202eevil "
        "</td><script>alert(1)</script> | `tick` **b** _em_ [md](javascript:x) &amp;\r\nnext")
ESCAPE_BYTES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_terminal_shows_control_characters_as_escapes():
    assert terminal("a\x1b[2Jb\tc\nd\re\x9b\u202e") == "a\\x1b[2Jb\tc\nd\\x0de\\x9b\\u202e"
    assert one_line("a\nb") == "a\\nb"
    assert not ESCAPE_BYTES.search(terminal(EVIL))


def test_markdown_keeps_words_and_neutralises_syntax():
    assert markdown("change_language ↔ translate") == "change_language ↔ translate"
    assert markdown("_em_ **b** [x](y) a|b <i> & `c`") == r"\_em\_ \*\*b\*\* \[x\](y) a\|b &lt;i> &amp; \`c\`"
    assert code("a `b` c") == "``a `b` c``" and code("`x`") == "`` `x` ``"
    assert markdown_block("keep **this** <b>x</b> `<b>` \x1b[2J") == "keep **this** &lt;b>x&lt;/b> `<b>` \\x1b[2J"
    assert html('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"


def _evil_run(store: Store) -> str:
    run_id = store.runs.create("production", {"model": EVIL})
    for type_, payload in [
        ("run_started", {"mode": "production", "config": {"model": EVIL}}),
        ("taxonomy_built", {"clusters": [{"id": "c1", "name": EVIL, "kind": "label_confusion", "size": 3,
                                          "fixability": "fixable"}]}),
        ("node_added", {"node_id": "n1", "parent_id": None, "operator": "root", "iteration": 0, "pipeline": {},
                        "rationale": EVIL}),
        ("decision_recorded", {"decision_id": 1, "kind": "curriculum", "action": "veto", "who": EVIL,
                               "reason": EVIL, "node_id": "n1"}),
        ("rollback", {"node_id": "n1", "from_model": "m`x", "to_model": EVIL, "reason": EVIL}),
        ("curation_note", {"section": EVIL, "markdown": f"The planner said: {EVIL}"}),
        ("run_finished", {"status": "finished", "reason": EVIL, "best_node": "n1", "best_score": 0.5}),
    ]:
        store.runs.append_event(run_id, type_, payload)
    return run_id


def test_the_curation_log_carries_no_html_and_no_escape_bytes(tmp_path):
    with Store(tmp_path / "ws") as store:
        text = render_curation_log(store.runs.events(_evil_run(store)))
    outside_code = re.sub(r"(`+)(?!`).+?(?<!`)\1(?!`)", "", text)  # in a code span `<` is literal text
    assert "<" not in outside_code and "``[link=" in text
    assert not ESCAPE_BYTES.search(text)
    assert r"\[link=https://evil.example\]click\[/link\]" in text  # shown, not a link
    assert "\\x1b]0;PWNED\\x07" in text
    assert "| \\[link" in text and text.count("\n|") >= 2  # the taxonomy table row is still one row


def test_the_html_report_escapes_tables_and_chart_labels(tmp_path):
    from engine.report import build_report

    with Store(tmp_path / "ws") as store:
        page = build_report(store, _evil_run(store))
    assert "</td><script>alert(1)" not in page and "<script>alert(1)" not in page
    assert "&lt;/td&gt;&lt;script&gt;alert(1)" in page  # the taxonomy table, and the chart label (plotly JSON)
    assert not ESCAPE_BYTES.search(page.split("</head>")[1].replace("\n", ""))  # plotly.js itself has some


def test_headless_runs_print_trace_text_without_escape_sequences():
    from pioneer_tui.commands.improve import RunPrinter

    out = io.StringIO()
    printer = RunPrinter(out)
    printer(Event("r", 1, "t", "taxonomy_built", {"clusters": [{"id": "c1", "name": EVIL, "size": 3,
                                                                "fixability": "fixable"}], "n_fail": 3}))
    printer(Event("r", 2, "t", "node_added", {"node_id": "n1", "iteration": 0, "rationale": EVIL}))
    printer(Event("r", 3, "t", "rollback", {"node_id": "n1", "from_model": EVIL, "to_model": "m", "reason": EVIL}))
    text = out.getvalue()
    assert not ESCAPE_BYTES.search(text) and "[link=https://evil.example]" in text and "\\x1b[2J" in text


def test_models_table_shows_names_as_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    with Store(tmp_path / "ws") as store:
        store.models.register(base_model="minilm", artifact_path=None, name=EVIL.replace("\r\n", " "))
    assert main(["--workspace", str(tmp_path / "ws"), "models"]) == 0
    out = capsys.readouterr().out
    assert not ESCAPE_BYTES.search(out) and "[bold red]X[/]" in out and "\\x1b]0;PWNED" in out


@pytest.mark.parametrize("name", ["evil\x1b]0;PWNED\x07.jsonl"])
def test_an_error_line_names_the_file_without_its_escape_bytes(tmp_path, capsys, name):
    assert main(["--workspace", str(tmp_path / "ws"), "ingest", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\\x1b]0;PWNED\\x07" in err and not ESCAPE_BYTES.search(err)
