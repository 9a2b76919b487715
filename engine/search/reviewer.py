"""Human gates. The loop never calls a UI: it awaits a `Reviewer` before every train step (approve,
veto with a reason, or an edited curriculum), before every rollback and promotion, and for a close
call (a candidate that failed only the regression budget) the reason to promote it anyway.

Cold-start without `--data` also asks which dataset from the catalog search to train on (`choose_data`).

Implementations here: `HeadlessReviewer` (auto-approve or refuse everything), `StdinReviewer`
(prompts on any text streams) and `ScriptedReviewer` (a fixed list, for tests and replays); the TUI
adds its own. `apply_review` / `confirm` ask, then store each decision with its diff and emit it as
an event; `record_review` / `record_confirmation` do only the storing, for the loop's own transaction.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

from engine.errors import ConfigError
from engine.escape import terminal
from engine.events import DecisionRecorded, EventBus
from engine.search.pipeline import Pipeline

if TYPE_CHECKING:
    from engine.catalog import CatalogSearch, Match

DecisionAction = Literal["approve", "veto", "edit"]
# What a person may say is wrong with a curriculum; each maps to a planner revision (engine.search.planner).
VETO_REASONS: dict[str, str] = {
    "too_much_replay": "too much replay",
    "too_little_gold": "too little gold",
    "wrong_focus": "wrong focus (the hard negatives or targeted examples aim at the wrong confusion)",
    "bad_corrections": "bad corrections (gold rows with wrong answers)",
    "other": "other (say what in the reason)",
}


@dataclass(frozen=True)
class CurriculumReview:
    """What a reviewer sees before a train step."""

    node_id: str
    pipeline: Pipeline
    rows: tuple[dict[str, Any], ...]
    dataset_version_id: str | None = None
    composition: dict[str, Any] = field(default_factory=dict)
    rationale: str | None = None
    vetoed: dict[str, Any] | None = None  # the vetoed curriculum this one answers (loop._against_vetoed)
    labels: tuple[str, ...] = ()  # the answers a model may give: an edited output must be one of them
    # everything the pipeline changed against its parent's (engine.curation_log.pipeline_change), e.g.
    # `strategy.merge_deployed 0 → 0.5`: a change of recipe or strategy can leave the rows as they were
    change: str = ""
    carried: str = ""  # the person's earlier edits this curriculum carries (carry_edits), in a sentence


@dataclass(frozen=True)
class Confirmation:
    """What a reviewer sees before a rollback or a promotion."""

    node_id: str | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """`reasons`: a veto's structured reasons (keys of VETO_REASONS), beside the free-text `reason`."""

    action: DecisionAction
    reason: str | None = None
    rows: tuple[dict[str, Any], ...] | None = None  # the edited curriculum
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.action not in ("approve", "veto", "edit"):
            raise ValueError(f"decision action {self.action!r} is not approve, veto or edit")
        object.__setattr__(self, "reasons", tuple(self.reasons))
        unknown = [r for r in self.reasons if r not in VETO_REASONS]
        if unknown:
            raise ValueError(f"veto reason(s) {', '.join(unknown)} unknown: use {', '.join(VETO_REASONS)}")
        if self.action == "veto" and not (self.reason and self.reason.strip()) and not self.reasons:
            raise ValueError("a veto needs a reason")
        if self.action == "edit" and self.rows is None:
            raise ValueError("an edit needs the edited rows")
        if self.rows is not None:
            object.__setattr__(self, "rows", tuple(self.rows))


class Reviewer(Protocol):
    who: str

    def review_curriculum(self, review: CurriculumReview) -> Decision: ...
    def confirm_rollback(self, info: Confirmation) -> bool: ...
    def confirm_promotion(self, info: Confirmation) -> bool: ...

    def promote_anyway(self, info: Confirmation) -> str | None:
        """A person's reason to promote a candidate that failed only the regression budget, or None to
        keep the deployed model (the run then prints how to promote it later)."""
        ...

    def choose_data(self, search: CatalogSearch) -> tuple[Match, ...]:
        """The datasets (of `search.matches`) a cold-start run without `--data` trains on: one, several of
        one task type to combine, or none (then the teacher writes seed data, or the run says what to give)."""
        ...


