"""Task analysis: from a description (and the data's schema) to a task type, a metric, and the label
set or output format, with the reason recorded.

The rules read the description for what is asked (extract entities / classify or detect / write,
solve, answer) and the data for what the answers are (entity spans, a small set of repeated labels,
or mostly distinct text and numbers). When they disagree the data wins: it is what will be trained
on, and the reason says so. A configured LLM planner (litellm) can decide instead; its answer is
schema-validated and checked against the data, and any problem falls back to the rules with the
reason recorded.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import ConfigError
from engine.eval.metrics import check_metric
from engine.models.base import NEGATIVE_LABELS
from engine.records import TASKS, Example
from engine.tasks import TASK_TYPES, task_type

# Labels that mean "nothing to report", in order of preference: the encoder's fallback names (CLINC's
# oos), then the negative class of a binary detector (which only means "nothing" when there are two).
NOTHING_LABELS = NEGATIVE_LABELS
BINARY_NEGATIVES = (*NEGATIVE_LABELS, "ham", "not_spam", "not spam", "legit", "normal", "clean", "benign", "no",
                    "false", "0")
MAX_LABELS = 300          # more distinct answers than this are not a label set
LABEL_REPEAT = 3.0        # a label set repeats each answer this many times on average
LONG_ANSWER_WORDS = 6     # longer answers are text to generate, not labels

_NER = re.compile(r"\b(extract\w*|named[- ]entit\w*|entit(y|ies)|ner|spans?|mentions?|recogni[sz]e\w* (the )?"
                  r"(names?|people|persons?|places?|locations?|organi[sz]ations?|companies|brands?|products?)|"
                  r"(find|highlight|pull out|tag|mark|label|identify|spot|detect)\w* (all |every |any )?(the )?"
                  r"(names?|people|persons?|places?|locations?|organi[sz]ations?|companies|brands?|products?|"
                  r"drugs?|genes?|dates?|addresses?|cities|countries))\b", re.I)
_CLS = re.compile(r"\b(classif\w*|categori[sz]\w*|detect\w*|flag\w*|triage|rout(e|ing)|intents?|sentiment|"
                  r"spam|toxic\w*|topics?|moderat\w*|whether|is (it|this|the \w+) (a|an)?|label\w*|sort\w* "
                  r"(into|by)|which (category|class|department|team|language)|identify (the|whether)|predict "
                  r"(the )?(class|label|category)|filter\w*|fraud|phishing|hate speech|yes or no)\b", re.I)
_GEN = re.compile(r"\b(generat\w*|writ(e|es|ing)|summari[sz]\w*|translat\w*|answer\w*|solv\w*|calculat\w*|"
                  r"comput\w*|rewrit\w*|paraphras\w*|explain\w*|complet(e|ion) the|code|program\w*|functions?|"
                  r"repl(y|ies)|respond\w*|draft\w*|math\w*|arithmetic|word problems?|reason\w*|convert\w*|"
                  r"format\w* (as|into)|produce|compose)\b", re.I)
_REASONING = re.compile(r"\b(solv\w*|math\w*|arithmetic|calculat\w*|comput\w*|word problems?|reason\w*|"
                        r"step[- ]by[- ]step|logic\w*|puzzles?)\b", re.I)
_CODE = re.compile(r"\b(code|program\w*|python|functions?|implement\w*)\b", re.I)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class DataSchema:
    """What the data's answers look like, enough to tell a label set from text and spans."""

    n_rows: int
    output_kind: str          # spans | text
    n_distinct: int
    label_counts: dict[str, int]
    entity_types: tuple[str, ...]
    avg_output_words: float
    numeric_share: float
    rationale_share: float
    origin: str = ""
    format: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, examples: Sequence[Example], *, origin: str = "", format: str = "",
           fields: Mapping[str, str] | None = None, n_rationales: int = 0) -> DataSchema:
        outputs = [ex.output for ex in examples]
        spans = [o for o in outputs if isinstance(o, tuple | list)]
        if spans and len(spans) == len(outputs):
            types = Counter(s.label for o in spans for s in o)
            return cls(len(outputs), "spans", len(types), dict(types.most_common()), tuple(sorted(types)),
                       0.0, 0.0, 0.0, origin, format, dict(fields or {}))
        texts = [str(o) for o in outputs]
        counts = Counter(" ".join(t.split()) for t in texts)
        words = [len(t.split()) for t in texts]
        numeric = sum(bool(_NUMBER.match(t.strip())) for t in texts)
        n = max(len(texts), 1)
        return cls(len(texts), "text", len(counts), dict(counts.most_common(MAX_LABELS + 1)), (),
                   round(sum(words) / n, 2), round(numeric / n, 4), round(n_rationales / n, 4), origin, format,
                   dict(fields or {}))

    @property
    def looks_like_labels(self) -> bool:
        """A small set of short answers, each repeated: a label set."""
        return (self.output_kind == "text" and 2 <= self.n_distinct <= MAX_LABELS
                and self.n_rows / self.n_distinct >= LABEL_REPEAT and self.avg_output_words <= LONG_ANSWER_WORDS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskAnalysis:
    """The decision: what is trained and how it is scored, and why.

    `labels` is the label set (classification) or the entity types (NER), empty for generation;
    `negative_label` is the class that means "nothing fires" (a detector's negative class, CLINC's
    oos), `positive_label` the class an f1:<label> metric scores."""

    description: str
    task: str
    metric: str
    labels: tuple[str, ...] = ()
    output_format: str = ""
    positive_label: str | None = None
    negative_label: str | None = None
    reasoning: bool = False
    decided_by: str = "rules"
    reason: str = ""
    signals: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task analysis: task={self.task!r} is invalid: use one of {', '.join(TASKS)}")
        check_metric(self.task, self.metric)
        object.__setattr__(self, "labels", tuple(self.labels))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TaskAnalysis:
        return cls(**{**raw, "labels": tuple(raw.get("labels") or ())})

    def markdown(self) -> str:
        labels = ", ".join(self.labels[:20]) + (f", ... ({len(self.labels)} in all)" if len(self.labels) > 20 else "")
        lines = [f"- task: **{self.task}**, metric **{self.metric}** (decided by {self.decided_by})",
                 f"- why: {self.reason}"]
        if self.labels:
            lines.append(f"- {task_type(self.task).label_noun}: {labels}")
        if self.output_format:
            lines.append(f"- output format: {self.output_format}")
        if self.negative_label:
            lines.append(f"- 'nothing fires' class: {self.negative_label}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------

def classify_description(description: str) -> tuple[str | None, str]:
    """The task type the description alone asks for (None when it says nothing decisive)."""
    text = " ".join(description.split())
    hits = {task: [m.group(0).lower() for m in rx.finditer(text)]
            for task, rx in (("ner", _NER), ("classification", _CLS), ("generation", _GEN))}
    if hits["ner"]:
        return "ner", f"the description asks to find spans ({', '.join(dict.fromkeys(hits['ner']))})"
    cls, gen = len(hits["classification"]), len(hits["generation"])
    if cls == gen == 0:
        return None, "the description names no task verb"
    if cls >= gen:
        return "classification", f"the description asks for a category ({', '.join(dict.fromkeys(hits['classification']))})"
    return "generation", f"the description asks for produced text ({', '.join(dict.fromkeys(hits['generation']))})"


def _task_from_data(schema: DataSchema | None, described: str | None) -> tuple[str | None, str]:
    if schema is None or schema.n_rows == 0:
        return None, "no data to inspect"
    if schema.output_kind == "spans":
        return "ner", f"the data's answers are entity spans ({', '.join(schema.entity_types[:8])})"
    if schema.rationale_share > 0.5:
        return "generation", "the data's answers carry worked reasoning and a final answer"
    if schema.looks_like_labels and schema.numeric_share > 0.8 and described == "generation":
        return "generation", (f"the data's answers are numbers ({schema.n_distinct} distinct) and the description "
                              "asks to compute them")
    if schema.looks_like_labels:
        return "classification", (f"the data's answers are {schema.n_distinct} short labels, each repeated "
                                  f"~{schema.n_rows / schema.n_distinct:.0f} times")
    if schema.n_distinct >= 2 and schema.avg_output_words <= LONG_ANSWER_WORDS \
            and schema.n_distinct <= MAX_LABELS and described == "classification":
        return "classification", f"the description asks for a category and the data has {schema.n_distinct} short answers"
    return "generation", (f"the data's answers are mostly distinct ({schema.n_distinct} of {schema.n_rows}"
                          f"{', numeric' if schema.numeric_share > 0.8 else ''}, ~{schema.avg_output_words:.1f} words)")


def _label_named(description: str, labels: Sequence[str]) -> str | None:
    words = set(re.findall(r"[a-z0-9_-]+", description.lower()))
    named = [lab for lab in labels if lab.lower() in words or lab.lower().rstrip("s") in words]
    return named[0] if len(named) == 1 else None


def _classification_metric(description: str, counts: Mapping[str, int]) -> tuple[str, str | None, str | None, str]:
    """(metric, positive label, negative label, why)."""
    labels = sorted(counts)
    lowered = {lab.lower(): lab for lab in labels}
    names = BINARY_NEGATIVES if len(labels) == 2 else NOTHING_LABELS
    nothing = next((lowered[name] for name in names if name in lowered), None)
    if len(labels) == 2:
        positive = _label_named(description, labels)
        if positive is None and nothing is not None:
            positive = next(lab for lab in labels if lab != nothing)
        if positive is not None:
            negative = next(lab for lab in labels if lab != positive)
            return (f"f1:{positive}", positive, negative,
                    f"a binary detector of '{positive}': F1 of that class (accuracy hides misses of a rare class)")
        return "accuracy", None, None, "two symmetric classes: accuracy"
    ratio = max(counts.values()) / max(min(counts.values()), 1)
    if ratio > 3:
        return "macro_f1", None, nothing, f"{len(labels)} classes, imbalanced {ratio:.0f}x: macro-F1"
    return "accuracy", None, nothing, f"{len(labels)} balanced classes: accuracy"


def _generation_metric(description: str, schema: DataSchema | None) -> tuple[str, str, str]:
    """(metric, output format, why)."""
    if schema is not None and schema.format == "human-eval":
        return "pass@1", "a Python function body", "HumanEval problems carry tests: pass@1 in the sandbox"
    if schema is not None and schema.rationale_share > 0.5:
        return ("final_number", "worked reasoning then '#### <number>'",
                "answers end in a final number after reasoning: the final number is scored")
    if schema is not None and schema.numeric_share > 0.8:
        return ("exact_match", "a bare number and nothing else",
                "every answer is a bare number: exact match (the format is part of the task)")
    if _CODE.search(description) and (schema is None or schema.avg_output_words > LONG_ANSWER_WORDS):
        return "rougeL", "code", "code without tests to run: ROUGE-L against the reference"
    if schema is not None and schema.avg_output_words > LONG_ANSWER_WORDS:
        return "rougeL", "free text", f"answers average {schema.avg_output_words:.0f} words: ROUGE-L"
    return "exact_match_normalized", "a short answer", "short answers: normalised exact match"


def analyse_by_rules(description: str, schema: DataSchema | None = None, *, task: str | None = None,
                     metric: str | None = None) -> TaskAnalysis:
    """The rule-based decision; `task` / `metric` force a choice (recorded as the user's)."""
    described, desc_reason = classify_description(description)
    from_data, data_reason = _task_from_data(schema, described)
    if task is not None:
        chosen, reason = task, f"task set by the user ({task})"
    elif from_data is not None:
        chosen = from_data
        agree = described in (None, from_data)
        reason = data_reason + ("" if agree else f"; the description suggested {described} ({desc_reason}), "
                                                 "but the data decides what can be trained")
        if agree and described is not None:
            reason = f"{desc_reason}; {data_reason}"
    elif described is not None:
        chosen, reason = described, desc_reason + " (no data yet)"
    else:
        raise ConfigError(f"cannot tell the task type from {description!r} without data: describe it with a verb "
                          "(classify / detect, extract / find names, write / answer / solve) or pass --data")
    signals = {"description": described, "data": from_data}
    reasoning = bool(_REASONING.search(description)) or (schema is not None and schema.rationale_share > 0.5)
    kind = task_type(chosen)
    if kind.spans:
        types = schema.entity_types if schema is not None else ()
        chosen_metric = metric or "entity_f1"
        return TaskAnalysis(description, chosen, chosen_metric, types, "entity spans (BIO over tokens)",
                            negative_label=None, reasoning=False, reason=f"{reason}; metric {chosen_metric}: "
                            "exact span and type match", signals=signals)
    if kind.single_label:
        counts = schema.label_counts if schema is not None and schema.output_kind == "text" else {}
        if len(counts) > MAX_LABELS:
            raise ConfigError(f"classification needs a label set, but the data has more than {MAX_LABELS} distinct "
                              "answers: describe a generation task instead, or fix the label column")
        m, positive, negative, why = _classification_metric(description, counts) if counts else \
            ("accuracy", None, None, "no labels seen yet: accuracy")
        if metric is not None:
            m, why = metric, f"metric set by the user ({metric})"
            if metric.startswith("f1:"):
                positive = metric[3:]
        return TaskAnalysis(description, chosen, m, tuple(sorted(counts)), "one label",
                            positive, negative, False, reason=f"{reason}; {why}", signals=signals)
    m, fmt, why = _generation_metric(description, schema)
    if metric is not None:
        m, why = metric, f"metric set by the user ({metric})"
    return TaskAnalysis(description, chosen, m, (), fmt, reasoning=reasoning, reason=f"{reason}; {why}",
                        signals=signals)


# ---------------------------------------------------------------------------------------------
# The LLM planner's decision
# ---------------------------------------------------------------------------------------------

ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["task", "metric", "reason"], "additionalProperties": False,
    "properties": {
        "task": {"enum": list(TASKS)},
        "metric": {"type": "string", "minLength": 1},
        "labels": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "positive_label": {"type": ["string", "null"]},
        "negative_label": {"type": ["string", "null"]},
        "output_format": {"type": "string"},
        "reasoning": {"type": "boolean"},
        "reason": {"type": "string", "minLength": 1},
    },
}


@dataclass(frozen=True)
class LLMUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


def _llm_prompt(description: str, schema: DataSchema | None) -> str:
    data = None if schema is None else {
        "rows": schema.n_rows, "answers": schema.output_kind, "distinct_answers": schema.n_distinct,
        "most_common_answers": dict(list(schema.label_counts.items())[:40]), "entity_types": schema.entity_types,
        "average_answer_words": schema.avg_output_words, "numeric_share": schema.numeric_share,
        "reasoning_share": schema.rationale_share, "source_format": schema.format}
    metrics = {name: list(t.metrics) for name, t in TASK_TYPES.items()}
    return ("Decide how to train and evaluate a small model for this task.\n"
            f"Task description: {description}\nData: {json.dumps(data, ensure_ascii=False)}\n"
            f"Task types: classification, ner, generation. Metrics per task: {json.dumps(metrics)} "
            "(f1:<label> scores one class). Give the label set (classification) or entity types (ner) as they "
            "appear in the data, the class that means 'nothing applies' if any, and a one-sentence reason.\n"
            "Reply with JSON only: {\"task\", \"metric\", \"labels\", \"positive_label\", \"negative_label\", "
            "\"output_format\", \"reasoning\", \"reason\"}")


def _validate_llm(answer: dict[str, Any], schema: DataSchema | None) -> None:
    task, metric = answer["task"], answer["metric"]
    try:
        check_metric(task, metric)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if schema is None:
        return
    kind = task_type(task)
    if schema.output_kind == "spans" and not kind.spans:
        raise ValueError(f"the data has entity spans, but the answer says {task}")
    if kind.spans and schema.output_kind != "spans":
        raise ValueError(f"the answer says {task}, but the data has no entity spans")
    known = set(schema.entity_types if kind.spans else schema.label_counts)
    unknown = sorted(set(answer.get("labels") or ()) - known)
    if kind.labelled and unknown:
        raise ValueError(f"labels {unknown[:5]} are not in the data")
    for key in ("positive_label", "negative_label"):
        if answer.get(key) and kind.single_label and answer[key] not in known:
            raise ValueError(f"{key} {answer[key]!r} is not a label of the data")


def analyse(description: str, schema: DataSchema | None = None, *, llm: str | None = None, task: str | None = None,
            metric: str | None = None, completion_kwargs: Mapping[str, Any] | None = None
            ) -> tuple[TaskAnalysis, LLMUsage]:
    """The LLM planner's decision when `llm` is set (validated; falls back to the rules with the
    reason), else the rules'. A user's `task` / `metric` always win."""
    rules = analyse_by_rules(description, schema, task=task, metric=metric)
    if not llm or (task is not None and metric is not None):
        return rules, LLMUsage()
    import jsonschema

    from engine.search.llm_planner import default_completion

    usage = LLMUsage()
    try:
        response = default_completion()(model=llm, messages=[{"role": "user", "content": _llm_prompt(description,
                                                                                                      schema)}],
                                        **dict(completion_kwargs or {}))
        tokens = getattr(response, "usage", None)
        cost = 0.0
        try:
            import litellm

            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # noqa: BLE001 - unpriced (local) models count tokens only
            pass
        usage = LLMUsage(int(getattr(tokens, "prompt_tokens", 0) or 0),
                         int(getattr(tokens, "completion_tokens", 0) or 0), cost)
        text = (response.choices[0].message.content or "").strip()
        fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
        answer = json.loads(fenced.group(1) if fenced else text)
        jsonschema.validate(answer, ANALYSIS_SCHEMA)
        if task is not None and answer["task"] != task:
            raise ValueError(f"the user set task {task}, the answer says {answer['task']}")
        _validate_llm(answer, schema)
    except Exception as exc:  # noqa: BLE001 - any problem with the LLM's answer means: use the rules
        why = getattr(exc, "message", None) or str(exc)
        return (TaskAnalysis(**{**rules.to_dict(), "decided_by": f"rules (LLM {llm} fell back: "
                                f"{type(exc).__name__}: {why[:200]})"}), usage)
    chosen_task = answer["task"]
    labels = tuple(answer.get("labels") or ()) or (rules.labels if chosen_task == rules.task else ())
    if schema is not None and task_type(chosen_task).single_label:
        labels = tuple(sorted(schema.label_counts))
    if schema is not None and task_type(chosen_task).spans:
        labels = schema.entity_types
    return (TaskAnalysis(description, chosen_task, metric or answer["metric"], labels,
                         answer.get("output_format") or rules.output_format, answer.get("positive_label"),
                         answer.get("negative_label"), bool(answer.get("reasoning", rules.reasoning)),
                         f"llm:{llm}", answer["reason"], {**rules.signals, "rules": rules.task}), usage)


def system_prompt_for(analysis: TaskAnalysis, supervision: str = "direct", max_labels: int = 40) -> str:
    """A decoder's task instruction: the description and the exact answer format it must follow
    (with chain-of-thought supervision: reasoning first, then '#### ' and the answer)."""
    task = analysis.description.strip().rstrip(".")
    kind = task_type(analysis.task)
    if kind.single_label and analysis.labels:
        shown = ", ".join(analysis.labels[:max_labels]) + (", ..." if len(analysis.labels) > max_labels else "")
        return f"Task: {task}. Reply with exactly one label from: {shown}. No other words."
    if kind.spans and analysis.labels:
        return f"Task: {task}. Entity types: {', '.join(analysis.labels)}."
    if supervision == "chain_of_thought":
        return f"Task: {task}. Reason step by step, then end with '#### ' and the final answer."
    fmt = "the final number only" if analysis.metric == "final_number" else analysis.output_format or "the answer"
    return f"Task: {task}. Reply with {fmt}. No other words."
