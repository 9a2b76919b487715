"""LLM-as-judge: any model litellm can reach (hosted, or a local OpenAI-compatible server), or Claude
through the native `anthropic` SDK (the rubric cached as a prompt prefix, the verdict a forced tool call),
scores an output against stated criteria, normalised to [0, 1], and may say what the output should have
been (`correction`, which production mode trains on).

A judge's answer must be a JSON object with a score on the stated scale. A malformed answer is
asked for again once; if it is still malformed the result is an *error* (score None), never a
silent 0 or 1, so a flaky judge cannot pass or fail a trace by accident.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from engine.errors import ConfigError
from engine.llm_options import completion_options

SYSTEM_PROMPT = "You are a strict, impartial evaluator. Reply with one JSON object and nothing else."

_BODY = """Evaluate the OUTPUT {who} gave for the INPUT.

Criteria: {{criteria}}

INPUT:
{{input}}

OUTPUT:
{{output}}
{{reference_block}}
Score the output from {{scale_min}} (fails the criteria) to {{scale_max}} (fully meets them).{ask}
Reply with JSON only: {{{{"score": <number from {{scale_min}} to {{scale_max}}>, "reasoning": "<one or two sentences>"\
{field}}}}}"""

DEFAULT_TEMPLATE = _BODY.format(who="a model", ask="", field="")
# For judging production traces: the verdict also carries the right output when the given one falls short.
TRACE_TEMPLATE = _BODY.format(
    who="a deployed model", field=', "correction": <the right output or null>',
    ask=' When it falls\nshort, give the output the model should have given as "correction" (same form as OUTPUT); else null.')

REFERENCE_BLOCK = "\nREFERENCE (a correct output, for comparison):\n{reference}\n"

RETRY_PROMPT = ("Your reply could not be used: {problem}. Reply again with only the JSON object "
                '{{"score": <number from {scale_min} to {scale_max}>, "reasoning": "..."}}.')

MAX_ATTEMPTS = 2  # the first answer and one retry


@dataclass(frozen=True)
class JudgeResult:
    """A verdict. `score` is in [0, 1], or None with `error` set when no usable answer came back."""

    score: float | None
    raw_score: float | None
    reasoning: str
    error: str | None
    model: str
    attempts: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    answers: list[str] = field(default_factory=list, repr=False)
    correction: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Judge(Protocol):
    def judge(self, input: str, output: str, reference: str | None = None) -> JudgeResult: ...


class MalformedAnswer(ValueError):
    """The judge's reply is not a JSON verdict on the stated scale."""


def parse_verdict(text: str, scale_min: float, scale_max: float) -> tuple[float, str, str | None]:
    """(raw score, reasoning, correction) from the first JSON object in `text` with a "score" (code
    fences and chatter allowed)."""
    decoder = json.JSONDecoder()
    objects = []
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            candidate, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(candidate, dict):
            objects.append(candidate)
    if not objects:
        raise MalformedAnswer("no JSON object found")
    return checked_verdict(next((o for o in objects if "score" in o), objects[0]), scale_min, scale_max)


def checked_verdict(verdict: dict[str, Any], scale_min: float, scale_max: float) -> tuple[float, str, str | None]:
    """A verdict object's score on the scale, its reasoning as text, and its correction (text or None)."""
    raw = verdict.get("score")
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            raise MalformedAnswer(f"score {raw!r} is not a number") from None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise MalformedAnswer(f"score {raw!r} is not a number")
    if not scale_min <= raw <= scale_max:
        raise MalformedAnswer(f"score {raw} is outside {scale_min}..{scale_max}")
    reasoning = verdict.get("reasoning", "")
    correction = verdict.get("correction")
    if correction is not None and not isinstance(correction, str):
        correction = json.dumps(correction, ensure_ascii=False)
    return (float(raw), reasoning if isinstance(reasoning, str) else json.dumps(reasoning),
            correction.strip() or None if correction is not None else None)


