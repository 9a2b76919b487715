"""LLMPlanner through litellm's mock_response / mock_tool_calls (the only test double: the LLM API).

Covers a valid proposal, malformed JSON, a schema-invalid answer, an invalid pipeline, a tool error,
a tool-call round trip, the submit tool, an API failure, and the judgment hooks."""

from __future__ import annotations

import json
import os

import pytest

from engine.models.base import TrainConfig
from engine.search.graph import Node
from engine.search.llm_planner import LLMPlanner, ToolError
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.planner import ClusterInfo, FailureSummary, SearchState
from engine.search.policy import Action

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MODEL = "gpt-4o-mini"  # priced in litellm's bundled cost map, so completion_cost is exercised


def base_state(n: int = 2, **kw) -> SearchState:
    root = Node(id="r.n0000", pipeline=Pipeline(DatasetSpec(), TrainConfig(task="classification")),
                parent_id=None, operator="root", iteration=0, status="evaluated", score=0.88)
    return SearchState(node=root, action=Action("tune_hyperparams", "score 0.88", "tune_hyperparams"),
                       failures=FailureSummary(train_score=0.99, eval_score=0.88), n_candidates=n,
                       seen=frozenset({root.pipeline.hash}), history=(root,), **kw)


def answer(*items: dict) -> str:
    return json.dumps({"proposals": list(items)})


def tool_call(name: str, arguments: dict, call_id: str = "call_1") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def scripted(*turns: dict):
    """litellm.completion with one set of mock arguments per call, recording each request."""
    requests: list[dict] = []

    def complete(**kwargs):
        import litellm  # at first use: its import takes seconds, and collection should not pay it

        requests.append(kwargs)
        return litellm.completion(**kwargs, **turns[len(requests) - 1])

    complete.requests = requests
    return complete


def planner(**kw) -> LLMPlanner:
    return LLMPlanner(MODEL, **kw)


def test_a_valid_proposal_is_used_and_its_tokens_and_cost_recorded():
    reply = answer({"changes": {"hyperparams.epochs": 2.0}, "rationale": "overfitting: fewer epochs"},
                   {"changes": {"hyperparams.learning_rate": 2e-4}, "rationale": "overfitting: lower lr"})
    p = planner(completion_kwargs={"mock_response": reply})
    proposals = p.expand(base_state())
    assert [(x.planner, x.fallback_reason, x.operator) for x in proposals] == [("llm", None, "expand")] * 2
    assert proposals[0].modification == {"hyperparams.epochs": [3.0, 2.0]}
    assert proposals[1].pipeline.hyperparams.learning_rate == 2e-4
    (step,) = p.take_steps()
    assert (step.operator, step.planner, step.fallback_reason) == ("expand", "llm", None)
    assert (step.prompt_tokens, step.completion_tokens, step.tokens) == (10, 20, 30)
    assert step.cost_usd > 0


def test_a_whole_pipeline_in_a_code_fence_is_accepted():
    state = base_state(n=1)
    full = state.node.pipeline.modify({"hyperparams.batch_size": 16}).to_dict()
    reply = "```json\n" + answer({"pipeline": full, "rationale": "smaller batches"}) + "\n```"
    (proposal,) = planner(completion_kwargs={"mock_response": reply}).expand(state)
    assert proposal.modification == {"hyperparams.batch_size": [32, 16]} and proposal.planner == "llm"


def test_malformed_json_falls_back_to_the_rule_planner_for_that_step():
    p = planner(completion_kwargs={"mock_response": "Lower the learning rate, I think."})
    proposals = p.expand(base_state())
    assert len(proposals) == 2
    assert all(x.planner == "rule" and x.fallback_reason.startswith("malformed answer: not JSON") for x in proposals)
    assert "overfitting" in proposals[0].rationale  # the rule planner's own diagnosis
    (step,) = p.take_steps()
    assert step.planner == "rule" and step.tokens == 30 and step.fallback_reason.startswith("malformed answer")


def test_an_answer_that_breaks_the_schema_falls_back():
    p = planner(completion_kwargs={"mock_response": answer({"changes": {"hyperparams.epochs": 2.0}})})
    proposals = p.expand(base_state())
    assert proposals[0].fallback_reason == "malformed answer: proposals/0: 'rationale' is a required property"


