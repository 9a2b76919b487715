"""Ingest adapters on the real sample files in tests/ingest_samples/ (OpenAI chat JSONL, OpenTelemetry
GenAI spans, Langfuse exports, Parquet, a Hugging Face save_to_disk folder), and `--map` with dotted paths
and constants: each sample ingests with the right fields, a malformed record is a one-line error naming
the file, the record and the field, and --skip-invalid rejects it and keeps the rest."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from ingest_helpers import trace, write_jsonl

from engine.dotted import lookup
from engine.errors import IngestError
from engine.ingest import FieldMap, ingest_traces
from pioneer_tui.cli import main
from store import Store

SAMPLES = Path(__file__).parent / "ingest_samples"


def _rows(store: Store, source: str) -> dict[str, dict]:
    cur = store.conn.execute("SELECT * FROM traces WHERE source = ? ORDER BY ts", (source,))
    names = [d[0] for d in cur.description]
    return {r[names.index("id")]: dict(zip(names, r, strict=True)) for r in cur}


def _one_line_error(store: Store, path: Path, words: str, **kwargs) -> None:
    with pytest.raises(IngestError) as info:
        ingest_traces(store, path, **kwargs)
    assert "\n" not in str(info.value) and words in str(info.value), str(info.value)
    assert store.conn.execute("SELECT COUNT(*) FROM traces WHERE source = ?", (path.name,)).fetchone()[0] == 0


def _skip_invalid(store: Store, path: Path, tmp_path: Path, kept: int, unit: str, number: int, field: str,
                  **kwargs) -> None:
    rejects = tmp_path / "rejects.jsonl"
    result = ingest_traces(store, path, skip_invalid=True, rejects_path=rejects, **kwargs)
    assert (result.inserted, result.rejected) == (kept, 1)
    reject = json.loads(rejects.read_text())
    assert (reject[unit], reject["field"]) == (number, field)


@pytest.mark.parametrize(("name", "fmt"), [
    ("openai_chat.jsonl", "openai"), ("otel_genai.json", "otel"), ("langfuse_traces.json", "langfuse"),
    ("langfuse_observations.jsonl", "langfuse"), ("traces.parquet", "parquet"), ("hf_traces", "hf"),
])
def test_each_sample_is_detected_from_the_file(tmp_path, name, fmt):
    if fmt in ("parquet", "hf"):
        pytest.importorskip("pyarrow")
    from engine.ingest_sources import detect_source
    assert detect_source(SAMPLES / name, None, "shadow" if fmt == "hf" else None).format == fmt


# --- OpenAI chat JSONL ---------------------------------------------------------------------------------

def test_openai_chat_sample(tmp_path):
    with Store(tmp_path / "ws") as store:
        result = ingest_traces(store, SAMPLES / "openai_chat.jsonl")
        assert (result.format, result.inserted, result.rejected) == ("openai", 8, 0)
        rows = list(_rows(store, "openai_chat.jsonl").values())
    first = next(r for r in rows if r["input"] == "I want to cancel my order #4411")
    assert (first["model_id"], first["prediction"], first["verdict"], first["ts"]) == \
        ("intent-v3", "cancel_order", "pass", "2026-03-02T09:00:01.000+00:00")
    assert json.loads(first["metadata"]) == {"judge": "gpt-judge", "template": "intent-v2", "request_id": "req_01",
                                             "system": "Classify the customer's intent. Answer with one label."}
    refund = next(r for r in rows if r["verdict"] == "fail" and r["correction"] == "refund_request")
    assert refund["reasoning"] == "the user asks for a refund of a damaged item"
    # the awkward one: tool call, tool result, content parts with an image; input = the conversation
    multi = next(r for r in rows if r["prediction"] == "return_request")
    assert multi["input"].startswith("user: cancel order 88\n\nassistant: [{\"id\":\"call_1\"")
    assert multi["input"].endswith("user: then return it. Photo of the label: [image_url]")
    assert "tool: {\"status\": \"shipped\"}" in multi["input"] and multi["task"] == "classification"
    assert json.loads(multi["metadata"])["user"] == "u-2231"
    human = next(r for r in rows if r["input"] == "my coupon code does not work")
    assert (human["human_verdict"], human["correction"]) == ("fail", "promo_code_issue")
    assert next(r for r in rows if r["input"] == "talk to a human please")["prediction"] == ""
    assert next(r for r in rows if r["input"].startswith("Hola"))["ts"] == "2026-03-02T08:03:05.000+00:00"


def test_openai_chat_malformed_record(tmp_path):
    bad = tmp_path / "chat.jsonl"
    lines = (SAMPLES / "openai_chat.jsonl").read_text().splitlines()
    lines.insert(2, json.dumps({"messages": [{"role": "user", "content": "hello?"}], "model": "intent-v3",
                                "ts": "2026-03-02T09:00:09Z", "verdict": "fail"}))
    bad.write_text("\n".join(lines) + "\n")
    with Store(tmp_path / "ws") as store:
        _one_line_error(store, bad, "chat.jsonl line 3, field 'messages': no assistant message after the last user turn")
        _skip_invalid(store, bad, tmp_path, 8, "line", 3, "messages")
    wrong_role = tmp_path / "role.jsonl"
    write_jsonl(wrong_role, [{"messages": [{"role": "user", "content": "hi"}, {"content": "x"}], "model": "m",
                              "ts": "2026-03-02T09:00:09Z", "verdict": "pass"}])
    with Store(tmp_path / "ws2") as store:
        _one_line_error(store, wrong_role, "line 1, field 'messages.1': expected a message object with a string role",
                        format="openai")


# --- OpenTelemetry GenAI spans -------------------------------------------------------------------------

def test_otel_sample(tmp_path):
    with Store(tmp_path / "ws") as store:
        result = ingest_traces(store, SAMPLES / "otel_genai.json")
        assert (result.format, result.inserted, result.skipped) == ("otel", 5, 2)  # an HTTP and an agent span
        rows = _rows(store, "otel_genai.json")
    new_style = rows["a1b2c3d4e5f60702"]
    assert (new_style["input"], new_style["prediction"], new_style["verdict"], new_style["model_id"]) == \
        ("I want to cancel my order #4411", "cancel_order", "pass", "intent-v3")
    assert (new_style["ts"], new_style["latency_ms"], new_style["stage"]) == \
        ("2026-03-02T09:00:00.003+00:00", 48.0, "production")
    meta = json.loads(new_style["metadata"])
    assert meta["gen_ai.usage.input_tokens"] == 31 and meta["service.name"] == "support-bot"
    assert "gen_ai.input.messages" not in meta
    structured = rows["a1b2c3d4e5f60703"]  # structured AnyValue messages and system instructions
    assert (structured["prediction"], structured["verdict"]) == ("track_order", "fail")
    assert structured["reasoning"] == "the user asks for a refund of a damaged item"
    assert json.loads(structured["metadata"])["system"] == "Answer with one intent label."
    assert rows["a1b2c3d4e5f60704"]["prediction"] == "payment_methods"  # older content events
    indexed = rows["a1b2c3d4e5f60705"]  # OpenLLMetry's gen_ai.prompt.N.* attributes
    assert (indexed["input"], indexed["verdict"]) == ("my coupon code does not work", "fail")
    assert rows["a1b2c3d4e5f60707"]["input"] == \
        "user: cancel order 88\n\nassistant: Order 88 has shipped.\n\nuser: then return it"


def test_otel_collector_jsonl_and_malformed_span(tmp_path):
    doc = json.loads((SAMPLES / "otel_genai.json").read_text())
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[2]["startTimeUnixNano"] = "yesterday"
    bad = tmp_path / "spans.jsonl"
    bad.write_text(json.dumps(doc) + "\n")
    with Store(tmp_path / "ws") as store:
        _one_line_error(store, bad, "spans.jsonl span 3, field 'startTimeUnixNano': 'yesterday' is not a time")
        _skip_invalid(store, bad, tmp_path, 4, "span", 3, "startTimeUnixNano")
    spans[2]["startTimeUnixNano"] = spans[1]["startTimeUnixNano"]
    spans[2]["events"].append({"name": "gen_ai.evaluation.result", "attributes": [
        {"key": "gen_ai.evaluation.name", "value": {"stringValue": "second_judge"}},
        {"key": "gen_ai.evaluation.score.label", "value": {"stringValue": "pass"}}]})
    bad.write_text(json.dumps(doc) + "\n")
    with Store(tmp_path / "ws2") as store:
        _one_line_error(store, bad, "span 3, field 'gen_ai.evaluation.score.label': the judgments disagree")


# --- Langfuse --------------------------------------------------------------------------------------------

def test_langfuse_traces_sample(tmp_path):
    with Store(tmp_path / "ws") as store:
        result = ingest_traces(store, SAMPLES / "langfuse_traces.json")
        assert (result.format, result.inserted) == ("langfuse", 6)
        rows = _rows(store, "langfuse_traces.json")
    first = rows["t-001"]
    assert (first["input"], first["prediction"], first["verdict"], first["model_id"], first["stage"]) == \
        ("I want to cancel my order #4411", "cancel_order", "pass", "intent-v3", "production")
    assert first["latency_ms"] == 61.0 and first["ts"] == "2026-03-02T10:01:00.000+00:00"
    meta = json.loads(first["metadata"])
    assert meta["scores"] == {"intent_correct": "pass", "latency_ok": 0.93} and meta["langfuse.session_id"] == "sess-1"
    assert (rows["t-002"]["verdict"], rows["t-003"]["verdict"]) == ("pass", "fail")  # BOOLEAN scores
    assert rows["t-003"]["reasoning"] == "the user asks for a refund of a damaged item"
    awkward = rows["t-004"]  # plain-string input, JSON output, a person's annotation over the judge's fail
    assert awkward["input"] == "Hola, ¿puedo pagar con PayPal? 🙏"
    assert json.loads(awkward["prediction"]) == {"label": "payment_methods", "confidence": 0.71}
    assert (awkward["auto_verdict"], awkward["human_verdict"], awkward["verdict"]) == ("fail", "pass", "pass")


def test_langfuse_malformed_trace(tmp_path):
    items = json.loads((SAMPLES / "langfuse_traces.json").read_text())
    items[1]["scores"].append({"name": "second_judge", "dataType": "CATEGORICAL", "value": 0, "stringValue": "fail",
                               "source": "EVAL"})
    bad = tmp_path / "export.json"
    bad.write_text(json.dumps({"data": items, "meta": {"page": 1, "totalItems": 6}}, indent=1))
    with Store(tmp_path / "ws") as store:
        _one_line_error(store, bad, "export.json item 2, field 'scores': the judgments disagree")
        _skip_invalid(store, bad, tmp_path, 5, "item", 2, "scores")


def test_langfuse_observations_with_map_from_a_path(tmp_path):
    source = SAMPLES / "langfuse_observations.jsonl"
    with Store(tmp_path / "ws") as store:
        _one_line_error(store, source, "langfuse_observations.jsonl line 2, field 'verdict': missing")
        result = ingest_traces(store, source, mapping=FieldMap.parse(["verdict=metadata.judge_label"]))
        assert (result.inserted, result.skipped) == (3, 2)  # a SPAN and an EVENT are no model calls
        rows = _rows(store, "langfuse_observations.jsonl")
    assert (rows["g-102"]["input"], rows["g-102"]["prediction"], rows["g-102"]["verdict"]) == \
        ("please reset my password", "account_help", "pass")  # chat given as JSON text
    assert (rows["g-103"]["verdict"], rows["g-103"]["latency_ms"]) == ("fail", 35.0)
    assert rows["g-104"]["ts"] == "2026-03-03T08:02:00.000+00:00"


# --- Parquet and Hugging Face datasets -------------------------------------------------------------------

def test_parquet_sample_and_malformed_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    with Store(tmp_path / "ws") as store:
        result = ingest_traces(store, SAMPLES / "traces.parquet")
        assert (result.format, result.inserted) == ("parquet", 6)
        rows = _rows(store, "traces.parquet")
    assert (rows["103"]["correction"], rows["103"]["verdict"], rows["103"]["latency_ms"]) == ("refund_request", "fail", 40.25)
    assert rows["104"]["ts"] == "2026-03-04T08:02:30.250+00:00" and rows["104"]["verdict"] == "pass"
    assert json.loads(rows["104"]["metadata"]) == {"judge": "gpt-judge", "template": None}
    assert rows["105"]["prediction"] == ""

    table = pq.read_table(SAMPLES / "traces.parquet")
    verdicts = table.column("verdict").to_pylist()
    verdicts[2] = "maybe"
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("verdict"), "verdict", pa.array(verdicts)), bad)
    with Store(tmp_path / "ws2") as store:
        _one_line_error(store, bad, "bad.parquet row 3, field 'verdict': \"maybe\" is not a verdict")
        _skip_invalid(store, bad, tmp_path, 5, "row", 3, "verdict")
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("id,ts\n")
    with Store(tmp_path / "ws3") as store:
        _one_line_error(store, not_parquet, "x.parquet: not a readable Parquet file")


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with Store(tmp_path / "ws") as store:
        _one_line_error(store, SAMPLES / "traces.parquet", "needs pyarrow, which is not installed: pip install pyarrow")


def test_hf_dataset_folder_splits_classlabels_and_malformed_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.ipc  # noqa: F401 - loads pa.ipc
    folder = SAMPLES / "hf_traces"
    with Store(tmp_path / "ws") as store:
        _one_line_error(store, folder, "pass --table to choose a split: production, shadow")
        result = ingest_traces(store, folder, table="production")
        assert (result.format, result.inserted) == ("hf", 5)
        rows = _rows(store, "hf_traces:production")
    assert [rows[f"prod-{i}"]["verdict"] for i in range(1, 6)] == ["pass", "pass", "fail", "pass", "fail"]
    assert rows["prod-3"]["correction"] == "refund_request" and rows["prod-3"]["task"] == "classification"
    assert rows["prod-4"]["ts"] == "2026-03-05T07:02:00.000+00:00"  # no offset: UTC
    assert json.loads(rows["prod-1"]["metadata"]) == {"judge": "gpt-judge", "criteria": ["exact label"]}

    copy = tmp_path / "hf_copy"
    shutil.copytree(folder, copy)
    arrow = copy / "production" / "data-00000-of-00001.arrow"
    with pa.OSFile(str(arrow)) as fh:
        table = pa.ipc.open_stream(fh).read_all()
    labels = table.column("verdict").to_pylist()
    labels[1] = -1  # ClassLabel's "no label"
    table = table.set_column(table.schema.get_field_index("verdict"), "verdict", pa.array(labels, pa.int64()))
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with Store(tmp_path / "ws2") as store:
        _one_line_error(store, copy, "hf_copy split 'production' row 2, field 'verdict': missing", table="production")
        _skip_invalid(store, copy, tmp_path, 4, "row", 2, "verdict", table="production")


# --- --map with dotted paths and constants ----------------------------------------------------------------

def test_dotted_lookup():
    record = {"request": {"messages": [{"content": "a"}, {"content": "b"}]}, "attributes": {"gen_ai.request.model": "m"}}
    assert lookup(record, "request.messages.-1.content") == "b"
    assert lookup(record, "request.messages.0.content") == "a"
    assert lookup(record, "attributes.gen_ai.request.model") == "m"  # a key holding dots
    for missing in ("request.messages.2.content", "request.nope", "attributes.gen_ai"):
        with pytest.raises(LookupError):
            lookup(record, missing)


def test_map_dotted_paths_and_constants_on_flat_jsonl(tmp_path):
    records = [{"created": f"2026-03-01T10:0{i}:00Z", "label": "fail" if i == 1 else "pass",
                "request": {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": f"text {i}"}]},
                "response": {"choices": [{"message": {"content": f"answer {i}"}}]}, "reasoning": "judge notes"}
               for i in range(3)]
    source = write_jsonl(tmp_path / "nested.jsonl", records)
    mapping = FieldMap.parse(["input=request.messages.-1.content", "prediction=response.choices.0.message.content",
                              "model_id=const:my-model", "created=ts", "label=verdict",
                              "metadata.judge_notes=reasoning", "metadata.system=request.messages.0.content"])
    with Store(tmp_path / "ws") as store:
        assert ingest_traces(store, source, mapping=mapping).inserted == 3
        rows = store.conn.execute("SELECT input, prediction, model_id, verdict, reasoning, metadata FROM traces "
                                  "ORDER BY ts").fetchall()
    assert rows[1] == ("text 1", "answer 1", "my-model", "fail", None,
                       '{"judge_notes": "judge notes", "system": "sys"}')


def test_map_constant_and_path_on_csv_and_an_adapter(tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("ts,text,output,verdict\n2026-03-01T10:00:00Z,hello,greet,pass\n")
    with Store(tmp_path / "ws") as store:
        with pytest.raises(IngestError, match="field 'model_id': no such column"):
            ingest_traces(store, source, mapping=FieldMap.parse(["text=input", "output=prediction"]))
        mapping = FieldMap.parse(["input=text", "output=prediction", "model_id=const:csv-model", "stage=const:shadow"])
        assert ingest_traces(store, source, mapping=mapping).inserted == 1
        assert store.conn.execute("SELECT input, model_id, stage FROM traces").fetchone() == \
            ("hello", "csv-model", "shadow")
        # an adapter: the constant replaces what the adapter made of the record
        result = ingest_traces(store, SAMPLES / "openai_chat.jsonl", mapping=FieldMap.parse(["model_id=const:v9"]))
        assert result.inserted == 8
        assert store.conn.execute("SELECT DISTINCT model_id FROM traces WHERE source = 'openai_chat.jsonl'")\
            .fetchall() == [("v9",)]


@pytest.mark.parametrize(("specs", "words"), [
    (["model_id=const:a", "model_id=const:b"], "'model_id' is given twice"),
    (["input=a.b", "text=input"], "both 'a.b' and 'text' map to 'input'"),
    (["notafield=a.b"], "'a.b' is not a trace field"),
])
def test_bad_dotted_mapping_is_refused(specs, words):
    with pytest.raises(IngestError, match=words):
        FieldMap.parse(specs)


def test_cli_ingest_with_map_and_format(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    source = write_jsonl(tmp_path / "t.jsonl", [{k: v for k, v in trace(i).items() if k != "model_id"} for i in range(3)])
    assert main(["--workspace", ws, "ingest", str(source), "--map", "model_id=const:cli-model", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inserted"] == 3
    assert main(["--workspace", ws, "ingest", str(SAMPLES / "otel_genai.json"), "--format", "otel"]) == 0
    assert "5 inserted" in capsys.readouterr().out
    assert main(["--workspace", ws, "ingest", str(SAMPLES / "openai_chat.jsonl"), "--format", "hf"]) == 2
    assert "--format hf takes a folder" in capsys.readouterr().err