@dataclass(frozen=True)
class LLMJudge:
    """Judges with `model` through litellm.completion.

    `template` is a str.format template with {criteria} {input} {output} {reference_block}
    {scale_min} {scale_max}; `completion_kwargs` go to litellm.completion unchanged (temperature,
    api_base, num_retries for transient API errors, or mock_response in tests).
    """

    model: str
    criteria: str
    template: str = DEFAULT_TEMPLATE
    scale_min: int = 1
    scale_max: int = 5
    completion_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ConfigError("LLMJudge.model is empty: name a litellm model, e.g. 'anthropic/claude-sonnet-4-5'")
        if self.scale_max <= self.scale_min:
            raise ConfigError(f"LLMJudge scale {self.scale_min}..{self.scale_max} is empty: "
                              "use scale_min < scale_max")
        for needed in ("{input}", "{output}"):
            if needed not in self.template:
                raise ConfigError(f"LLMJudge.template lacks {needed}: the judge must see what it judges")
        try:
            self._prompt("input", "output", None)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"LLMJudge.template has a bad placeholder ({exc}): use only {{criteria}} "
                              "{input} {output} {reference_block} {scale_min} {scale_max}; "
                              "double literal braces") from None

    def _prompt(self, input: str, output: str, reference: str | None) -> str:
        block = REFERENCE_BLOCK.format(reference=reference) if reference is not None else ""
        return self.template.format(criteria=self.criteria, input=input, output=output, reference_block=block,
                                    scale_min=self.scale_min, scale_max=self.scale_max)

    def judge(self, input: str, output: str, reference: str | None = None) -> JudgeResult:
        import litellm  # ~3 s to import: paid only when a judge actually runs
        import openai  # litellm's API errors all derive from openai.OpenAIError

        litellm.suppress_debug_info = True  # its help banner goes to stdout, into the caller's --json

        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": self._prompt(input, output, reference)}]
        usage = _Usage()
        answers: list[str] = []
        problem = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = litellm.completion(model=self.model, messages=messages, **self.completion_kwargs)
            except openai.OpenAIError as exc:
                return self._error(f"judge call failed: {type(exc).__name__}: {_one_line(exc)}", attempt,
                                   usage, answers)
            usage.add(response, self.model)
            text = response.choices[0].message.content or ""
            answers.append(text)
            try:
                raw, reasoning, correction = parse_verdict(text, self.scale_min, self.scale_max)
            except MalformedAnswer as exc:
                problem = str(exc)
                messages = [*messages, {"role": "assistant", "content": text},
                            {"role": "user", "content": RETRY_PROMPT.format(
                                problem=problem, scale_min=self.scale_min, scale_max=self.scale_max)}]
                continue
            normalised = (raw - self.scale_min) / (self.scale_max - self.scale_min)
            return JudgeResult(normalised, raw, reasoning, None, self.model, attempt, usage.prompt_tokens,
                               usage.completion_tokens, usage.cost, answers, correction)
        return self._error(f"malformed judge answer after {MAX_ATTEMPTS} attempts: {problem}", MAX_ATTEMPTS,
                           usage, answers)

    def _error(self, message: str, attempts: int, usage: _Usage, answers: list[str]) -> JudgeResult:
        return JudgeResult(None, None, "", message, self.model, attempts, usage.prompt_tokens,
                           usage.completion_tokens, usage.cost, answers)