class HeadlessReviewer:
    def __init__(self, policy: Literal["auto", "never"] = "auto") -> None:
        if policy not in ("auto", "never"):
            raise ConfigError(f"headless reviewer policy {policy!r} is not 'auto' or 'never'")
        self.policy = policy
        self.who = f"headless:{policy}"

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        if self.policy == "auto":
            return Decision("approve")
        return Decision("veto", "headless policy 'never' refuses every curriculum")

    def confirm_rollback(self, info: Confirmation) -> bool:
        return self.policy == "auto"

    def confirm_promotion(self, info: Confirmation) -> bool:
        return self.policy == "auto"

    def promote_anyway(self, info: Confirmation) -> str | None:
        return None  # overruling the budget is a person's call: the summary says how to make it

    def choose_data(self, search: CatalogSearch) -> tuple[Match, ...]:
        """auto: the best match above the floor; never: none (the run refuses and lists the matches)."""
        return (search.best,) if self.policy == "auto" and search.best is not None else ()


class StdinReviewer:
    """Asks on `output`, reads answers from `input`. End of input refuses (never approves silently)."""

    def __init__(self, input: TextIO | None = None, output: TextIO | None = None, who: str = "stdin") -> None:
        self.input = input or sys.stdin
        self.output = output or sys.stdout
        self.who = who

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        self._say(f"Curriculum for node {review.node_id}: {len(review.rows)} rows, composition "
                  f"{json.dumps(review.composition, sort_keys=True)}\n  why: {review.rationale or '-'}"
                  + (f"\n  change: {review.change}" if review.change else "")
                  + (f"\n  {review.carried}" if review.carried else ""))
        if review.vetoed:
            v = review.vetoed
            self._say(f"  {'revision of' if v['revision'] else 'the planner found nothing to change for'} the veto of "
                      f"{v['node_id']} ({v.get('reason') or '-'})" + ("" if v["revision"] else ": the next proposal"))
        for row in review.rows[:5]:
            self._say(f"  {json.dumps(row, ensure_ascii=False)[:160]}")
        while True:
            answer = self._ask("[a]pprove, [v]eto or [e]dit? ")
            answer = answer if answer is None else answer.lower()
            if answer is None:
                return Decision("veto", "no answer (end of input)")
            if answer in ("a", "approve"):
                return Decision("approve")
            if answer in ("v", "veto"):
                codes = list(VETO_REASONS)
                self._say("  " + "  ".join(f"{i}) {VETO_REASONS[c]}" for i, c in enumerate(codes, 1)))
                picked = self._ask("what is wrong (numbers, e.g. 1 3): ") or ""
                reasons = tuple(codes[int(x) - 1] for x in picked.replace(",", " ").split()
                                if x.isdigit() and 1 <= int(x) <= len(codes))
                reason = self._ask("in your words: ")
                return Decision("veto", reason or None, reasons=reasons or ("other",)) if reason or reasons \
                    else Decision("veto", "vetoed without a reason")
            if answer in ("e", "edit"):
                path = self._ask("path to the edited curriculum (JSONL): ")
                if path is None:
                    return Decision("veto", "no edited curriculum given (end of input)")
                try:
                    return Decision("edit", rows=tuple(_read_jsonl(Path(path))))
                except (OSError, ValueError) as exc:
                    self._say(f"cannot use {path}: {exc}")
                    continue
            self._say(f"please answer a, v or e (got {answer!r})")

    def confirm_rollback(self, info: Confirmation) -> bool:
        return self._yes_no(f"Roll back? {info.summary}")

    def confirm_promotion(self, info: Confirmation) -> bool:
        return self._yes_no(f"Promote? {info.summary}")

    def promote_anyway(self, info: Confirmation) -> str | None:
        broken = info.details.get("regressions") or []
        self._say(f"Close call: {info.summary}; it failed only the regression budget.")
        for r in broken[:10]:
            self._say(f"  broken {r.get('id')}: expected {r.get('expected')}, now {r.get('prediction')}")
        if not self._yes_no("Promote it anyway?"):
            return None
        while True:
            reason = self._ask("reason (recorded with your decision): ")
            if reason is None:
                return None
            if reason:
                return reason
            self._say("a reason is required to promote a candidate the budget refused")

    def choose_data(self, search: CatalogSearch) -> tuple[Match, ...]:
        shown = search.matches[:9]
        self._say(f"Datasets for {search.description!r} (floor {search.floor:.2f}):")
        for i, m in enumerate(shown, 1):
            self._say(f"  {i}) {m.card.source} ({m.card.title}; {m.card.task or 'task unknown'}, {m.card.size})"
                      f"{'' if m.accepted else ' [below the floor or wrong task]'}\n     {m.why}")
        while True:
            answer = self._ask("use which (numbers, e.g. 1 or 1 3; empty for none)? ")
            if not answer:
                return ()
            picked = [x for x in answer.replace(",", " ").split()]
            if all(x.isdigit() and 1 <= int(x) <= len(shown) for x in picked):
                return tuple(shown[int(x) - 1] for x in dict.fromkeys(picked))
            self._say(f"please answer with numbers from 1 to {len(shown)} (got {answer!r})")

    def _yes_no(self, question: str) -> bool:
        self._say(question)
        while True:
            answer = self._ask("[y]es or [n]o? ")
            answer = answer if answer is None else answer.lower()
            if answer is None or answer in ("n", "no"):
                return False
            if answer in ("y", "yes"):
                return True
            self._say(f"please answer y or n (got {answer!r})")

    def _ask(self, prompt: str) -> str | None:
        self.output.write(prompt)
        self.output.flush()
        line = self.input.readline()
        return None if line == "" else line.strip()

    def _say(self, text: str) -> None:
        self.output.write(terminal(text) + "\n")  # rows, labels and broken items are trace data


