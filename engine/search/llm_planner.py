"""A planner backed by any chat model through litellm (Claude in the paper; a local
OpenAI-compatible server works the same way).

The model may call only these tools: query_traces (read-only SQL over the traces view),
read_curation_log, append_curation_log, and `submit`, whose arguments are the answer and are
validated against a JSON schema. There is no shell. A malformed answer, an invalid pipeline, a tool
error or a failed API call makes that one step fall back to the RulePlanner, and the step records
why (`fallback_reason`), its tokens and its cost (litellm.completion_cost, when the model is priced).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import jsonschema

from engine.dotted import flatten
from engine.errors import ConfigError
from engine.search.pipeline import BANDS, Pipeline
from engine.search.planner import (
    ClusterInfo,
    Fixability,
    Operator,
    PlannerStep,
    Proposal,
    RulePlanner,
    SearchState,
)
from engine.search.reviewer import VETO_REASONS
from store import Store

T = TypeVar("T")

PROPOSALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["proposals"],
    "additionalProperties": False,
    "properties": {"proposals": {"type": "array", "minItems": 1, "maxItems": 8, "items": {
        "type": "object",
        "required": ["rationale"],
        "additionalProperties": False,
        "properties": {
            "rationale": {"type": "string", "minLength": 1},
            "changes": {"type": "object", "minProperties": 1,
                        "description": "dotted pipeline fields to change, e.g. {\"hyperparams.epochs\": 2}"},
            "pipeline": {"type": "object", "required": ["data", "hyperparams", "strategy"],
                         "description": "a complete pipeline, instead of changes"},
        },
        "oneOf": [{"required": ["changes"]}, {"required": ["pipeline"]}],
    }}},
}
NAME_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["name"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 80}},
}
FIXABILITY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["verdict", "reason"], "additionalProperties": False,
    "properties": {"verdict": {"enum": ["fixable", "external"]}, "reason": {"type": "string", "minLength": 1}},
}

SYSTEM_PROMPT = """You improve a small language model by proposing training pipelines pi = (D, H, S).
D is the curriculum (composition fractions within the bands given, focus label pairs for hard negatives,
targeted examples per failure pattern), H the hyperparameters, S the supervision strategy.
Follow the iteration policy in the request: rework_data changes D; tune_hyperparams keeps D fixed and
changes H; surgical_augmentation adds 2-3 targeted examples per remaining failure pattern.
Diagnostic rules: overfitting -> fewer epochs or a lower learning rate; a label-confusion cluster ->
hard negatives for that pair; recall-dominated errors -> more gold; precision-dominated errors -> more
hard negatives and a decision-threshold sweep; plateau -> more capacity (LoRA rank) or another method;
a reasoning task with a teacher -> chain-of-thought supervision.
You may inspect traces with query_traces (SQL over the `traces` view) and read or append the curation
log. Answer by calling `submit` with JSON matching its schema, or reply with that JSON only."""


class ToolError(RuntimeError):
    pass


class MalformedAnswer(ValueError):
    pass


class _Fallback(RuntimeError):
    pass


@dataclass
class _Tool:
    description: str
    parameters: dict[str, Any]
    run: Callable[..., Any]

    def spec(self, name: str) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": name, "description": self.description, "parameters": self.parameters}}


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: list[str] = field(default_factory=list)


def default_completion() -> Callable[..., Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price list
    import litellm

    return litellm.completion


def query_traces_tool(store: Store) -> Callable[..., str]:
    """query_traces over `store` (imported only when the model calls it); the model sees the
    summary, the full result stays in a file."""
    def query_traces(sql: str, limit: int = 50) -> str:
        from engine.query import query_traces as run

        return run(store, sql, limit=limit).summary()
    return query_traces


class LLMPlanner:
    def __init__(self, model: str, *, fallback: RulePlanner | None = None, store: Store | None = None,
                 query_traces: Callable[..., Any] | None = None, read_log: Callable[[], str] | None = None,
                 append_log: Callable[[str], Any] | None = None, completion: Callable[..., Any] | None = None,
                 completion_kwargs: dict[str, Any] | None = None, max_rounds: int = 4,
                 max_tool_chars: int = 4000) -> None:
        self.model = model
        self.fallback = fallback or RulePlanner()
        self.completion = completion
        self.completion_kwargs = dict(completion_kwargs or {})
        self.max_rounds = max_rounds
        self.max_tool_chars = max_tool_chars
        self._steps: list[PlannerStep] = []
        self.tools: dict[str, _Tool] = {}
        query = query_traces or (query_traces_tool(store) if store is not None else None)
        if query is not None:
            self.tools["query_traces"] = _Tool(
                "Run a read-only SQL query over the `traces` view; returns a short summary of the result.",
                {"type": "object", "required": ["sql"], "additionalProperties": False,
                 "properties": {"sql": {"type": "string", "minLength": 1},
                                "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}},
                query)
        if read_log is not None:
            self.tools["read_curation_log"] = _Tool(
                "Read this run's curation log (markdown).",
                {"type": "object", "additionalProperties": False, "properties": {}}, read_log)
        if append_log is not None:
            def append(markdown: str) -> str:
                append_log(markdown)
                return "appended"
            self.tools["append_curation_log"] = _Tool(
                "Append a markdown note to this run's curation log.",
                {"type": "object", "required": ["markdown"], "additionalProperties": False,
                 "properties": {"markdown": {"type": "string", "minLength": 1}}}, append)

    # -- Planner ----------------------------------------------------------------------------
    def expand(self, state: SearchState) -> list[Proposal]:
        return self._propose(state, "expand", state.n_candidates, lambda s: self.fallback.expand(s))

    def evolve(self, state: SearchState) -> Proposal:
        return self._propose(state, "evolve", 1, lambda s: [self.fallback.evolve(s)])[0]

    def fuse(self, state: SearchState) -> Proposal:
        return self._propose(state, "fuse", 1, lambda s: [self.fallback.fuse(s)])[0]

    def name_cluster(self, cluster: ClusterInfo) -> str:
        return self._run("name_cluster", _cluster_prompt(cluster, "Name this failure cluster in a few words."),
                         NAME_SCHEMA, lambda a: a["name"].strip(), lambda _: self.fallback.name_cluster(cluster))

    def judge_fixability(self, cluster: ClusterInfo) -> Fixability:
        return self._run("judge_fixability",
                         _cluster_prompt(cluster, "Can training fix this cluster ('fixable') or is the cause "
                                                  "outside the model, e.g. bad labels or bad inputs ('external')?"),
                         FIXABILITY_SCHEMA, lambda a: Fixability(a["verdict"], a["reason"]),
                         lambda _: self.fallback.judge_fixability(cluster))

    def take_steps(self) -> list[PlannerStep]:
        steps, self._steps = self._steps, []
        return steps

    # -- tools ------------------------------------------------------------------------------
    def dispatch(self, name: str, arguments: str | None) -> str:
        """Run one tool call; any problem is a ToolError (the step then falls back)."""
        tool = self.tools.get(name)
        if tool is None:
            raise ToolError(f"unknown tool {name!r} (available: {', '.join(sorted(self.tools)) or 'none'})")
        try:
            args = json.loads(arguments or "{}")
            jsonschema.validate(args, tool.parameters)
        except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
            raise ToolError(f"bad arguments for {name}: {getattr(exc, 'message', exc)}") from exc
        try:
            result = tool.run(**args)
        except Exception as exc:  # the tool's own failure, whatever it is, ends the step
            raise ToolError(f"{name} failed: {type(exc).__name__}: {exc}") from exc
        text = result if isinstance(result, str) else json.dumps(result, default=str, ensure_ascii=False)
        if len(text) > self.max_tool_chars:
            text = text[: self.max_tool_chars] + f"\n... (truncated from {len(text)} characters)"
        return text

    # -- internals --------------------------------------------------------------------------
    def _propose(self, state: SearchState, operator: Operator, n: int,
                 fallback: Callable[[SearchState], list[Proposal]]) -> list[Proposal]:
        base = state.node.pipeline
        sources = tuple(node.id for node in state.top) if operator == "fuse" else ()

        def build(answer: dict[str, Any]) -> list[Proposal]:
            seen, out = set(state.seen), []
            for item in answer["proposals"]:
                pipeline = Pipeline.from_dict(item["pipeline"]) if "pipeline" in item else base.modify(item["changes"])
                if pipeline.hash not in seen:
                    seen.add(pipeline.hash)
                    out.append(Proposal(pipeline, operator, base.diff(pipeline), item["rationale"],
                                        sources=sources, planner="llm"))
            if not out:
                raise _Fallback("the model proposed only pipelines already in the graph")
            return out[:n]

        def rule(reason: str) -> list[Proposal]:
            proposals = fallback(state)
            return [replace(p, fallback_reason=reason) for p in proposals]

        return self._run(operator, _state_prompt(state, operator, n), PROPOSALS_SCHEMA, build, rule)

    def _run(self, operator: str, prompt: str, schema: dict[str, Any], build: Callable[[dict[str, Any]], T],
             fallback: Callable[[str], T]) -> T:
        """Converse, build the answer, or fall back with the reason; record the step either way."""
        usage = _Usage()
        reason: str | None = None
        try:
            result = build(self._converse(prompt, schema, usage))
        except ToolError as exc:
            reason = f"tool error: {exc}"
        except MalformedAnswer as exc:
            reason = f"malformed answer: {exc}"
        except ConfigError as exc:
            reason = f"invalid pipeline: {exc}"
        except _Fallback as exc:
            reason = str(exc)
        if reason is not None:
            result = fallback(reason)
            self.fallback.take_steps()
        self._steps.append(PlannerStep(operator, "llm" if reason is None else "rule", usage.prompt_tokens,
                                       usage.completion_tokens, usage.cost_usd, tuple(usage.tool_calls), reason))
        return result

    def _converse(self, prompt: str, schema: dict[str, Any], usage: _Usage) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                          {"role": "user", "content": prompt}]
        submit = _Tool("Submit the answer.", schema, lambda **kw: kw)
        tools = [t.spec(name) for name, t in self.tools.items()] + [submit.spec("submit")]
        for _ in range(self.max_rounds):
            response = self._complete(messages, tools, usage)
            message = response.choices[0].message
            calls = list(getattr(message, "tool_calls", None) or [])
            if not calls:
                return _parse(message.content, schema)
            messages.append({"role": "assistant", "content": message.content or "", "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                              "arguments": c.function.arguments}} for c in calls]})
            for call in calls:
                usage.tool_calls.append(call.function.name)
                if call.function.name == "submit":
                    return _parse(call.function.arguments, schema)
                messages.append({"role": "tool", "tool_call_id": call.id,
                                 "content": self.dispatch(call.function.name, call.function.arguments)})
        raise _Fallback(f"no answer after {self.max_rounds} rounds of tool calls")

    def _complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], usage: _Usage) -> Any:
        completion = self.completion or default_completion()
        try:
            response = completion(model=self.model, messages=messages, tools=tools, **self.completion_kwargs)
        except Exception as exc:  # network, auth, rate limit, provider errors: all end this step
            raise _Fallback(f"LLM call failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
        tokens = getattr(response, "usage", None)
        usage.prompt_tokens += int(getattr(tokens, "prompt_tokens", 0) or 0)
        usage.completion_tokens += int(getattr(tokens, "completion_tokens", 0) or 0)
        try:
            import litellm

            usage.cost_usd += float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # unpriced (e.g. local) models have no cost: count tokens only
            pass
        return response


def _parse(text: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    body = (text or "").strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.S)
    if fenced:
        body = fenced.group(1)
    try:
        answer = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    try:
        jsonschema.validate(answer, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "answer"
        raise MalformedAnswer(f"{where}: {exc.message}") from exc
    return answer


def _state_prompt(state: SearchState, operator: str, n: int) -> str:
    node = state.node
    context = {
        "operator": operator,
        "proposals_wanted": n,
        "policy": state.action.to_dict(),
        "task": state.task, "reasoning_task": state.reasoning, "teacher": state.teacher, "plateau": state.plateau,
        "current": {"node": node.id, "score": node.score, "regressions": node.regressions,
                    "pipeline": node.pipeline.to_dict()},
        "failures": state.failures.to_dict(),
        "trajectory": [{"node": a.id, "score": a.score, "changes": prev.pipeline.diff(a.pipeline)}
                       for prev, a in zip(state.history, state.history[1:], strict=False)],
        "fuse_sources": [{"node": t.id, "score": t.score, "pipeline": t.pipeline.to_dict()} for t in state.top],
        "composition_bands": BANDS[node.pipeline.data.mode],
        "fields": sorted(flatten(node.pipeline.to_dict())),
        "moves_that_did_not_improve": [{"changed": sorted(o.signature), "at": o.at}
                                       for o in state.outcomes if not o.improved],
        "moves_that_cut_regressions": [sorted(o.signature) for o in state.outcomes if o.fewer_regressions],
    }
    ask = {"expand": f"Propose {n} different pipelines to try next.",
           "evolve": "The search stagnated: mutate the best pipeline, keeping the changes that improved it.",
           "fuse": "The search stagnated: combine what worked in the fuse_sources into one pipeline."}[operator]
    if state.veto is not None:
        context["veto"] = {"node": state.veto.node_id, "person_said": state.veto.text,
                           "reasons": [VETO_REASONS[r] for r in state.veto.reasons]}
        ask = (f"A person vetoed the curriculum of the current pipeline (see veto). Propose {n} revision(s) of it "
               "that address what they said; the revised curriculum must differ from the vetoed one.")
    return f"{ask}\n\n{json.dumps(context, ensure_ascii=False, default=str)}"


def _cluster_prompt(cluster: ClusterInfo, ask: str) -> str:
    body = {"id": cluster.id, "size": cluster.size, "kind": cluster.kind,
            "confirmation_rate": cluster.confirmation_rate, "characteristics": cluster.characteristics,
            "examples": list(cluster.examples[:10])}
    return f"{ask}\n\n{json.dumps(body, ensure_ascii=False, default=str)}"


def planner_for(llm: str | None, *, seed: int, store: Store | None = None,
                options: dict[str, Any] | None = None) -> RulePlanner | LLMPlanner:
    """A run's planner: the rules, or an LLM over them (the rules answer whenever the LLM cannot)."""
    rules = RulePlanner(seed=seed)
    return LLMPlanner(llm, fallback=rules, store=store, completion_kwargs=dict(options or {})) if llm else rules