@dataclass
class _Usage:
    """Token counts and cost summed over attempts; cost None once any call's price is unknown."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0

    def add(self, response: Any, model: str) -> None:
        import litellm

        usage = getattr(response, "usage", None)
        self.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
        self.completion_tokens += getattr(usage, "completion_tokens", 0) or 0
        try:
            cost = litellm.completion_cost(completion_response=response, model=model)
        except Exception:  # litellm raises bare Exception for models missing from its price map
            cost = None
        self.cost = None if cost is None or self.cost is None else self.cost + float(cost)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


VERDICT_TOOL = "record_verdict"


@dataclass(frozen=True)
class AnthropicJudge:
    """Judges with a Claude model through the native `anthropic` SDK. The criteria and instructions are
    the system prompt, marked for prompt caching (every trace of a pass shares them, so after the first
    call they are read from the cache at a tenth of the price); the verdict is a forced tool call whose
    input schema is the verdict, so no JSON has to be fished out of prose. `base_url` points the client
    at a proxy or a local stand-in; the API key is read from ANTHROPIC_API_KEY by the SDK."""

    model: str
    criteria: str
    scale_min: int = 1
    scale_max: int = 5
    base_url: str | None = None
    max_tokens: int = 512

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ConfigError("AnthropicJudge.model is empty: name a Claude model, e.g. 'claude-sonnet-4-5'")
        if self.scale_max <= self.scale_min:
            raise ConfigError(f"AnthropicJudge scale {self.scale_min}..{self.scale_max} is empty: "
                              "use scale_min < scale_max")

    @property
    def api_model(self) -> str:
        return self.model.removeprefix("anthropic/")

    def system(self) -> str:
        return (f"{SYSTEM_PROMPT.split('.')[0]}. Evaluate the OUTPUT a deployed model gave for the INPUT.\n"
                f"Criteria: {self.criteria}\nScore from {self.scale_min} (fails the criteria) to {self.scale_max} "
                f"(fully meets them). When it falls short, give the output the model should have given as "
                f"`correction` (same form as OUTPUT). Record the verdict with the {VERDICT_TOOL} tool.")

    def tool(self) -> dict[str, Any]:
        return {"name": VERDICT_TOOL, "description": "Record the verdict on the OUTPUT.",
                "input_schema": {"type": "object", "required": ["score", "reasoning"], "properties": {
                    "score": {"type": "number", "minimum": self.scale_min, "maximum": self.scale_max},
                    "reasoning": {"type": "string", "description": "one or two sentences"},
                    "correction": {"type": ["string", "null"], "description": "the right output, if it falls short"},
                }}}

    @cached_property
    def client(self) -> Any:
        """One client (and its connection pool) for every row this judge scores."""
        import anthropic

        return anthropic.Anthropic(base_url=self.base_url, max_retries=2)

    def judge(self, input: str, output: str, reference: str | None = None) -> JudgeResult:
        import anthropic

        user = f"INPUT:\n{input}\n\nOUTPUT:\n{output}\n" + (REFERENCE_BLOCK.format(reference=reference)
                                                            if reference is not None else "")
        try:
            response = self.client.messages.create(
                model=self.api_model, max_tokens=self.max_tokens,
                system=[{"type": "text", "text": self.system(), "cache_control": {"type": "ephemeral"}}],
                tools=[self.tool()], tool_choice={"type": "tool", "name": VERDICT_TOOL},
                messages=[{"role": "user", "content": user}])
        except anthropic.AnthropicError as exc:
            return JudgeResult(None, None, "", f"judge call failed: {type(exc).__name__}: {_one_line(exc)}",
                               self.model, 1)
        usage = response.usage
        prompt = (usage.input_tokens or 0) + (usage.cache_read_input_tokens or 0) + \
            (usage.cache_creation_input_tokens or 0)
        cost = _claude_cost(self.api_model, usage)
        call = next((b for b in response.content if b.type == "tool_use" and b.name == VERDICT_TOOL), None)
        raw_text = json.dumps(call.input if call is not None else [b.model_dump() for b in response.content])
        if call is None:
            return JudgeResult(None, None, "", "malformed judge answer: no verdict tool call", self.model, 1,
                               prompt, usage.output_tokens or 0, cost, [raw_text])
        try:
            raw, reasoning, correction = checked_verdict(dict(call.input), self.scale_min, self.scale_max)
        except MalformedAnswer as exc:
            return JudgeResult(None, None, "", f"malformed judge answer: {exc}", self.model, 1, prompt,
                               usage.output_tokens or 0, cost, [raw_text])
        return JudgeResult((raw - self.scale_min) / (self.scale_max - self.scale_min), raw, reasoning, None,
                           self.model, 1, prompt, usage.output_tokens or 0, cost, [raw_text], correction)


def _claude_cost(model: str, usage: Any) -> float | None:
    """The call's price from litellm's price map (cache reads and writes at their own rates), or None."""
    import litellm

    try:
        prompt, completion = litellm.cost_per_token(
            model=model, prompt_tokens=usage.input_tokens or 0, completion_tokens=usage.output_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0, custom_llm_provider="anthropic")
    except Exception:  # noqa: BLE001 - litellm raises bare Exception for models missing from its price map
        return None
    return float(prompt + completion)


def is_claude(model: str) -> bool:
    return model.startswith(("anthropic/", "claude"))


def make_judge(model: str, criteria: str, *, api_base: str | None = None) -> Judge:
    """Claude models through the native SDK, everything else through litellm (with `api_base` for any
    OpenAI-compatible server, e.g. `openai/<name>` on a local vLLM or Ollama)."""
    if is_claude(model):
        return AnthropicJudge(model, criteria, base_url=api_base)
    return LLMJudge(model, criteria, TRACE_TEMPLATE, completion_kwargs=completion_options(api_base))


def missing_key(model: str, api_base: str | None = None) -> str | None:
    """What to set before `model` can be called, or None (a local `api_base` needs no key)."""
    import os

    if is_claude(model):
        return None if os.environ.get("ANTHROPIC_API_KEY") else "ANTHROPIC_API_KEY"
    if api_base:
        return None
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    missing = litellm.validate_environment(model=model).get("missing_keys") or []
    return ", ".join(missing) or None
