"""LLM-as-judge (engine.eval.judge) through litellm's own `mock_response`: no network."""

from __future__ import annotations

import os

import pytest

from engine.errors import ConfigError
from engine.eval.judge import Judge, JudgeResult, LLMJudge, MalformedAnswer, parse_verdict


@pytest.fixture(scope="module")
def litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: the bundled price map
    import litellm

    return litellm


@pytest.fixture
def replies(litellm, monkeypatch):
    """Feeds successive mock_response values to the real litellm.completion and records each call."""
    calls: list[dict] = []
    queue: list = []
    real = litellm.completion

    def completion(**kwargs):
        calls.append(kwargs)
        return real(**kwargs, mock_response=queue.pop(0))

    monkeypatch.setattr(litellm, "completion", completion)

    def load(*answers):
        queue.extend(answers)
        return calls

    return load


def test_verdict_is_normalised_with_usage_and_cost(litellm):
    judge: Judge = LLMJudge("gpt-4o-mini", "The answer is correct.",
                            completion_kwargs={"mock_response": '{"score": 4, "reasoning": "Right, terse."}'})
    result = judge.judge("What is 2+2?", "4")
    assert isinstance(result, JudgeResult) and result.ok
    assert result.score == pytest.approx(0.75)  # 4 on 1..5
    assert (result.raw_score, result.reasoning, result.attempts) == (4.0, "Right, terse.", 1)
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    expected_cost = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=result.prompt_tokens,
                                           completion_tokens=result.completion_tokens)
    assert result.cost_usd == pytest.approx(sum(expected_cost))


@pytest.mark.parametrize(("answer", "scale", "expected"), [
    ('{"score": 1, "reasoning": "wrong"}', (1, 5), 0.0),
    ('{"score": 5, "reasoning": "perfect"}', (1, 5), 1.0),
    ('Sure!\n```json\n{"score": 7, "reasoning": "good"}\n```', (0, 10), 0.7),
    ('{"score": "3", "reasoning": "ok"}', (1, 5), 0.5),
])
def test_scales_and_wrapped_answers(litellm, answer, scale, expected):
    judge = LLMJudge("gpt-4o-mini", "helpful", scale_min=scale[0], scale_max=scale[1],
                     completion_kwargs={"mock_response": answer})
    assert judge.judge("q", "a").score == pytest.approx(expected)


def test_unknown_model_price_gives_no_cost(litellm):
    judge = LLMJudge("openai/my-local-judge", "helpful", completion_kwargs={"mock_response": '{"score": 2}'})
    result = judge.judge("q", "a")
    assert result.ok and result.score == pytest.approx(0.25) and result.reasoning == ""
    assert result.cost_usd is None
    assert result.prompt_tokens > 0


def test_prompt_carries_criteria_input_output_and_reference(replies):
    calls = replies('{"score": 3, "reasoning": "r"}', '{"score": 3, "reasoning": "r"}')
    judge = LLMJudge("gpt-4o-mini", "Names the capital city.", completion_kwargs={"temperature": 0.0})
    judge.judge("Capital of France?", "Lyon", reference="Paris")
    judge.judge("Capital of France?", "Lyon")
    with_ref, without_ref = (c["messages"][-1]["content"] for c in calls)
    for part in ("Names the capital city.", "Capital of France?", "Lyon", "from 1 to 5"):
        assert part in with_ref
    assert "REFERENCE" in with_ref and "Paris" in with_ref
    assert "REFERENCE" not in without_ref
    assert calls[0]["messages"][0]["role"] == "system"
    assert calls[0]["temperature"] == 0.0 and calls[0]["model"] == "gpt-4o-mini"


def test_malformed_answer_is_retried_once_with_the_problem_stated(replies):
    calls = replies("I think it is quite good.", '{"score": 5, "reasoning": "fixed"}')
    result = LLMJudge("gpt-4o-mini", "helpful").judge("q", "a")
    assert result.ok and result.score == 1.0 and result.attempts == 2
    retry = calls[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think it is quite good."}
    assert "no JSON object found" in retry[-1]["content"]
    assert result.answers == ["I think it is quite good.", '{"score": 5, "reasoning": "fixed"}']


@pytest.mark.parametrize("bad", [
    "no json at all",
    '{"score": 9, "reasoning": "off the scale"}',
    '{"score": true, "reasoning": "a bool is not a score"}',
    '{"score": null}',
    '{"reasoning": "forgot the score"}',
    '{"score": "high"}',
    '[4]',
])
def test_twice_malformed_is_an_error_never_a_score(replies, bad):
    calls = replies(bad, bad)
    result = LLMJudge("gpt-4o-mini", "helpful").judge("q", "a")
    assert not result.ok and result.score is None and result.raw_score is None
    assert result.attempts == 2 and len(calls) == 2
    assert result.error.startswith("malformed judge answer after 2 attempts")


def test_usage_is_summed_over_attempts(replies, litellm):
    replies("garbage", '{"score": 3}')
    two = LLMJudge("gpt-4o-mini", "helpful").judge("q", "a")
    replies('{"score": 3}')
    one = LLMJudge("gpt-4o-mini", "helpful").judge("q", "a")
    assert two.completion_tokens == 2 * one.completion_tokens
    assert two.prompt_tokens > one.prompt_tokens  # the retry carries the whole conversation
    assert two.cost_usd > one.cost_usd > 0


def test_api_failure_is_an_error_result(litellm):
    error = litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-4o-mini")
    result = LLMJudge("gpt-4o-mini", "helpful", completion_kwargs={"mock_response": error}).judge("q", "a")
    assert not result.ok and result.score is None and result.attempts == 1
    assert result.error.startswith("judge call failed: RateLimitError")


def test_bad_configuration_is_named():
    with pytest.raises(ConfigError, match="lacks \\{output\\}"):
        LLMJudge("gpt-4o-mini", "c", template="Judge {input}")
    with pytest.raises(ConfigError, match="bad placeholder"):
        LLMJudge("gpt-4o-mini", "c", template="{input} {output} {nonsense}")
    with pytest.raises(ConfigError, match="scale 5..5"):
        LLMJudge("gpt-4o-mini", "c", scale_min=5, scale_max=5)
    with pytest.raises(ConfigError, match="model is empty"):
        LLMJudge(" ", "c")


def test_parse_verdict_directly():
    # the verdict is the first object with a score, even after other JSON in the reply
    assert parse_verdict('context {"a": {"b": 1}} then {"score": 2.5, "reasoning": "x"}', 0, 5) == (2.5, "x", None)
    assert parse_verdict('{"score": 0, "reasoning": ["a", "b"]}', 0, 1) == (0.0, '["a", "b"]', None)
    with pytest.raises(MalformedAnswer, match="outside 0..1"):
        parse_verdict('{"score": 1.5}', 0, 1)
    with pytest.raises(MalformedAnswer, match="not a number"):
        parse_verdict('{"score": NaN}', 0, 1)
