"""Trace ingestion: the bad-input corpus, skip-invalid rejects, idempotence, CSV / SQLite sources, mapping, CLI."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_helpers import db_fingerprint, seeded_workspace, trace, write_jsonl

from engine.errors import IngestError
from engine.ingest import FieldMap, ingest_traces
from engine.query import query_traces
from pioneer_tui.cli import main
from store import Store

BAD = Path(__file__).parent / "bad_traces"

# file -> (line named in the error or None for file-level errors, field named or None, words of the reason)
BAD_CASES = {
    "empty.jsonl": (None, None, "no traces"),
    "blank_lines_only.jsonl": (None, None, "no traces"),
    "invalid_json.jsonl": (2, None, "invalid JSON at column"),
    "truncated_last_line.jsonl": (3, None, "truncated"),
    "non_utf8.jsonl": (2, None, "byte 0xe9 at byte offset"),
    "nul_byte.jsonl": (2, None, "NUL byte at byte offset"),
    "nul_escape_in_field.jsonl": (1, "input", "NUL character"),
    "utf16.jsonl": (None, None, "UTF-16"),
    "unknown_verdict.jsonl": (3, "verdict", '"maybe" is not a verdict'),
    "bad_human_verdict.jsonl": (1, "human_verdict", '"ok" is not a verdict'),
    "missing_input.jsonl": (1, "input", "missing"),
    "wrong_type.jsonl": (1, "input", "expected a string, got a number"),
    "metadata_not_object.jsonl": (1, "metadata", "expected a JSON object, got an array"),
    "bad_timestamp.jsonl": (2, "ts", "not an ISO-8601 timestamp"),
    "latency_not_number.jsonl": (1, "latency_ms", "expected a number"),
    "latency_nan.jsonl": (2, "latency_ms", "not a finite"),
    "duplicate_id.jsonl": (3, "id", "also on line 1 with different content"),
    "duplicate_key.jsonl": (1, "verdict", "appears twice"),
    "not_an_object.jsonl": (1, None, "expected a JSON object, got an array"),
    "json_array.jsonl": (1, None, "looks like a JSON array"),
    "unknown_field.jsonl": (1, "verdit", "unknown field; rename it with --map verdit="),
    "empty_id.jsonl": (1, "id", "omit the field"),
    "lone_surrogate.jsonl": (1, "input", "unpaired surrogate"),
    "missing_column.csv": (1, "verdict", "no such column"),
    "unknown_column.csv": (1, "verdit", "unknown column"),
    "ragged_row.csv": (3, None, "6 cells but the header has 5 columns"),
    "bad_metadata.csv": (2, "metadata", "not valid JSON"),
    "not_sqlite.db": (None, None, "not a SQLite database"),
    "deep_nesting.jsonl": (2, "metadata", "nested 10,000 levels deep"),
    "huge_integer_id.jsonl": (2, "id", "a number with 5,000 digits"),
    "deep_metadata.csv": (2, "metadata", "levels deep"),
}


def test_corpus_is_complete():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(BAD_CASES)
    assert len(BAD_CASES) >= 15


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_file_is_refused_with_file_line_field_and_db_unchanged(tmp_path, name):
    ws = seeded_workspace(tmp_path / "ws")
    before = db_fingerprint(ws)
    line, field, reason = BAD_CASES[name]
    with Store(ws) as store, pytest.raises(IngestError) as info:
        ingest_traces(store, BAD / name)
    message = str(info.value)
    assert "\n" not in message and name in message and reason in message
    assert info.value.line == line and info.value.field == field
    if line is not None:
        assert f"line {line}" in message
    if field is not None:
        assert f"field {field!r}" in message
    assert db_fingerprint(ws) == before
    with Store(ws) as store:
        assert store.traces.count() == 8


def test_ten_megabyte_field_in_jsonl_and_csv(tmp_path):
    big = "é" + "x" * (10 * 1024 * 1024)
    jsonl = write_jsonl(tmp_path / "big.jsonl", [trace(1, input=big)])
    csv_path = tmp_path / "big.csv"
    csv_path.write_text(f"ts,model_id,input,prediction,verdict\n2026-03-01T10:00:00Z,m,{big},p,fail\n",
                        encoding="utf-8")
    with Store(tmp_path / "ws") as store:
        assert ingest_traces(store, jsonl).inserted == 1
        assert ingest_traces(store, csv_path).inserted == 1
        lengths = [r[0] for r in store.conn.execute("SELECT length(input) FROM traces")]
        assert lengths == [len(big), len(big)]
        result = query_traces(store, "SELECT input FROM traces")
        assert len(result.preview[0]["input"]) < 300  # the summary shortens, the file keeps everything
        assert Path(result.path).stat().st_size > 2 * len(big)


def test_bom_crlf_blank_lines_and_a_complete_last_line_without_newline(tmp_path):
    lines = [json.dumps(trace(i)) for i in range(3)]
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n\r\n".join(lines).encode())
    csv_path = tmp_path / "ok.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfts,model_id,input,prediction,verdict\r\n"
                         b"2026-03-01T10:00:00Z,m,\"multi\r\nline, with comma\",,pass\r\n")
    with Store(tmp_path / "ws") as store:
        assert ingest_traces(store, path).inserted == 3
        assert ingest_traces(store, csv_path).inserted == 1
        row = store.conn.execute("SELECT input, prediction FROM traces WHERE model_id = 'm'").fetchone()
        assert row == ("multi\r\nline, with comma", "")


def test_csv_trailing_comma_column_is_ignored_unless_it_holds_a_value(tmp_path):
    source = tmp_path / "excel.csv"
    source.write_text("ts,model_id,input,prediction,verdict,\n2026-03-01T10:00:00Z,m,a,b,pass,\n"
                      "2026-03-01T10:00:00Z,m,c,d,pass,oops\n", encoding="utf-8")
    with Store(tmp_path / "ws") as store:
        with pytest.raises(IngestError, match="line 3: cell 6 has a value but its column has no name"):
            ingest_traces(store, source)
        assert ingest_traces(store, source, skip_invalid=True).inserted == 1


def test_fields_land_in_their_columns(tmp_path):
    record = trace(0, id="abc", ts="2026-03-01T12:00:00.250+02:00", verdict="FAIL", human_verdict="pass",
                   human_output="label_9", stage="shadow", metadata={"z": 1, "a": [1, 2]}, latency_ms=7)
    with Store(tmp_path / "ws") as store:
        ingest_traces(store, write_jsonl(tmp_path / "one.jsonl", [record]))
        row = dict(zip(("id", "ts", "auto_verdict", "human_verdict", "human_output", "correction", "metadata",
                        "latency_ms", "stage", "source", "task"),
                       store.conn.execute("SELECT id, ts, auto_verdict, human_verdict, human_output, correction, "
                                          "metadata, latency_ms, stage, source, task FROM trace_records").fetchone(),
                       strict=True))
    assert row == {"id": "abc", "ts": "2026-03-01T10:00:00.250+00:00", "auto_verdict": "fail",
                   "human_verdict": "pass", "human_output": "label_9", "correction": "label_1",
                   "metadata": '{"a": [1, 2], "z": 1}', "latency_ms": 7.0, "stage": "shadow",
                   "source": "one.jsonl", "task": "classification"}


def test_skip_invalid_keeps_valid_rows_and_writes_rejects_with_reasons(tmp_path):
    source = tmp_path / "mixed.jsonl"
    lines = [json.dumps(trace(1)), json.dumps(trace(2, verdict="maybe")), '{"broken": ',
             json.dumps(trace(3, latency_ms="slow")), json.dumps(trace(4))]
    source.write_bytes(("\n".join(lines) + "\n").encode() + b'{"input": "caf\xe9"}\n')
    rejects = tmp_path / "rejects.jsonl"
    with Store(tmp_path / "ws") as store:
        result = ingest_traces(store, source, skip_invalid=True, rejects_path=rejects)
        assert (result.read, result.inserted, result.rejected) == (6, 2, 4)
        assert store.traces.count() == 2
        again = ingest_traces(store, source, skip_invalid=True)
        assert (again.inserted, again.duplicates, again.rejected) == (0, 2, 4)
        assert Path(again.rejects_path).parent == store.artifacts / "ingest"
    got = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["field"]) for r in got] == [(2, "verdict"), (3, None), (4, "latency_ms"), (6, None)]
    assert got[0]["record"]["verdict"] == "maybe" and "pass" in got[0]["reason"]
    assert got[1]["text"] == '{"broken": ' and "invalid JSON" in got[1]["reason"]
    assert "byte offset" in got[3]["reason"]


def test_reingest_is_idempotent_and_a_changed_reexport_keeps_the_stored_trace(tmp_path):
    records = [trace(i) for i in range(20)]
    source = write_jsonl(tmp_path / "t.jsonl", records)
    with Store(tmp_path / "ws") as store:
        first = ingest_traces(store, source)
        snapshot = store.conn.execute("SELECT * FROM trace_records ORDER BY id").fetchall()
        second = ingest_traces(store, source)
        assert (first.inserted, second.inserted, second.duplicates) == (20, 0, 20)
        trace_id = snapshot[3][0]
        store.traces.set_human(trace_id, "fail", "fixed")  # a reviewer's verdict survives re-ingests
        snapshot = store.conn.execute("SELECT * FROM trace_records ORDER BY id").fetchall()
        assert ingest_traces(store, source).duplicates == 20
        # the same traces with another timestamp spelling and a new judge verdict on one of them
        reexport = [dict(r, ts=r["ts"].replace("Z", "+00:00")) for r in records]
        reexport[5]["verdict"] = "fail"
        third = ingest_traces(store, write_jsonl(tmp_path / "t2.jsonl", reexport))
        assert (third.inserted, third.duplicates, third.conflicts) == (0, 19, 1)
        assert store.conn.execute("SELECT * FROM trace_records ORDER BY id").fetchall() == snapshot
        assert store.conn.execute("SELECT verdict, correction FROM traces WHERE id = ?", (trace_id,)).fetchone() \
            == ("fail", "fixed")


def test_identical_repeated_line_is_a_duplicate_not_an_error(tmp_path):
    source = write_jsonl(tmp_path / "rep.jsonl", [trace(1, id="x"), trace(2), trace(1, id="x")])
    with Store(tmp_path / "ws") as store:
        result = ingest_traces(store, source)
    assert (result.inserted, result.duplicates) == (2, 1)


def test_csv_with_foreign_column_names_and_mapping(tmp_path):
    source = tmp_path / "export.csv"
    source.write_text(
        "when,model,text,output,label,judge,notes,metadata,latency_ms,task\n"
        "2026-03-01T10:00:00Z,m1,hello,greet,pass,gpt-j,ignore me,\"{\"\"k\"\": 1}\",12.5,\n"
        "2026-03-01T10:01:00Z,m1,bye,greet,fail,gpt-j,,,,intent\n", encoding="utf-8")
    mapping = FieldMap.parse(["when=ts", "model=model_id", "text=input", "output=prediction", "label=verdict",
                              "judge=metadata.judge", "notes="])
    with Store(tmp_path / "ws") as store:
        assert ingest_traces(store, source, mapping=mapping).inserted == 2
        rows = store.conn.execute("SELECT input, verdict, metadata, latency_ms, task FROM traces ORDER BY ts").fetchall()
    assert rows == [("hello", "pass", '{"judge": "gpt-j", "k": 1}', 12.5, None),
                    ("bye", "fail", '{"judge": "gpt-j"}', None, "intent")]


def test_jsonl_mapping_renames_and_refuses_a_field_given_twice(tmp_path):
    records = [{k if k != "verdict" else "label": v for k, v in trace(i).items()} for i in range(3)]
    source = write_jsonl(tmp_path / "f.jsonl", records)
    with Store(tmp_path / "ws") as store:
        with pytest.raises(IngestError, match="field 'label': unknown field"):
            ingest_traces(store, source)
        assert ingest_traces(store, source, mapping={"label": "verdict"}).inserted == 3
        clash = write_jsonl(tmp_path / "g.jsonl", [dict(records[0], verdict="pass")])
        with pytest.raises(IngestError, match="line 1, field 'verdict': given twice"):
            ingest_traces(store, clash, mapping={"label": "verdict"})


@pytest.mark.parametrize(("specs", "words"), [
    (["label=verdit"], "'verdit' is not a trace field"),
    (["a=verdict", "b=verdict"], "both 'a' and 'b' map to 'verdict'"),
    (["label"], "write SRC=DST"),
])
def test_bad_mapping_is_refused(specs, words):
    with pytest.raises(IngestError, match=words):
        FieldMap.parse(specs)


def _sqlite_source(path: Path, rows: list[tuple], extra_table: bool = False) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE logs (uid INTEGER, created TEXT, model TEXT, prompt TEXT, output TEXT, "
                 "judgement TEXT, meta TEXT, ms REAL)")
    conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    if extra_table:
        conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    return path


SQLITE_MAP = ["uid=id", "created=ts", "model=model_id", "prompt=input", "output=prediction",
              "judgement=verdict", "meta=metadata", "ms=latency_ms"]


def test_sqlite_table_source(tmp_path):
    rows = [(i, f"2026-03-01T10:0{i}:00Z", "m", f"q{i}", "a", "fail" if i % 2 else "pass", '{"judge": "j"}', 3.5)
            for i in range(4)]
    src = _sqlite_source(tmp_path / "prod.sqlite", rows, extra_table=True)
    mapping = FieldMap.parse(SQLITE_MAP)
    with Store(tmp_path / "ws") as store:
        with pytest.raises(IngestError, match="pass --table to choose one of: logs, other"):
            ingest_traces(store, src, mapping=mapping)
        result = ingest_traces(store, src, table="logs", mapping=mapping)
        assert (result.format, result.inserted) == ("sqlite", 4)
        assert store.conn.execute("SELECT id, source FROM traces ORDER BY id").fetchall()[0] == ("0", "prod.sqlite:logs")
        assert store.traces.count("fail") == 2
        with pytest.raises(IngestError, match="no table 'nope'; tables: logs, other"):
            ingest_traces(store, src, table="nope", mapping=mapping)


def test_sqlite_bad_row_names_row_and_field_and_writes_nothing(tmp_path):
    rows = [(1, "2026-03-01T10:00:00Z", "m", "q1", "a", "pass", None, 1.0),
            (2, "2026-03-01T10:00:00Z", "m", "q2", "a", "PASSED", None, 1.0)]
    src = _sqlite_source(tmp_path / "prod.db", rows)
    bad_text = _sqlite_source(tmp_path / "bytes.db", [])
    conn = sqlite3.connect(bad_text)
    conn.execute("INSERT INTO logs VALUES (1, '2026-03-01T10:00:00Z', 'm', CAST(X'6361FF' AS TEXT), 'a', 'pass', "
                 "NULL, 1)")
    conn.commit()
    conn.close()
    ws = seeded_workspace(tmp_path / "ws")
    before = db_fingerprint(ws)
    with Store(ws) as store:
        with pytest.raises(IngestError, match=r"prod.db table 'logs' row 2, field 'verdict': \"PASSED\""):
            ingest_traces(store, src, mapping=FieldMap.parse(SQLITE_MAP))
        with pytest.raises(IngestError, match=r"row 1, field 'input': invalid text: bytes that are not UTF-8"):
            ingest_traces(store, bad_text, mapping=FieldMap.parse(SQLITE_MAP))
    assert db_fingerprint(ws) == before


def test_encoding_option_reads_latin1_and_unknown_encoding_is_refused(tmp_path):
    source = tmp_path / "latin.jsonl"
    source.write_bytes(json.dumps(trace(1, input="café"), ensure_ascii=False).encode("latin-1") + b"\n")
    with Store(tmp_path / "ws") as store:
        with pytest.raises(IngestError, match="line 1: byte 0xe9"):
            ingest_traces(store, source)
        assert ingest_traces(store, source, encoding="latin-1").inserted == 1
        assert store.conn.execute("SELECT input FROM traces").fetchone()[0] == "café"
        with pytest.raises(IngestError, match="unknown encoding"):
            ingest_traces(store, source, encoding="klingon")


def test_missing_file_and_unknown_extension(tmp_path):
    odd = tmp_path / "traces.txt"
    odd.write_text("{}\n")
    os.mkfifo(tmp_path / "pipe.jsonl")
    (tmp_path / "folder.jsonl").mkdir()
    with Store(tmp_path / "ws") as store:
        with pytest.raises(IngestError, match="no such file"):
            ingest_traces(store, tmp_path / "nope.jsonl")
        with pytest.raises(IngestError, match="pass --format jsonl"):
            ingest_traces(store, odd)
        with pytest.raises(IngestError, match="pipe.jsonl: is not a regular file \\(a FIFO"):
            ingest_traces(store, tmp_path / "pipe.jsonl")  # never opened: a FIFO without a writer blocks forever
        with pytest.raises(IngestError, match="folder.jsonl: is a folder; give one trace file"):
            ingest_traces(store, tmp_path / "folder.jsonl")


@pytest.mark.parametrize("name", ["deep_nesting.jsonl", "huge_integer_id.jsonl", "deep_metadata.csv"])
def test_a_line_the_parser_cannot_take_is_one_reject_not_the_end_of_the_file(tmp_path, name):
    with Store(tmp_path / "ws") as store:
        result = ingest_traces(store, BAD / name, skip_invalid=True)
        (reject,) = [json.loads(line) for line in Path(result.rejects_path).read_text().splitlines()]
    assert (result.read, result.rejected) == (2 if name.endswith(".jsonl") else 1, 1)
    assert (reject["line"], reject["field"]) == BAD_CASES[name][:2]


def test_an_over_long_line_or_cell_is_rejected_without_being_held(tmp_path, monkeypatch):
    from engine import ingest_formats

    monkeypatch.setattr(ingest_formats, "MAX_FIELD_BYTES", 1000)
    long = json.dumps(trace(2, input="x" * 5000))
    jsonl = tmp_path / "long.jsonl"
    jsonl.write_text(f"{json.dumps(trace(1))}\n{long}\n{json.dumps(trace(3))}\n")
    csv_path = tmp_path / "long.csv"
    multiline_cell = '"' + "y" * 600 + "\n" + "y" * 600 + '"'  # each line is short, the cell is not
    csv_path.write_text(f"ts,model_id,input,prediction,verdict\n2026-03-01T10:00:00Z,m,{'y' * 5000},p,pass\n"
                        f"2026-03-01T10:00:00Z,m,{multiline_cell},p,pass\n2026-03-01T10:00:00Z,m,short,p,pass\n")
    with Store(tmp_path / "ws") as store:
        with pytest.raises(IngestError, match="long.jsonl line 2: the line is 5,[0-9]{3} bytes long, more than "
                                              "the 1,000 a record may take"):
            ingest_traces(store, jsonl)
        assert ingest_traces(store, jsonl, skip_invalid=True).inserted == 2
        result = ingest_traces(store, csv_path, skip_invalid=True)
        assert (result.inserted, result.rejected) == (1, 2)
        reasons = [json.loads(line)["reason"] for line in Path(result.rejects_path).read_text().splitlines()]
        assert "5,031 bytes long" in reasons[0] and "field larger than field limit (1000)" in reasons[1]


# --- where rejects may go --------------------------------------------------------------------------

def test_rejects_never_overwrite_the_database_the_input_or_other_files(tmp_path):
    ws = seeded_workspace(tmp_path / "ws")
    before = db_fingerprint(ws)
    source = BAD / "unknown_verdict.jsonl"
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(source.read_bytes())
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    other_db = _sqlite_source(tmp_path / "other.db", [])
    cases = {ws / "pioneer.db": "inside the workspace", ws / "pioneer.db-wal": "inside the workspace",
             copy: "it is the input file", notes: "holds something other than rejects",
             other_db: "it is a SQLite database", tmp_path: "not a regular file"}
    with Store(ws) as store:
        for target, words in cases.items():
            with pytest.raises(IngestError, match=f"refusing to overwrite it: .*{words}"):
                ingest_traces(store, copy, skip_invalid=True, rejects_path=target)
        assert store.traces.count() == 8
        earlier = tmp_path / "earlier.rejects.jsonl"
        ingest_traces(store, source, skip_invalid=True, rejects_path=earlier)
        assert ingest_traces(store, source, skip_invalid=True, rejects_path=earlier).rejected == 1  # its own file
    assert copy.read_bytes() == source.read_bytes() and notes.read_text() == "my notes\n"
    assert db_fingerprint(ws) != before  # the last two ingests wrote, the refused ones did not
    with Store(ws) as store:
        assert store.traces.count() == 10


def test_two_inputs_with_one_name_keep_their_own_default_rejects(tmp_path):
    sources = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        sources.append(write_jsonl(tmp_path / folder / "t.jsonl", [trace(1), trace(2, verdict=f"maybe-{folder}")]))
    with Store(tmp_path / "ws") as store:
        paths = [Path(ingest_traces(store, src, skip_invalid=True).rejects_path) for src in sources]
    assert paths[0] != paths[1] and paths[0].parent == paths[1].parent
    assert ["maybe-a" in paths[0].read_text(), "maybe-b" in paths[1].read_text()] == [True, True]


# --- time and size limits of a source ----------------------------------------------------------------

ENDLESS = ("CREATE VIEW t AS WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) "
           "SELECT '2026-03-01T10:00:00Z' AS ts, 'm' AS model_id, 'in ' || n AS input, 'p' AS prediction, "
           "'pass' AS verdict FROM c")


def _view_source(path: Path, view: str) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(view)
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize(("view", "limits", "words"), [
    (ENDLESS, {"timeout_s": 0.4}, "stopped after 0.4 s, the time limit; nothing was written"),
    (ENDLESS + " WHERE n < 0", {"timeout_s": 0.4}, "stopped after 0.4 s"),  # never returns a row
    (ENDLESS, {"max_rows": 3000}, "more than 3,000 records; nothing was written"),
])
def test_a_source_that_never_ends_is_stopped_and_writes_nothing(tmp_path, view, limits, words):
    import time

    src = _view_source(tmp_path / "endless.db", view)
    ws = seeded_workspace(tmp_path / "ws")
    before = db_fingerprint(ws)
    started = time.monotonic()
    with Store(ws) as store, pytest.raises(IngestError, match=words):
        ingest_traces(store, src, **limits)
    assert time.monotonic() - started < 10
    assert db_fingerprint(ws) == before


def test_a_view_building_a_huge_value_is_stopped_at_the_field_limit(tmp_path, monkeypatch):
    from engine import ingest_formats

    monkeypatch.setattr(ingest_formats, "MAX_FIELD_BYTES", 1 << 20)
    src = _view_source(tmp_path / "huge.db", "CREATE VIEW t AS SELECT '2026-03-01T10:00:00Z' AS ts, 'm' AS model_id, "
                                             "hex(zeroblob(600000)) AS input, 'p' AS prediction, "
                                             "'pass' AS verdict")
    with Store(tmp_path / "ws") as store, pytest.raises(IngestError, match="row 1: a value is larger than 1,048,576"):
        ingest_traces(store, src)


def test_human_verdict_overrides_the_judge_in_the_traces_view(tmp_path):
    records = [trace(1, id="judge-fail", verdict="fail", correction="label_2"),
               trace(2, id="human-rescued", verdict="fail", human_verdict="pass"),
               trace(3, id="human-failed", verdict="pass", human_verdict="fail", human_output="label_2"),
               trace(5, id="both-pass", verdict="pass")]
    with Store(tmp_path / "ws") as store:
        ingest_traces(store, write_jsonl(tmp_path / "h.jsonl", records))
        result = query_traces(store, "SELECT id, correction FROM traces WHERE verdict = 'fail' ORDER BY id",
                              postprocess=lambda rows: rows.rows)
    assert result.post == [("human-failed", "label_2"), ("judge-fail", "label_2")]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.dictionaries(st.sampled_from([*trace(0), "id", "human_verdict", "human_output", "stage",
                                                  "source", "extra"]), JSON_VALUES, max_size=4))
def test_any_record_is_either_stored_or_refused_with_an_ingest_error(tmp_path, overrides):
    """Arbitrary values in any field never crash the ingest or write a partial file."""
    source = write_jsonl(tmp_path / "fuzz.jsonl", [trace(1, **overrides)] if overrides else [trace(1)])
    with Store(tmp_path / "ws") as store:
        before = store.traces.count()
        try:
            result = ingest_traces(store, source)
        except IngestError as exc:
            assert "\n" not in str(exc) and "fuzz.jsonl" in str(exc)
            assert store.traces.count() == before
        else:
            assert result.inserted + result.duplicates + result.conflicts == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_arbitrary_bytes_never_crash_the_ingest(tmp_path, data, suffix):
    source = tmp_path / f"junk{suffix}"
    source.write_bytes(data)
    with Store(tmp_path / "ws") as store:
        try:
            ingest_traces(store, source)
        except IngestError as exc:
            assert "\n" not in str(exc)


# --- CLI ---------------------------------------------------------------------------------------------

def test_cli_ingest_end_to_end(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    source = write_jsonl(tmp_path / "t.jsonl", [trace(i) for i in range(5)])
    assert main(["--workspace", ws, "ingest", str(source), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inserted"] == 5
    assert main(["--workspace", ws, "ingest", str(source)]) == 0
    assert "0 inserted, 5 duplicates skipped, 0 rejected" in capsys.readouterr().out

    assert main(["--workspace", ws, "ingest", str(BAD / "unknown_verdict.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown_verdict.jsonl line 3, field 'verdict'" in err

    rejects = tmp_path / "r.jsonl"
    assert main(["--workspace", ws, "ingest", str(BAD / "unknown_verdict.jsonl"), "--skip-invalid",
                 "--rejects", str(rejects)]) == 0
    assert "2 inserted" in capsys.readouterr().out and json.loads(rejects.read_text())["line"] == 3

    csv_path = tmp_path / "x.csv"
    csv_path.write_text("t,m,in,out,v\n2026-03-01T10:00:00Z,m,hi,a,fail\n")
    assert main(["--workspace", ws, "ingest", str(csv_path), "--map", "t=ts", "--map", "m=model_id",
                 "--map", "in=input", "--map", "out=prediction", "--map", "v=verdict"]) == 0
    assert "1 inserted" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "words"), [
    (["--rejects", "r.jsonl"], "--rejects only applies with --skip-invalid"),
    (["--map", "x"], "write SRC=DST"),
    (["--table", "t"], "--table applies to SQLite sources only"),
    (["--timeout", "0"], "must be positive"),
    (["--skip-invalid", "--rejects", "{source}"], "refusing to overwrite it: it is the input file"),
])
def test_cli_ingest_bad_options_exit_2(tmp_path, capsys, argv, words):
    source = write_jsonl(tmp_path / "t.jsonl", [trace(1)])
    argv = [a.format(source=source) for a in argv]
    assert main(["--workspace", str(tmp_path / "ws"), "ingest", str(source), *argv]) == 2
    assert words in capsys.readouterr().err
