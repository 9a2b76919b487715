"""`pioneer-tui judge` (issue 17): unjudged logs scored by an LLM judge into judged traces. Offline: litellm's
mock_response, a local stand-in for an OpenAI-compatible server and one for the Anthropic Messages API
(which also shows the rubric is sent for prompt caching and the verdict is a forced tool call)."""

from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from engine.eval.judge import TRACE_TEMPLATE, AnthropicJudge, LLMJudge, make_judge
from engine.eval.trace_judging import judge_rows, rubric_id
from engine.search.budget import BudgetLimits
from pioneer_tui.cli import main
from store import Store

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROWS = [{"id": "a", "ts": "2026-11-01T10:00:00+00:00", "input": "play some jazz", "prediction": "weather", "model_id": "intent-v1",
         "task": "classification"},
        {"id": "b", "ts": "2026-11-01T10:01:00+00:00", "input": "will it rain", "prediction": "weather", "model_id": "intent-v1",
         "task": "classification"},
        {"id": "c", "input": "score of the game", "prediction": "sports", "model_id": "intent-v1",
         "task": "classification", "verdict": "pass"}]
CRITERIA = "The output is the intent of the input: weather, music or sports."


def scripted(*answers):
    """A litellm judge whose replies are `answers`, in order (litellm's own mock_response)."""
    queue = list(answers)

    class Scripted:
        model = "openai/judge"

        def judge(self, input, output, reference=None):
            return LLMJudge("openai/judge", CRITERIA, TRACE_TEMPLATE,
                            completion_kwargs={"mock_response": queue.pop(0)}).judge(input, output, reference)
    return Scripted()


def test_a_low_score_fails_with_the_judges_correction_and_the_verdict_keeps_who_judged():
    judge = scripted('{"score": 1, "reasoning": "jazz is music", "correction": "music"}',
                     '{"score": 5, "reasoning": "right", "correction": null}')
    judged, report = judge_rows(ROWS, judge, model="openai/judge", criteria=CRITERIA)
    a, b, c = judged
    assert (a["verdict"], a["correction"], b["verdict"], "correction" in b) == ("fail", "music", "pass", False)
    assert a["metadata"] == {"judge": "openai/judge", "judge_rubric": rubric_id(CRITERIA), "judge_score": 1.0,
                             "judge_reasoning": "jazz is music"}
    assert c is ROWS[2] and report.already_judged == 1
    assert (report.judged, report.passed, report.failed, report.corrected) == (2, 1, 1, 1)
    assert report.prompt_tokens > 0


def test_a_malformed_judge_leaves_the_row_unjudged_and_the_budget_stops_spending():
    judge = scripted("no idea", "still no idea", '{"score": 5}')
    judged, report = judge_rows(ROWS[:2], judge, model="openai/judge", criteria=CRITERIA,
                                limits=BudgetLimits(tokens=1))
    assert judged == [] and report.errors == 1 and report.not_reached == 1
    assert "malformed" in report.first_error and report.stopped.startswith("tokens budget spent")
    assert [r["id"] for r in report.unjudged] == ["a", "b"]


class Stand_in(http.server.BaseHTTPRequestHandler):  # noqa: N801
    """Answers /v1/chat/completions (OpenAI-compatible) and /v1/messages (Anthropic) with a verdict that
    fails 'play some jazz' and passes the rest; keeps every request body."""

    requests: list = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        text = json.dumps(body)
        verdict = ({"score": 1, "reasoning": "jazz is music", "correction": "music"} if "jazz" in text
                   else {"score": 5, "reasoning": "right", "correction": None})
        if self.path.endswith("/messages"):
            answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                      "content": [{"type": "tool_use", "id": "tu_1", "name": "record_verdict", "input": verdict}],
                      "stop_reason": "tool_use", "stop_sequence": None,
                      "usage": {"input_tokens": 12, "output_tokens": 20, "cache_read_input_tokens": 90,
                                "cache_creation_input_tokens": 0}}
        else:
            answer = {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": json.dumps(verdict)}}],
                      "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    Stand_in.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stand_in)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def unjudged(tmp_path):
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]))
    return path


