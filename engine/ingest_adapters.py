"""Adapters for the trace sources people already have: OpenAI chat JSONL, OpenTelemetry GenAI spans
(OTLP/JSON) and Langfuse exports.

Each adapter yields the records of its file as read ("native": what `--map FIELD=PATH` reads) and
translates one into trace fields (how is in the README, "Trace format"); a record that is not a model
call (an HTTP span, a Langfuse SPAN observation) is skipped, one that cannot be translated is invalid
with the field named. Text from the traces is data: it is copied, never interpreted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.ingest_formats import json_lines, read_document, read_jsonl
from engine.ingest_map import FieldMap
from engine.ingest_types import FIELDS, Raw, RowInvalid, Source

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def read_adapted(source: Source, encoding: str, fields: FieldMap) -> Iterator[Raw]:
    """The trace records of an adapter-format file, `--map` applied. A record that fails to translate
    stays native in the Raw, so the rejects file shows it as it was."""
    adapter = ADAPTERS[source.format]
    for raw in adapter.natives(source, encoding):
        if raw.record is not None:
            try:
                translated = adapter.translate(raw.record)
                if translated is None:
                    raw.record = None  # not a model call: skipped
                else:
                    raw.record = fields.apply(translated, raw.record)
            except RowInvalid as exc:
                raw.problem = exc
        yield raw


# --- chat messages (OpenAI and OpenTelemetry shapes) ---------------------------------------------------

def _message(m: Any, where: str) -> tuple[str, str]:
    """(role, text) of one chat message: OpenAI `{role, content}` (a string or a list of parts, plus
    `tool_calls`) or OpenTelemetry `{role, parts: [{type, content}]}`. A part that is not text (an
    image, a tool call) becomes `[type]`, or the JSON of the tool calls when that is all there is."""
    if not isinstance(m, dict) or not isinstance(m.get("role"), str):
        raise RowInvalid(where, "expected a message object with a string role")
    parts = m.get("parts") if "parts" in m else m.get("content")
    if parts is None or isinstance(parts, str):
        text = parts or ""
    elif isinstance(parts, list):
        text = "".join(_part_text(p, f"{where}.{'parts' if 'parts' in m else 'content'}.{i}")
                       for i, p in enumerate(parts))
    else:
        raise RowInvalid(f"{where}.content", "expected a string or an array of parts")
    if not text and m.get("tool_calls"):
        text = _COMPACT(m["tool_calls"])
    return m["role"], text


def _part_text(part: Any, where: str) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        raise RowInvalid(where, "expected a content part object")
    if part.get("type") in ("text", "input_text", "output_text", None):
        text = part.get("text", part.get("content"))
        if isinstance(text, str):
            return text
        raise RowInvalid(where, "a text part without a string text/content")
    if part.get("type") in ("tool_call", "tool_call_response"):
        return _COMPACT(part)
    return f"[{part.get('type')}]"


def _messages(value: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):  # OpenTelemetry allows the JSON text of the array
        try:
            value = json.loads(value)
        except ValueError:
            return [("user", value)]  # a plain prompt
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RowInvalid(where, "expected an array of messages")
    return [_message(m, f"{where}.{i}") for i, m in enumerate(value)]


def _conversation(turns: list[tuple[str, str]], where: str) -> tuple[str, str | None]:
    """(input, system prompt) of a conversation. The input is the conversation up to its last user turn
    without the system messages: that turn's text alone when it is the only turn, otherwise every turn
    as `role: text`, separated by blank lines. System messages go to metadata.system."""
    last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=None)
    if last_user is None:
        raise RowInvalid(where, "no user message; the input is the conversation up to the last user turn")
    system = "\n\n".join(t for r, t in turns if r in ("system", "developer")) or None
    history = [(r, t) for r, t in turns[:last_user + 1] if r not in ("system", "developer")]
    text = history[0][1] if len(history) == 1 else "\n\n".join(f"{r}: {t}" for r, t in history)
    return text, system


def _answer(turns: list[tuple[str, str]]) -> str | None:
    """The last assistant message after the last user turn (what the model answered), or None."""
    after = turns[max((i for i, (r, _) in enumerate(turns) if r == "user"), default=-1) + 1:]
    return next((t for r, t in reversed(after) if r == "assistant"), None)


def _verdict(value: Any) -> str | None:
    """pass / fail from a judge's label or boolean; None for anything else (a numeric score, "good")."""
    if isinstance(value, bool):
        return "pass" if value else "fail"
    word = value.strip().lower() if isinstance(value, str) else None
    return {"pass": "pass", "fail": "fail", "true": "pass", "false": "fail"}.get(word or "")