def test_an_invalid_pipeline_falls_back_with_the_field_named():
    reply = answer({"changes": {"data.gold_fraction": 0.95}, "rationale": "all gold"})
    proposals = planner(completion_kwargs={"mock_response": reply}).expand(base_state())
    assert proposals[0].planner == "rule"
    assert proposals[0].fallback_reason.startswith("invalid pipeline: DatasetSpec.gold_fraction=0.95 is invalid")


def test_a_tool_error_falls_back():
    def broken_query(sql: str, limit: int = 50) -> str:
        raise RuntimeError("database is locked")
    complete = scripted({"mock_tool_calls": [tool_call("query_traces", {"sql": "SELECT 1"})]})
    p = planner(query_traces=broken_query, completion=complete)
    proposals = p.expand(base_state())
    assert proposals[0].fallback_reason == "tool error: query_traces failed: RuntimeError: database is locked"
    (step,) = p.take_steps()
    assert step.tool_calls == ("query_traces",) and step.planner == "rule"


def test_a_tool_call_round_trip_feeds_the_result_back_to_the_model():
    seen_sql = []

    def query(sql: str, limit: int = 50) -> dict:
        seen_sql.append((sql, limit))
        return {"rows": 3, "summary": "translate -> change_language x3"}
    reply = answer({"changes": {"data.focus_pairs": [["translate", "change_language"]]},
                    "rationale": "confusion seen in traces"})
    complete = scripted({"mock_tool_calls": [tool_call("query_traces", {"sql": "SELECT * FROM traces", "limit": 5})]},
                        {"mock_response": reply})
    p = planner(query_traces=query, completion=complete)
    (proposal, *_) = p.expand(base_state())
    assert proposal.planner == "llm" and proposal.pipeline.data.focus_pairs == (("translate", "change_language"),)
    assert seen_sql == [("SELECT * FROM traces", 5)]
    second = complete.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "query_traces"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_1",
                          "content": json.dumps({"rows": 3, "summary": "translate -> change_language x3"})}
    tools = [t["function"]["name"] for t in complete.requests[0]["tools"]]
    assert tools == ["query_traces", "submit"]  # no shell, nothing else
    (step,) = p.take_steps()
    assert step.tool_calls == ("query_traces",) and step.tokens == 60


def test_the_submit_tool_carries_the_answer():
    complete = scripted({"mock_tool_calls": [tool_call("submit", {"proposals": [
        {"changes": {"hyperparams.lora_rank": 16, "hyperparams.lora_alpha": 32}, "rationale": "capacity"}]})]})
    (proposal,) = planner(completion=complete).expand(base_state(n=1))
    assert proposal.planner == "llm" and proposal.pipeline.hyperparams.lora_rank == 16


def test_an_api_failure_falls_back():
    p = planner(completion_kwargs={"mock_response": Exception("rate limited")})
    proposals = p.expand(base_state())
    assert proposals[0].fallback_reason.startswith("LLM call failed:") and "rate limited" in proposals[0].fallback_reason


def test_proposals_already_in_the_graph_fall_back():
    reply = answer({"changes": {"hyperparams.epochs": 3.0}, "rationale": "same again"})
    proposals = planner(completion_kwargs={"mock_response": reply}).expand(base_state())
    assert proposals[0].fallback_reason == "the model proposed only pipelines already in the graph"


def test_endless_tool_calls_stop_after_max_rounds():
    log = []
    turn = {"mock_tool_calls": [tool_call("read_curation_log", {})]}
    p = planner(read_log=lambda: "# log\n" + "".join(log), completion=scripted(turn, turn), max_rounds=2)
    assert p.expand(base_state())[0].fallback_reason == "no answer after 2 rounds of tool calls"