def test_cli_judges_through_an_openai_compatible_server_and_ingests(tmp_path, endpoint, capsys):
    argv = ["--workspace", str(tmp_path / "ws"), "judge", str(unjudged(tmp_path)), "--judge", "openai/local-judge",
            "--api-base", f"{endpoint}/v1", "--criteria", CRITERIA, "--ingest"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "judged 2: 1 pass, 1 fail (1 with a correction)" in out and "ingested 2 traces" in out
    with Store(tmp_path / "ws") as store:
        rows = {r["id"]: r for r in store.db.query("SELECT id, verdict, correction, metadata FROM traces")}
    assert rows["a"]["verdict"] == "fail" and rows["a"]["correction"] == "music" and rows["b"]["verdict"] == "pass"
    assert json.loads(rows["a"]["metadata"])["judge"] == "openai/local-judge"
    assert all(path == "/v1/chat/completions" for path, _ in Stand_in.requests)


def test_claude_judges_through_the_anthropic_sdk_with_a_cached_rubric_and_a_tool_verdict(tmp_path, endpoint,
                                                                                      monkeypatch, capsys):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    rubric = tmp_path / "rubric.md"
    rubric.write_text(CRITERIA)
    argv = ["--workspace", str(tmp_path / "ws"), "judge", str(unjudged(tmp_path)), "--judge", "claude-sonnet-4-5",
            "--api-base", endpoint, "--rubric", str(rubric), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["passed"], report["failed"], report["prompt_tokens"]) == (1, 1, 2 * 102)
    path, body = Stand_in.requests[0]
    assert path == "/v1/messages" and body["model"] == "claude-sonnet-4-5"
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"} and CRITERIA in body["system"][0]["text"]
    assert body["tool_choice"] == {"type": "tool", "name": "record_verdict"}
    judged = [json.loads(line) for line in (tmp_path / "logs.judged.jsonl").read_text().splitlines()]
    assert [(r["verdict"], r.get("correction")) for r in judged] == [("fail", "music"), ("pass", None)]


def test_ingest_needs_timestamps_and_says_so_before_judging(tmp_path, endpoint, capsys):
    path = tmp_path / "logs.jsonl"
    path.write_text(json.dumps({"input": "x", "prediction": "weather", "model_id": "m"}) + "\n")
    argv = ["--workspace", str(tmp_path / "ws"), "judge", str(path), "--judge", "openai/j", "--api-base", endpoint,
            "--criteria", CRITERIA, "--ingest"]
    assert main(argv) == 2
    assert "row 1: field ts: missing" in capsys.readouterr().err and Stand_in.requests == []


@pytest.mark.parametrize(("model", "key"), [("claude-sonnet-4-5", "ANTHROPIC_API_KEY"), ("gpt-4o-mini", "OPENAI_API_KEY")])
def test_without_a_key_it_says_which_to_set_and_exits_2(tmp_path, monkeypatch, capsys, model, key):
    monkeypatch.delenv(key, raising=False)
    argv = ["--workspace", str(tmp_path / "ws"), "judge", str(unjudged(tmp_path)), "--judge", model,
            "--criteria", CRITERIA]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and f"export {key}=" in err and "--api-base" in err


def test_make_judge_picks_the_native_sdk_for_claude_and_litellm_for_the_rest():
    assert isinstance(make_judge("anthropic/claude-haiku-4-5", CRITERIA), AnthropicJudge)
    local = make_judge("openai/qwen", CRITERIA, api_base="http://localhost:8000/v1")
    assert isinstance(local, LLMJudge) and local.completion_kwargs["api_base"] == "http://localhost:8000/v1"


def test_a_judge_that_cannot_be_reached_leaves_every_row_unjudged_and_exits_1(tmp_path, capsys):
    from test_catalog import closed_port

    argv = ["--workspace", str(tmp_path / "ws"), "judge", str(unjudged(tmp_path)), "--judge", "openai/j",
            "--api-base", f"http://127.0.0.1:{closed_port()}/v1", "--criteria", CRITERIA]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "judged 0" in out and "2 left unjudged (2 judge errors" in out
    assert len((tmp_path / "logs.judged.unjudged.jsonl").read_text().splitlines()) == 2