def _one_verdict(found: list[tuple[str, str, Any]], field: str) -> tuple[str, Any] | None:
    """The single verdict among (name, verdict, reasoning) judgments; disagreeing ones are an error."""
    verdicts = {v for _, v, _ in found}
    if len(verdicts) > 1:
        names = ", ".join(f"{n!r} says {v}" for n, v, _ in found)
        raise RowInvalid(field, f"the judgments disagree ({names}); pick one with --map verdict=PATH")
    return (found[0][1], found[0][2]) if found else None


def _merge_metadata(out: dict[str, Any], extra: dict[str, Any]) -> None:
    meta = out.get("metadata")
    if meta is None:
        out["metadata"] = extra
    elif isinstance(meta, dict) and extra:
        clash = sorted(meta.keys() & extra.keys())
        if clash:
            raise RowInvalid("metadata", f"key {clash[0]!r} is both in metadata and a top-level key; rename one")
        out["metadata"] = {**meta, **extra}


# --- OpenAI chat JSONL --------------------------------------------------------------------------------

def _openai(rec: dict[str, Any]) -> dict[str, Any]:
    """`{"messages": [...], ...}`: input from the conversation, prediction = the assistant's answer
    (unless the record gives input / prediction itself); trace fields at the top level (verdict,
    correction, reasoning, model_id, ts, ...) are taken as they are, `model` is the model_id, any
    other top-level key goes into metadata."""
    messages = rec.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RowInvalid("messages", "expected a non-empty array of {role, content} messages")
    turns = [_message(m, f"messages.{i}") for i, m in enumerate(messages)]
    out = {k: v for k, v in rec.items() if k in FIELDS}
    extra = {k: v for k, v in rec.items() if k not in FIELDS and k != "messages"}
    if "model_id" not in out and isinstance(extra.get("model"), str):
        out["model_id"] = extra.pop("model")
    text, system = _conversation(turns, "messages")
    out.setdefault("input", text)
    if "prediction" not in out:
        answer = _answer(turns)
        if answer is None:
            raise RowInvalid("messages", "no assistant message after the last user turn: the answer is the "
                                         "prediction; add it, or give a prediction field")
        out["prediction"] = answer
    if system is not None:
        extra["system"] = system
    _merge_metadata(out, extra)
    return out


# --- OpenTelemetry GenAI spans (OTLP/JSON) --------------------------------------------------------------

def _any_value(value: Any) -> Any:
    """An OTLP/JSON AnyValue (`{"stringValue": ...}`, `{"arrayValue": {"values": [...]}}`, ...) as Python."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    kind, inner = next(iter(value.items()))
    if kind == "arrayValue":
        return [_any_value(v) for v in (inner or {}).get("values", [])]
    if kind == "kvlistValue":
        return _attributes((inner or {}).get("values", []))
    if kind == "intValue":  # int64 travels as a string in OTLP/JSON
        return int(inner) if isinstance(inner, str) and inner.lstrip("-").isdigit() else inner
    return inner


def _attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {a["key"]: _any_value(a.get("value")) for a in items if isinstance(a, dict) and isinstance(a.get("key"), str)}


def _spans(request: Any, where: str) -> Iterator[dict[str, Any] | RowInvalid]:
    """Each span of an ExportTraceServiceRequest, flattened: attributes, event attributes and the
    resource's attributes become plain objects (`attributes.gen_ai.request.model` for --map)."""
    if not isinstance(request, dict) or not isinstance(request.get("resourceSpans"), list):
        yield RowInvalid("resourceSpans", f"{where}: expected an OTLP/JSON export with a resourceSpans array")
        return
    for rs in _objects(request, "resourceSpans"):
        resource = _attributes((rs.get("resource") or {}).get("attributes"))
        for ss in _objects(rs, "scopeSpans"):
            for span in _objects(ss, "spans"):
                events = [{**e, "attributes": _attributes(e.get("attributes"))} for e in _objects(span, "events")]
                yield {**span, "attributes": _attributes(span.get("attributes")), "events": events,
                       "resource": resource, "scope": ss.get("scope") or {}}