class ScriptedReviewer:
    """Answers from a list in order: Decisions for curricula, bools for confirmations, a reason (str) or
    False for a close call, a list of source names for a dataset choice."""

    def __init__(self, script: list[Decision | bool | str | list[str]], who: str = "scripted") -> None:
        self.script = list(script)
        self.who = who
        self.seen: list[CurriculumReview | Confirmation | CatalogSearch] = []

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        return self._next(review, Decision)

    def confirm_rollback(self, info: Confirmation) -> bool:
        return self._next(info, bool)

    def confirm_promotion(self, info: Confirmation) -> bool:
        return self._next(info, bool)

    def promote_anyway(self, info: Confirmation) -> str | None:
        """The next answer: a reason (str) promotes, False keeps the deployed model."""
        answer = self._next(info, (str, bool))
        return answer or None

    def choose_data(self, search: CatalogSearch) -> tuple[Match, ...]:
        names = self._next(search, list)
        by_source = {m.card.source: m for m in search.matches}
        missing = [n for n in names if n not in by_source]
        if missing:
            raise RuntimeError(f"scripted reviewer chose {missing}, which the search did not list")
        return tuple(by_source[n] for n in names)

    def _next(self, request: Any, kind: type | tuple[type, ...]) -> Any:
        self.seen.append(request)
        if not self.script:
            raise RuntimeError(f"scripted reviewer has no answer left for {type(request).__name__}")
        answer = self.script.pop(0)
        if not isinstance(answer, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise RuntimeError(f"scripted reviewer expected a {names} next, found {answer!r}")
        return answer


def diff_rows(old: list[dict[str, Any]] | tuple[dict[str, Any], ...],
              new: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """What an edit changed, by row id: removed ids, added rows, changed rows (before and after)."""
    before, after = _by_id(old, "original"), _by_id(new, "edited")
    return {
        "removed": [i for i in before if i not in after],
        "added": [after[i] for i in after if i not in before],
        "changed": [{"id": i, "before": before[i], "after": after[i]}
                    for i in before if i in after and before[i] != after[i]],
    }


def carry_edits(rows: list[dict[str, Any]], diffs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`rows` with a person's earlier edits (diff_rows, oldest first) applied: a row they changed is
    replaced wherever its id comes back, one they removed stays out, one they added is added. An edit says
    which rows are right, not only for the node it was made at. Also returns how many rows each kind
    touched."""
    out = {str(r["id"]): r for r in rows}
    touched: dict[str, set[str]] = {"changed": set(), "removed": set(), "added": set()}
    for diff in diffs:
        for rid in map(str, diff.get("removed", ())):
            if out.pop(rid, None) is not None:
                touched["removed"].add(rid)
        for change in diff.get("changed", ()):
            rid = str(change["id"])
            if rid in out and out[rid] != change["after"]:
                out[rid] = change["after"]
                touched["changed"].add(rid)
        for row in diff.get("added", ()):
            if str(row["id"]) not in out:
                out[str(row["id"])] = row
                touched["added"].add(str(row["id"]))
    return list(out.values()), {kind: len(ids) for kind, ids in touched.items()}


def apply_review(bus: EventBus, reviewer: Reviewer, review: CurriculumReview) -> tuple[Decision, str | None]:
    """Ask the reviewer (outside any transaction: a person may take minutes), then record the answer."""
    decision = reviewer.review_curriculum(review)
    return decision, record_review(bus, reviewer.who, review, decision)


def record_review(bus: EventBus, who: str, review: CurriculumReview, decision: Decision) -> str | None:
    """Store a curriculum decision with its diff (an edit becomes a new dataset version) and emit it.

    Returns the dataset version to train on (None after a veto). Call it inside the transaction
    that also updates the node, so a killed run never has one without the other.
    """
    store = bus.store
    diff: dict[str, Any] = {}
    version = review.dataset_version_id
    with store.transaction():
        if decision.action == "edit":
            diff = diff_rows(review.rows, decision.rows or ())
            version = store.datasets.create(list(decision.rows or ()), task=review.pipeline.hyperparams.task,
                                            parent_id=review.dataset_version_id, run_id=bus.run_id,
                                            note=f"edited by {who} from {review.dataset_version_id}")
        elif decision.action == "veto":
            version = None
        if decision.reasons:
            diff = {**diff, "reasons": list(decision.reasons)}
        record_decision(bus, "curriculum", decision.action, who, node_id=review.node_id, reason=decision.reason,
                diff=diff, dataset_version_id=version or review.dataset_version_id)
    return version


def confirm(bus: EventBus, reviewer: Reviewer, kind: Literal["rollback", "promotion"], info: Confirmation) -> bool:
    """Ask for a rollback or promotion, then record the answer (approve or refuse)."""
    ok = reviewer.confirm_rollback(info) if kind == "rollback" else reviewer.confirm_promotion(info)
    record_confirmation(bus, reviewer.who, kind, info, ok)
    return ok


def record_confirmation(bus: EventBus, who: str, kind: Literal["rollback", "promotion"], info: Confirmation,
                        ok: bool) -> None:
    with bus.store.transaction():
        record_decision(bus, kind, "approve" if ok else "refuse", who, node_id=info.node_id, reason=info.summary)


def record_override(bus: EventBus, who: str, info: Confirmation, reason: str | None) -> None:
    """A person's answer to a close call, a promotion decision marked `override`: approve with their
    reason, or refuse (keep the deployed model)."""
    with bus.store.transaction():
        record_decision(bus, "promotion", "approve" if reason else "refuse", who, node_id=info.node_id,
                reason=reason or f"kept the deployed model: {info.summary}", diff={"override": True})


def record_decision(bus: EventBus, kind: str, action: str, who: str, *, node_id: str | None = None,
                    reason: str | None, diff: dict[str, Any] | None = None,
                    dataset_version_id: str | None = None) -> None:
    """Store one human-gate decision and emit it (inside the caller's transaction, if any)."""
    decision_id = bus.store.runs.record_decision(bus.run_id, kind, action, who, node_id=node_id, reason=reason,
                                                 diff=diff, dataset_version_id=dataset_version_id)
    bus.emit(DecisionRecorded(decision_id=decision_id, kind=kind, action=action, who=who, reason=reason,
                              node_id=node_id, dataset_version_id=dataset_version_id, diff=diff or {}))


def _by_id(rows: Any, which: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or row.get("id") in (None, ""):
            raise ValueError(f"{which} curriculum row {n} has no 'id': every row needs a stable id to diff edits")
        key = str(row["id"])
        if key in out:
            raise ValueError(f"{which} curriculum row {n} repeats id {key!r}: ids must be unique")
        out[key] = row
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON ({exc.msg}); one JSON object per line") from exc
    return rows
