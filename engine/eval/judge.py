"""LLM-as-judge through litellm: any model litellm can reach (hosted, or a local OpenAI-compatible
server) scores an output against stated criteria, normalised to [0, 1].

A judge's answer must be a JSON object with a score on the stated scale. A malformed answer is
asked for again once; if it is still malformed the result is an *error* (score None), never a
silent 0 or 1, so a flaky judge cannot pass or fail a trace by accident.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.errors import ConfigError

SYSTEM_PROMPT = "You are a strict, impartial evaluator. Reply with one JSON object and nothing else."

DEFAULT_TEMPLATE = """Evaluate the OUTPUT a model gave for the INPUT.

Criteria: {criteria}

INPUT:
{input}

OUTPUT:
{output}
{reference_block}
Score the output from {scale_min} (fails the criteria) to {scale_max} (fully meets them).
Reply with JSON only: {{"score": <number from {scale_min} to {scale_max}>, "reasoning": "<one or two sentences>"}}"""

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

    @property
    def ok(self) -> bool:
        return self.error is None


class Judge(Protocol):
    def judge(self, input: str, output: str, reference: str | None = None) -> JudgeResult: ...


class MalformedAnswer(ValueError):
    """The judge's reply is not a JSON verdict on the stated scale."""


def parse_verdict(text: str, scale_min: float, scale_max: float) -> tuple[float, str]:
    """(raw score, reasoning) from the first JSON object in `text` with a "score" (code fences and
    chatter allowed)."""
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
    verdict = next((o for o in objects if "score" in o), objects[0])
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
    return float(raw), reasoning if isinstance(reasoning, str) else json.dumps(reasoning)


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
                raw, reasoning = parse_verdict(text, self.scale_min, self.scale_max)
            except MalformedAnswer as exc:
                problem = str(exc)
                messages = [*messages, {"role": "assistant", "content": text},
                            {"role": "user", "content": RETRY_PROMPT.format(
                                problem=problem, scale_min=self.scale_min, scale_max=self.scale_max)}]
                continue
            normalised = (raw - self.scale_min) / (self.scale_max - self.scale_min)
            return JudgeResult(normalised, raw, reasoning, None, self.model, attempt, usage.prompt_tokens,
                               usage.completion_tokens, usage.cost, answers)
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