def _objects(parent: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = parent.get(key)
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _otel_natives(source: Source, encoding: str) -> Iterator[Raw]:
    """Spans numbered across the file; an export per line (the Collector's file exporter) or one document."""
    if json_lines(source.path):
        requests: Iterator[tuple[str, Any]] = (
            (f"line {r.line}", r.record if r.problem is None else r.problem) for r in read_jsonl(source, encoding))
    else:
        requests = iter([("the document", read_document(source.path, encoding))])
    n = 0
    for where, request in requests:
        for span in ([request] if isinstance(request, RowInvalid) else _spans(request, where)):
            n += 1
            if isinstance(span, RowInvalid):
                reason = span.reason if span.reason.startswith(where) else f"{where}: {span.reason}"
                yield Raw(n, None, RowInvalid(span.field, reason))
            else:
                yield Raw(n, span)


_CONTENT = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.prompt",
            "gen_ai.completion")


def _indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]] | None:
    """OpenLLMetry's flattened messages: `gen_ai.prompt.0.role`, `gen_ai.prompt.0.content`, ..."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        head, _, rest = key.removeprefix(prefix + ".").partition(".")
        if key.startswith(prefix + ".") and head.isdigit() and rest in ("role", "content"):
            found.setdefault(int(head), {"role": "assistant" if prefix.endswith("completion") else "user"})[rest] = value
    return [found[i] for i in sorted(found)] or None


def _otel(span: dict[str, Any]) -> dict[str, Any] | None:
    """A span with GenAI content (gen_ai.input.messages / gen_ai.output.messages, or the older
    gen_ai.prompt / gen_ai.completion, on the span or its events) is a trace; other spans are skipped.
    id = spanId, ts = start, latency = end - start, model = gen_ai.request.model (else the response's),
    stage = the resource's deployment.environment.name, verdict and reasoning = a gen_ai.evaluation.result
    event's pass/fail score.label and explanation; the other attributes go into metadata."""
    attrs: dict[str, Any] = {}
    for event in span["events"]:  # content events of older conventions; the span's own attributes win
        attrs.update({k: v for k, v in event["attributes"].items() if k in _CONTENT})
    attrs.update(span["attributes"])
    prompt = attrs.get("gen_ai.input.messages", attrs.get("gen_ai.prompt")) or _indexed(attrs, "gen_ai.prompt")
    completion = attrs.get("gen_ai.output.messages", attrs.get("gen_ai.completion")) \
        or _indexed(attrs, "gen_ai.completion")
    if prompt is None and completion is None:
        return None
    in_key = "gen_ai.input.messages" if "gen_ai.input.messages" in attrs else "gen_ai.prompt"
    out_key = "gen_ai.output.messages" if "gen_ai.output.messages" in attrs else "gen_ai.completion"
    if prompt is None:
        raise RowInvalid(in_key, "the span has an output but no input messages")
    turns = _messages(prompt, in_key)
    instructions = attrs.get("gen_ai.system_instructions")  # text, or an array of parts (also as JSON text)
    if isinstance(instructions, str) and instructions.startswith("["):
        instructions = _json_or(instructions)
    if instructions is not None:
        parts = instructions if isinstance(instructions, list) else [instructions]
        text_parts = (_part_text(p, f"gen_ai.system_instructions.{i}") for i, p in enumerate(parts))
        turns = [("system", "".join(text_parts)), *turns]
    text, system = _conversation(turns, in_key)
    if completion is None:
        status = span.get("status") or {}
        raise RowInvalid(out_key, f"the span has no output (status {status.get('code', 'unset')}"
                                  f"{': ' + str(status['message']) if status.get('message') else ''}); "
                                  f"a failed call is not a judged answer")
    answers = _messages(completion, out_key)
    prediction = next((t for r, t in reversed(answers) if r == "assistant"), answers[-1][1] if answers else "")
    start = _nanos(span.get("startTimeUnixNano"), "startTimeUnixNano")
    out: dict[str, Any] = {"id": span.get("spanId"), "ts": _iso(start, "startTimeUnixNano"),
                           "model_id": attrs.get("gen_ai.request.model", attrs.get("gen_ai.response.model")),
                           "input": text, "prediction": prediction}
    if span.get("endTimeUnixNano") is not None:
        out["latency_ms"] = (_nanos(span["endTimeUnixNano"], "endTimeUnixNano") - start) / 1e6
    judged = [e["attributes"] for e in span["events"] if e.get("name") == "gen_ai.evaluation.result"]
    found = [(j.get("gen_ai.evaluation.name"), v, j.get("gen_ai.evaluation.explanation"))
             for j in judged if (v := _verdict(j.get("gen_ai.evaluation.score.label"))) is not None]
    verdict = _one_verdict(found, "gen_ai.evaluation.score.label")
    if verdict:
        out["verdict"] = verdict[0]
        if verdict[1] is not None:
            out["reasoning"] = verdict[1]
    meta = {k: v for k, v in attrs.items() if k not in _CONTENT and not k.startswith(("gen_ai.prompt.",
                                                                                       "gen_ai.completion."))}
    meta.update({"otel.trace_id": span.get("traceId"), "otel.span_name": span.get("name")})
    if "service.name" in span["resource"]:
        meta["service.name"] = span["resource"]["service.name"]
    stage = span["resource"].get("deployment.environment.name", span["resource"].get("deployment.environment"))
    if isinstance(stage, str):
        out["stage"] = stage
    if system is not None:
        meta["system"] = system
    if judged:
        meta["evaluations"] = judged
    out["metadata"] = meta
    return {k: v for k, v in out.items() if v is not None}


def _json_or(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _nanos(value: Any, field: str) -> int:
    """OTLP times: nanoseconds since 1970, an integer that OTLP/JSON writes as a string."""
    if isinstance(value, int | str) and not isinstance(value, bool) and str(value).isdigit():
        return int(value)
    raise RowInvalid(field, f"{str(value)[:40]!r} is not a time in nanoseconds since 1970")


def _iso(nanos: int, field: str) -> str:
    try:
        ts = datetime.fromtimestamp(nanos // 1_000_000_000, UTC)
    except (ValueError, OverflowError, OSError):
        raise RowInvalid(field, f"{nanos} nanoseconds since 1970 is not a date") from None
    return ts.replace(microsecond=nanos % 1_000_000_000 // 1000).isoformat()


# --- Langfuse export ----------------------------------------------------------------------------------

def _pick(item: dict[str, Any], *keys: str) -> Any:
    """The first of `keys` present: the API and UI write camelCase, blob-storage exports snake_case."""
    return next((item[k] for k in keys if item.get(k) is not None), None)


def _langfuse_natives(source: Source, encoding: str) -> Iterator[Raw]:
    """JSONL (one trace or observation per line), or a JSON document: an array of them, an API page
    `{"data": [...]}`, or one trace."""
    if source.unit == "line":
        yield from read_jsonl(source, encoding)
        return
    doc = read_document(source.path, encoding)
    items = doc.get("data") if isinstance(doc, dict) and isinstance(doc.get("data"), list) else doc
    for n, item in enumerate(items if isinstance(items, list) else [items], 1):
        yield Raw(n, item) if isinstance(item, dict) else \
            Raw(n, None, RowInvalid(None, "expected a trace or observation object"), _COMPACT(item))


def _io_text(value: Any, field: str, answer: bool) -> str | None:
    """Langfuse input / output: text as it is; chat messages (a list, `{messages: [...]}` or one message,
    also as JSON text, which blob-storage exports write) as in the OpenAI adapter; any other JSON as its
    compact text."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return _io_text(parsed, field, answer) if _is_chat(parsed) else value
    if value is None or isinstance(value, str):
        return value
    if _is_chat(value):
        turns = _messages(value.get("messages") if isinstance(value, dict) and "messages" in value else value, field)
        if answer:
            return next((t for r, t in reversed(turns) if r == "assistant"), turns[-1][1])
        return _conversation(turns, field)[0]
    return _COMPACT(value)


def _is_chat(value: Any) -> bool:
    messages = value.get("messages") if isinstance(value, dict) and "messages" in value else value
    if isinstance(messages, dict):
        return "role" in messages
    return isinstance(messages, list) and bool(messages) and all(isinstance(m, dict) and "role" in m for m in messages)


def _scores(item: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, Any]], list[tuple[str, str, Any]]]:
    """(every score by name, judge verdicts, human verdicts). A BOOLEAN score, or a CATEGORICAL one
    whose value is pass / fail, is a verdict; ANNOTATION scores are people's (human_verdict)."""
    raw = item.get("scores") or []
    if isinstance(raw, dict):  # {name: value}
        raw = [{"name": k, "value": v} for k, v in raw.items()]
    values: dict[str, Any] = {}
    judge: list[tuple[str, str, Any]] = []
    human: list[tuple[str, str, Any]] = []
    for s in raw if isinstance(raw, list) else []:
        if not isinstance(s, dict):
            continue
        name = str(s.get("name"))
        kind = str(_pick(s, "dataType", "data_type") or "").upper()
        label = _pick(s, "stringValue", "string_value")
        value = s.get("value")
        values[name] = label if label is not None else value
        if kind == "BOOLEAN" and isinstance(value, int | float):
            verdict = _verdict(bool(value))
        else:
            verdict = _verdict(label if label is not None else value)
        if verdict is not None and kind != "NUMERIC":
            (human if str(s.get("source", "")).upper() == "ANNOTATION" else judge).append(
                (name, verdict, s.get("comment")))
    return values, judge, human


def _langfuse(item: dict[str, Any]) -> dict[str, Any] | None:
    """A trace, or a GENERATION observation (other observations are skipped): input / output as text,
    the model from the generation (for a trace: its generations' model when they share one), ts from
    the start, latency, environment as stage, pass/fail scores as the verdict (people's annotations as
    human_verdict, a judge's comment as reasoning), every score and the Langfuse context in metadata."""
    kind = item.get("type")
    if kind is not None and str(kind).upper() != "GENERATION":
        return None
    model = _pick(item, "model", "providedModelName", "provided_model_name")
    if model is None and kind is None:
        models = {_pick(o, "model", "providedModelName") for o in item.get("observations") or []
                  if isinstance(o, dict) and str(o.get("type", "")).upper() == "GENERATION"}
        model = models.pop() if len(models) == 1 else None
    start = _pick(item, "startTime", "start_time", "timestamp")
    out: dict[str, Any] = {"id": item.get("id"), "ts": start, "model_id": model,
                           "input": _io_text(item.get("input"), "input", answer=False),
                           "prediction": _io_text(item.get("output"), "output", answer=True),
                           "stage": item.get("environment")}
    end = _pick(item, "endTime", "end_time")
    if isinstance(start, str) and isinstance(end, str):
        out["latency_ms"] = _millis_between(start, end)
    elif isinstance(item.get("latency"), int | float) and not isinstance(item.get("latency"), bool):
        out["latency_ms"] = item["latency"] * 1000  # a trace's latency is in seconds
    values, judge, human = _scores(item)
    for field, found, note in (("verdict", judge, "reasoning"), ("human_verdict", human, None)):
        verdict = _one_verdict(found, "scores")
        if verdict:
            out[field] = verdict[0]
            if note and verdict[1] is not None:
                out[note] = verdict[1]
    meta = item.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else ({} if meta is None else {"langfuse.metadata": meta})
    for key, names in (("name", ("name",)), ("trace_id", ("traceId", "trace_id")),
                       ("session_id", ("sessionId", "session_id")), ("user_id", ("userId", "user_id")),
                       ("tags", ("tags",)), ("release", ("release",)), ("version", ("version",))):
        value = _pick(item, *names)
        if value not in (None, []):
            meta[f"langfuse.{key}"] = value
    if values:
        meta["scores"] = values
    out["metadata"] = meta
    return {k: v for k, v in out.items() if v is not None}


def _millis_between(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000
    except (ValueError, TypeError):  # unparsable, or one with an offset and one without
        return None


@dataclass(frozen=True)
class Adapter:
    natives: Callable[[Source, str], Iterator[Raw]]
    translate: Callable[[dict[str, Any]], dict[str, Any] | None]


ADAPTERS = {"openai": Adapter(read_jsonl, _openai), "otel": Adapter(_otel_natives, _otel),
            "langfuse": Adapter(_langfuse_natives, _langfuse)}


def classify(obj: Any) -> str | None:
    """The adapter format a JSON value (the first record of a file) looks like, or None for flat traces."""
    if isinstance(obj, list):
        return classify(obj[0]) if obj else None
    if not isinstance(obj, dict):
        return None
    if "resourceSpans" in obj:
        return "otel"
    if isinstance(obj.get("messages"), list) and "input" not in obj:
        return "openai"
    if isinstance(obj.get("data"), list):
        return classify(obj["data"])
    if ("type" in obj and ("traceId" in obj or "trace_id" in obj)) or \
            any(k in obj for k in ("projectId", "project_id", "htmlPath", "observations")):
        return "langfuse"
    return None
