"""Read-only trace queries: write / escape attempts refused with the DB unchanged, limits, saved results, CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from ingest_helpers import db_fingerprint, seeded_workspace
from process_helpers import running

from engine.errors import QueryError
from engine.query import query_traces
from pioneer_tui.cli import main
from store import Store

FAILS = "SELECT id, input, prediction, correction FROM traces WHERE verdict = 'fail' ORDER BY id"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return seeded_workspace(tmp_path / "ws", n=40)


ATTEMPTS = {
    "insert": "INSERT INTO trace_records (id) VALUES ('x')",
    "update": "UPDATE trace_records SET human_verdict = 'pass'",
    "delete": "DELETE FROM trace_records",
    "drop": "DROP VIEW traces",
    "create": "CREATE TABLE loot AS SELECT * FROM traces",
    "create_temp": "CREATE TEMP TABLE t (a)",
    "alter": "ALTER TABLE models ADD COLUMN x TEXT",
    "attach": "ATTACH DATABASE '{tmp}/attached.db' AS x",
    "pragma_journal_mode": "PRAGMA journal_mode = DELETE",
    "pragma_user_version": "PRAGMA user_version = 99",
    "pragma_writable_schema": "PRAGMA writable_schema = ON",
    "vacuum": "VACUUM",
    "vacuum_into": "VACUUM INTO '{tmp}/copy.db'",
    "load_extension": "SELECT load_extension('{tmp}/evil.so')",
    "multiple_statements": "SELECT 1; DROP TABLE trace_records",
    "cte_that_writes": "WITH doomed AS (SELECT id FROM traces) DELETE FROM trace_records WHERE id IN doomed",
    "replace": "REPLACE INTO models (id, base_model, created_at, updated_at) VALUES ('m', 'b', 'now', 'now')",
    "begin": "BEGIN IMMEDIATE",
    "savepoint": "SAVEPOINT s1",
    "reindex": "REINDEX",
    "analyze": "ANALYZE",
    "trigger": "CREATE TEMP TRIGGER t AFTER INSERT ON trace_records BEGIN SELECT 1; END",
    "update_schema": "UPDATE sqlite_master SET sql = 'x' WHERE name = 'traces'",
}


def test_at_least_ten_attempts():
    assert len(ATTEMPTS) >= 10


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_write_and_escape_attempts_are_refused_and_the_db_is_unchanged(ws, tmp_path, name):
    sql = ATTEMPTS[name].format(tmp=tmp_path)
    before = db_fingerprint(ws)
    with pytest.raises(QueryError, match="^refused: ") as info:
        query_traces(ws, sql)
    assert "\n" not in str(info.value)
    assert db_fingerprint(ws) == before
    assert not (tmp_path / "attached.db").exists() and not (tmp_path / "copy.db").exists()
    assert not (ws / "artifacts" / "queries").exists()  # nothing saved for a refused query
    with Store(ws) as store:
        assert store.traces.count() == 40


def test_refusal_says_what_was_refused(ws):
    with pytest.raises(QueryError, match="INSERT on trace_records is not allowed"):
        query_traces(ws, ATTEMPTS["insert"])
    with pytest.raises(QueryError, match="PRAGMA journal_mode = DELETE is not allowed"):
        query_traces(ws, ATTEMPTS["pragma_journal_mode"])
    with pytest.raises(QueryError, match="one statement per query"):
        query_traces(ws, ATTEMPTS["multiple_statements"])


def test_time_limit_stops_a_runaway_query(ws):
    runaway = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    with pytest.raises(QueryError, match="ran past the 0.2 s time limit"):
        query_traces(ws, runaway, timeout_s=0.2)


def test_row_limit_cuts_the_result_and_says_so(ws):
    result = query_traces(ws, "SELECT id FROM traces ORDER BY id", limit=7)
    assert (result.row_count, result.truncated) == (7, True)
    assert "row limit reached" in result.summary()
    assert len(Path(result.path).read_text().splitlines()) == 1 + 7
    whole = query_traces(ws, "SELECT id FROM traces", limit=40)
    assert (whole.row_count, whole.truncated) == (40, False)


def test_full_result_saved_and_only_a_summary_returned(ws):
    result = query_traces(ws, FAILS, preview_rows=3, postprocess=lambda rows: {"n": len(rows), "first": rows.dicts()[0]})
    assert result.columns == ["id", "input", "prediction", "correction"]
    assert result.row_count == 10 and len(result.preview) == 3 and not result.truncated
    path = Path(result.path)
    assert path.parent == ws / "artifacts" / "queries" and path.suffix == ".csv"
    saved = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert len(saved) == 10 and saved[0] == result.post["first"]
    assert result.post["n"] == 10
    text = result.summary()
    assert "10 rows x 4 columns" in text and str(path) in text and "postprocess:" in text
    assert not list(path.parent.glob(".*.tmp"))  # atomic: no temp file left behind


def test_jsonl_output_and_other_tables_are_readable(ws, tmp_path):
    result = query_traces(ws, "SELECT verdict, count(*) AS n FROM traces GROUP BY verdict ORDER BY verdict",
                          fmt="jsonl", out_dir=tmp_path / "out")
    rows = [json.loads(line) for line in Path(result.path).read_text().splitlines()]
    assert rows == [{"verdict": "fail", "n": 10}, {"verdict": "pass", "n": 30}]
    assert query_traces(ws, "SELECT count(*) FROM models").row_count == 1
    info = query_traces(ws, "PRAGMA table_info(traces)", preview_rows=50)
    assert {"verdict", "auto_verdict", "human_verdict"} <= {row["name"] for row in info.preview}
    function = query_traces(ws, "SELECT name FROM pragma_table_info('traces')", preview_rows=50)
    assert [row["name"] for row in function.preview] == [row["name"] for row in info.preview]
    with pytest.raises(QueryError, match="PRAGMA journal_mode is not allowed"):
        query_traces(ws, "SELECT * FROM pragma_journal_mode")


# --- limits that hold whatever the SQL ------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "SELECT length(printf('%.*c', 1000000000, 'x'))",  # one VM step that no progress handler interrupts
    "SELECT length(format('%1000000000d', 1))",
    "SELECT zeroblob(2000000000)",
    "SELECT length(hex(zeroblob(40000000)))",
])
def test_a_value_past_the_size_limit_stops_the_query_at_once(ws, sql):
    import time

    started = time.monotonic()
    with pytest.raises(QueryError, match=r"^stopped: a value would be larger than 67,108,864 bytes"):
        query_traces(ws, sql, timeout_s=1)
    assert time.monotonic() - started < 1.5


def test_printf_still_formats(ws):
    result = query_traces(ws, "SELECT printf('%5.2f|%-4s|%d%%|%*d', 3.14159, 'ab', 7, 3, 5) AS p, format('%s', 'x') AS f")
    assert result.preview == [{"p": " 3.14|ab  |7%|  5", "f": "x"}]


def test_byte_limit_cuts_a_large_result_and_says_so(ws):
    sql = ("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 1000) "
           "SELECT x, zeroblob(100000) AS blob FROM n")
    result = query_traces(ws, sql, max_bytes=1_000_000)
    assert (result.row_count, result.truncated, result.truncated_by) == (11, True, "bytes")  # 10 fit, the 11th crosses
    assert "byte limit reached" in result.summary()
    assert len(Path(result.path).read_text().splitlines()) == 1 + 11
    rows = query_traces(ws, "SELECT id FROM traces", limit=5)
    assert rows.truncated_by == "rows"


def test_spreadsheet_safe_csv_defuses_formulas_only_when_asked(tmp_path):
    from ingest_helpers import trace, write_jsonl

    from engine.ingest import ingest_traces

    records = [trace(1, id="f", input="=cmd|' /C calc'!A0", prediction="+1+1", correction="@SUM(A1)"),
               trace(2, id="g", input="-2 apples", prediction="plain")]
    with Store(tmp_path / "ws") as store:
        ingest_traces(store, write_jsonl(tmp_path / "f.jsonl", records))
    sql = "SELECT id, input, prediction, correction, latency_ms FROM traces ORDER BY id"
    raw = list(csv.reader(io.StringIO(Path(query_traces(tmp_path / "ws", sql).path).read_text())))
    safe = list(csv.reader(io.StringIO(Path(query_traces(tmp_path / "ws", sql, spreadsheet_safe=True).path).read_text())))
    assert raw[1][1:4] == ["=cmd|' /C calc'!A0", "+1+1", "@SUM(A1)"]
    assert safe[1][1:4] == ["'=cmd|' /C calc'!A0", "'+1+1", "'@SUM(A1)"]
    assert safe[2][1:3] == ["'-2 apples", "plain"] and safe[2][4] == raw[2][4]  # numbers are left alone


def test_postprocess_failure_names_the_saved_file(ws):
    with pytest.raises(QueryError, match=r"postprocess failed \(ZeroDivisionError.*saved at .*\.csv"):
        query_traces(ws, FAILS, postprocess=lambda rows: 1 / 0)


def test_bad_sql_and_missing_workspace(ws, tmp_path):
    with pytest.raises(QueryError, match="no such column: nope"):
        query_traces(ws, "SELECT nope FROM traces")
    with pytest.raises(QueryError, match="empty query"):
        query_traces(ws, "  ")
    with pytest.raises(QueryError, match="no workspace database"):
        query_traces(tmp_path / "elsewhere", "SELECT 1")


def test_query_sees_rows_committed_by_the_open_store(tmp_path):
    with Store(tmp_path / "ws") as store:
        assert query_traces(store, "SELECT count(*) AS n FROM traces").preview == [{"n": 0}]


# --- CLI ---------------------------------------------------------------------------------------------

def test_cli_query_table_json_csv_and_post(ws, capsys):
    base = ["--workspace", str(ws), "query"]
    assert main([*base, FAILS]) == 0
    out = capsys.readouterr().out
    assert "correction" in out and "10 rows" in out and "artifacts/queries" in out

    assert main([*base, FAILS, "--json", "--limit", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["row_count"] == 4 and summary["truncated"] and Path(summary["path"]).is_file()

    assert main([*base, FAILS, "--csv"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 11 and "full result" in captured.err

    assert main([*base, FAILS, "--post", "tail -n +2 | wc -l"]) == 0
    assert capsys.readouterr().out.strip() == "10"


EVIL = "[link=https://evil.example]click[/link] [bold red]X[/] \x1b]0;PWNED\x07 \x1b[2J \u202edone"


@pytest.fixture
def evil_ws(tmp_path: Path) -> Path:
    from ingest_helpers import trace, write_jsonl

    from engine.ingest import ingest_traces

    with Store(tmp_path / "evil") as store:
        ingest_traces(store, write_jsonl(tmp_path / "evil.jsonl", [trace(1, id="e1", input=EVIL, model_id="m[red]x")]))
    return tmp_path / "evil"


def test_cli_table_shows_trace_text_as_data(evil_ws, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["--workspace", str(evil_ws), "query", "SELECT model_id, input FROM traces"]) == 0
    out = capsys.readouterr().out
    assert "[link=https://evil.example]click[/link]" in out  # markup shown, not interpreted (or silently stripped)
    assert "m[red]x" in out and "[bold red]X[/]" in out
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b]0;PWNED\\x07" in out and "\\x1b[2J" in out and "\\u202e" in out


def test_cli_csv_keeps_data_exact_for_a_pipe_and_escapes_it_for_a_terminal(evil_ws, capsys, monkeypatch):
    argv = ["--workspace", str(evil_ws), "query", "SELECT input FROM traces", "--csv"]
    assert main(argv) == 0
    assert EVIL in capsys.readouterr().out
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b]0;PWNED" in out


@pytest.mark.parametrize(("post", "timeout", "code"), [
    ("sleep {m} & cat > /dev/null; true", "10", 0),  # a background job outlives its shell
    ("sleep {m}; true", "0.4", 2),  # the time limit stops the whole pipeline
    ("(setsid sleep {m} &); sleep {m}", "0.4", 2),
])
def test_cli_post_leaves_nothing_running(ws, capsys, post, timeout, code):
    import random

    marker = f"{random.randint(100, 999)}.{random.randint(10**5, 10**6)}"
    assert main(["--workspace", str(ws), "query", "SELECT 1", "--post", post.format(m=marker), "--timeout", timeout]) \
        == code
    survivors = running(f"sleep {marker}")
    for pid in survivors:  # a process that calls setsid leaves the session (README: the limits)
        os.kill(int(pid), signal.SIGKILL)
    if "setsid" not in post:
        assert survivors == []
    if code:
        assert "ran past 0.4 s and was stopped" in capsys.readouterr().err


def test_cli_post_output_is_capped(ws, capsys, monkeypatch):
    from pioneer_tui.commands import query as command

    monkeypatch.setattr(command, "POST_MAX_OUTPUT", 10_000)
    assert main(["--workspace", str(ws), "query", "SELECT 1", "--post", "yes", "--timeout", "10"]) == 2
    assert "printed more than 10,000 bytes and was stopped" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "words"), [
    (["DROP TABLE models"], "refused: queries are read-only"),
    (["SELECT 1", "--post", "exit 3"], "--post pipeline exited with 3"),
    (["SELECT 1", "--csv", "--post", "cat"], "pick one"),
    (["SELECT 1", "--limit", "0"], "must be positive"),
])
def test_cli_query_errors_exit_2_with_one_line(ws, capsys, argv, words):
    before = db_fingerprint(ws)
    assert main(["--workspace", str(ws), "query", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert db_fingerprint(ws) == before


def test_help_and_readme_say_the_same_about_what_a_query_reads(capsys, monkeypatch):
    from pioneer_tui.commands.query import READS

    monkeypatch.setenv("COLUMNS", "1000")  # argparse may wrap at a hyphen ("read-only")
    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8").split())
    assert f"read {READS}" in readme
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    assert READS in " ".join(capsys.readouterr().out.split())