def test_fuse_and_evolve_through_the_model():
    state = base_state()
    other = Node(id="r.n0002", pipeline=state.node.pipeline.modify({"hyperparams.epochs": 5.0}), parent_id="r.n0000",
                 operator="expand", iteration=1, status="evaluated", score=0.9)
    fuse_state = SearchState(node=other, action=state.action, operator="fuse", top=(other, state.node),
                             history=(state.node, other), seen=frozenset({other.pipeline.hash}))
    reply = answer({"changes": {"hyperparams.learning_rate": 1e-4}, "rationale": "fuse lr into epochs=5"})
    fused = planner(completion_kwargs={"mock_response": reply}).fuse(fuse_state)
    assert fused.operator == "fuse" and fused.sources == ("r.n0002", "r.n0000") and fused.planner == "llm"
    evolved = planner(completion_kwargs={"mock_response": "no"}).evolve(fuse_state)
    assert evolved.operator == "evolve" and evolved.planner == "rule" and evolved.fallback_reason


def test_cluster_judgments_through_the_model_and_their_fallback():
    cluster = ClusterInfo("c1", 2, ({"input": "hola", "prediction": "change_language", "correction": "translate"},))
    named = planner(completion_kwargs={"mock_response": json.dumps({"name": "Spanish asks to translate"})})
    assert named.name_cluster(cluster) == "Spanish asks to translate"
    broken = planner(completion_kwargs={"mock_response": json.dumps({"title": "x"})})
    assert broken.name_cluster(cluster) == "translate misread as change_language"
    assert broken.take_steps()[0].fallback_reason.startswith("malformed answer")
    judge = planner(completion_kwargs={"mock_response": json.dumps({"verdict": "external", "reason": "bad labels"})})
    verdict = judge.judge_fixability(cluster)
    assert (verdict.verdict, verdict.reason) == ("external", "bad labels")


def test_tool_dispatcher_validates_and_truncates():
    notes: list[str] = []
    p = LLMPlanner(MODEL, read_log=lambda: "x" * 50, append_log=notes.append, max_tool_chars=10)
    assert set(p.tools) == {"read_curation_log", "append_curation_log"}
    assert p.dispatch("append_curation_log", json.dumps({"markdown": "## iteration 3"})) == "appended"
    assert notes == ["## iteration 3"]
    assert p.dispatch("read_curation_log", "{}").startswith("xxxxxxxxxx\n... (truncated from 50 characters)")
    with pytest.raises(ToolError, match="unknown tool 'shell'"):
        p.dispatch("shell", '{"cmd": "rm -rf /"}')
    with pytest.raises(ToolError, match="bad arguments for append_curation_log"):
        p.dispatch("append_curation_log", '{"text": "wrong field"}')
    with pytest.raises(ToolError, match="bad arguments"):
        p.dispatch("read_curation_log", "{not json")


def test_the_default_query_tool_runs_the_read_only_trace_query(tmp_path):
    from store import Store

    with Store(tmp_path / "ws") as store:
        p = LLMPlanner(MODEL, store=store)
        summary = p.dispatch("query_traces", json.dumps({"sql": "SELECT count(*) AS n FROM traces", "limit": 5}))
        assert summary.startswith("1 rows x 1 columns (n)")
        with pytest.raises(ToolError, match="query_traces failed"):
            p.dispatch("query_traces", json.dumps({"sql": "DELETE FROM trace_records"}))


def test_a_vetos_words_and_the_failed_moves_reach_the_model():
    from engine.search.planner import MoveOutcome, VetoFeedback

    reply = answer({"changes": {"data.gold_fraction": 0.7, "data.hard_negative_fraction": 0.3},
                    "rationale": "more gold, as the reviewer asked"})
    complete = scripted({"mock_response": reply})
    failed = MoveOutcome(frozenset({("hyperparams.learning_rate", "down")}), False, False, "r.n0002")
    state = base_state(n=1, veto=VetoFeedback(("too_little_gold",), "only 5% gold, mostly replay", "r.n0000"),
                       outcomes=(failed,))
    proposal = planner(completion=complete).expand(state)[0]
    assert proposal.planner == "llm" and proposal.pipeline.data.gold_fraction == 0.7
    prompt = complete.requests[0]["messages"][1]["content"]
    assert prompt.startswith("A person vetoed the curriculum of the current pipeline")
    context = json.loads(prompt.split("\n\n", 1)[1])
    assert context["veto"] == {"node": "r.n0000", "person_said": "only 5% gold, mostly replay",
                               "reasons": ["too little gold"]}
    assert context["moves_that_did_not_improve"] == [{"changed": [["hyperparams.learning_rate", "down"]],
                                                      "at": "r.n0002"}]
