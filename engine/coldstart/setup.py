"""Cold-start configuration (tau = description, model family, constraints) and setup.

Setup runs once per run, before any training, and is snapshotted to
artifacts/runs/<run>/coldstart.json so a resumed run works on exactly the same data and E:
task analysis (rules or the LLM planner; decision and reason recorded) -> data from the registry
(or teacher-synthesised seeds) -> the held-out set E (E_pos / E_neg / E_boundary, content hash) ->
baselines on E. Each step is a curation note in the run's event stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.coldstart.analysis import DataSchema, TaskAnalysis, analyse, analyse_by_rules, system_prompt_for
from engine.coldstart.baselines import BaselineReport, decoder_baselines, encoder_baselines
from engine.coldstart.eval_sets import (
    HeldOutSet,
    build_held_out_set,
    report_markdown,
    split_held_out,
    stratified_sample,
)
from engine.coldstart.registry import (
    DataUnavailable,
    LoadedData,
    combine,
    load_source,
    synthesise_seed_examples,
)
from engine.diagnosis.embedders import CachedEmbedder, Embedder, MiniLMEmbedder
from engine.diagnosis.embedders import make_embedder as shared_embedder
from engine.errors import ConfigError
from engine.events import CurationNote, EventBus
from engine.models.base import TrainConfig
from engine.models.resolve import ALIASES, resolve_model
from engine.records import TASKS, Example
from engine.search.budget import BudgetLimits
from engine.search.gates import GateConfig
from engine.seed import seed_everything
from engine.tasks import task_type
from store import Store, atomic_write_text
from store.redact import without_redacted

MODE = "cold_start"
EMBEDDERS = ("base", "minilm", "tfidf")
DEFAULT_BASE = {"encoder": "minilm", "decoder": "smollm2"}  # the embedded model of each backend family
DECODER_TASK = "generation"  # what a decoder base trains as, whatever the analysed task
DATASET_TEACHER = "dataset-rationales"
ENCODER_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "electra", "camembert", "modernbert",
                                 "distilbert", "deberta", "deberta-v2", "mpnet"})


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColdStartConfig:
    """tau: the description, the model family (`base`), and the constraints (target, budgets, data).

    `max_iterations` counts search iterations; each trains `configs_per_iteration` configurations.
    Without `data`, the catalog search chooses `data_sources` before the run opens (engine.coldstart.data_search).
    `llm` names a litellm model for the analysis, the planner and (without data) the seed teacher;
    `llm_options` go to every litellm call (tests pass mock_response). `probe_head` starts a fine-tuned
    encoder's new head from a linear probe fitted on the frozen features (the design notes: a fine-tune
    that starts from the probe is not left below it)."""

    description: str
    data: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    data_sources: tuple[dict[str, Any], ...] = ()  # the catalog search's choice (engine.coldstart.data_search)
    data_dir: str | None = None  # the local folder the search lists (default: the workspace's datasets/)
    hub: bool = True  # search the Hugging Face Hub too (when it is reachable)
    base: str | None = None
    task: str | None = None
    metric: str | None = None
    tau: float = 0.96
    max_iterations: int | None = 4
    max_minutes: float | None = 30.0
    configs_per_iteration: int = 2
    patience: int = 4
    min_improvement: float = 0.002
    eval_fraction: float = 0.2
    max_eval: int | None = None
    max_train_rows: int | None = None
    boundary_share: float = 0.15
    adversarial: int | None = 100
    embedder: str = "base"
    llm: str | None = None
    llm_options: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    shots: int = 3
    probe_head: bool = True
    seed: int = 0
    trainer_threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_sources", tuple(dict(s) if isinstance(s, Mapping) else s
                                                       for s in self.data_sources))
        checks = [
            (isinstance(self.description, str) and bool(self.description.strip()), "description",
             "a sentence saying what the model should do"),
            (self.task is None or self.task in TASKS, "task", f"one of {', '.join(TASKS)} or unset"),
            (all(isinstance(s, dict) and isinstance(s.get("source"), str) for s in self.data_sources), "data_sources",
             "a list of {\"source\": NAME, \"options\": {...}}"),
            (self.max_iterations is None or self.max_iterations >= 1, "max_iterations", "an integer >= 1 or unset"),
            (self.max_minutes is None or self.max_minutes > 0, "max_minutes", "a number > 0 or unset"),
            (self.configs_per_iteration >= 2, "configs_per_iteration", "an integer >= 2"),
            (self.patience >= 1, "patience", "an integer >= 1"),
            (self.min_improvement >= 0, "min_improvement", "a number >= 0"),
            (0.0 < self.eval_fraction < 1.0, "eval_fraction", "a fraction in (0, 1)"),
            (self.max_eval is None or self.max_eval >= 2, "max_eval", "an integer >= 2 or unset"),
            (self.max_train_rows is None or self.max_train_rows >= 2, "max_train_rows", "an integer >= 2 or unset"),
            (0.0 <= self.boundary_share <= 0.5, "boundary_share", "a fraction in [0, 0.5]"),
            (self.adversarial is None or self.adversarial >= 0, "adversarial", "an integer >= 0 or unset"),
            (self.embedder in EMBEDDERS, "embedder", f"one of {', '.join(EMBEDDERS)}"),
            (self.shots >= 0, "shots", "an integer >= 0"),
            (self.trainer_threads is None or self.trainer_threads >= 1, "trainer_threads", "an integer >= 1 or unset"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"ColdStartConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")
        GateConfig(self.tau)
        allowed = {f.name for f in fields(TrainConfig)} - {"task"}
        unknown = sorted(set(self.hyperparams) - allowed)
        if unknown:
            raise ConfigError(f"ColdStartConfig.hyperparams has unknown or fixed field(s) {', '.join(unknown)}: "
                              "use TrainConfig fields other than task")

    def limits(self) -> BudgetLimits:
        return BudgetLimits(iterations=None if self.max_iterations is None
                            else self.max_iterations * self.configs_per_iteration,
                            seconds=None if self.max_minutes is None else self.max_minutes * 60.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ColdStartConfig:
        """A stored config: its redacted keys are dropped, so litellm reads them from the environment."""
        try:
            return cls(**without_redacted(dict(raw)))
        except TypeError as exc:
            raise ConfigError(f"stored cold-start configuration is invalid: {exc}") from exc


def model_family(base: str) -> str:
    """'encoder' or 'decoder', from the embedded aliases or the model's config.json."""
    alias = ALIASES.get(base.strip().lower())
    if alias is not None:
        return "encoder" if alias == "minilm" else "decoder"
    config = json.loads((resolve_model(base) / "config.json").read_text(encoding="utf-8"))
    return "encoder" if config.get("model_type") in ENCODER_MODEL_TYPES else "decoder"


# ---------------------------------------------------------------------------------------------
# Setup: analysis, data, E, baselines (once per run, snapshotted)
# ---------------------------------------------------------------------------------------------

@dataclass
class ColdStartSetup:
    analysis: TaskAnalysis
    family: str
    base: str
    train_task: str
    data: dict[str, Any]
    split: dict[str, Any]
    pool_version: str
    eval_version: str
    eval_hash: str
    eval_set: HeldOutSet
    baselines: BaselineReport
    rationales: dict[str, str]
    system_prompt: str | None
    max_new_tokens: int
    llm_usage: dict[str, float] = field(default_factory=dict)

    @property
    def teacher(self) -> str | None:
        return DATASET_TEACHER if self.rationales else None

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k not in ("analysis", "eval_set", "baselines")},
                "analysis": self.analysis.to_dict(), "eval_set": self.eval_set.to_dict(),
                "baselines": self.baselines.to_dict()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ColdStartSetup:
        return cls(**{**raw, "analysis": TaskAnalysis.from_dict(raw["analysis"]),
                      "eval_set": HeldOutSet.from_dict(raw["eval_set"]),
                      "baselines": BaselineReport.from_dict(raw["baselines"])})


def snapshot_path(store: Store, run_id: str) -> Path:
    return store.artifacts / "runs" / run_id / "coldstart.json"


def load_setup(store: Store, run_id: str) -> ColdStartSetup | None:
    """The run's setup once its baseline was recorded (setup is the one thing done before the loop)."""
    if not any(e.type == "curation_note" and e.payload.get("section") == "Baseline" for e in store.runs.events(run_id)):
        return None
    return ColdStartSetup.from_dict(json.loads(snapshot_path(store, run_id).read_text(encoding="utf-8")))


def make_embedder(kind: str, base: str, family: str, texts: Sequence[str], seed: int) -> Embedder:
    """The similarity used for boundary pairs and hard negatives, memoised per text. MiniLM is
    production's process-wide instance (loaded once); another encoder base gets its own."""
    if kind == "base" and family == "encoder" and ALIASES.get(base.strip().lower()) != "minilm":
        return CachedEmbedder(MiniLMEmbedder(model_dir=resolve_model(base)))
    return shared_embedder("tfidf" if kind == "tfidf" else "minilm", texts, seed)


def _load_data(config: ColdStartConfig, analysis: TaskAnalysis | None) -> tuple[LoadedData, dict[str, float]]:
    if config.data:
        return load_source(config.data, **config.data_options), {}
    if config.data_sources:
        return combine([load_source(s["source"], **dict(s.get("options") or {})) for s in config.data_sources]), {}
    task = config.task or (analysis.task if analysis else None)
    if task is None:
        raise DataUnavailable(f"no data for {config.description!r}: pass --data FILE or a source name")
    data, usage = synthesise_seed_examples(config.description, task, config.llm, labels=analysis.labels if analysis
                                           else (), completion_kwargs=config.llm_options)
    return data, {"tokens": usage.prompt_tokens + usage.completion_tokens, "dollars": usage.cost_usd}


def _max_new_tokens(examples: Sequence[Example], analysis: TaskAnalysis, base: str) -> int:
    """Room for the longest training answer (and some slack), never more than 256 tokens."""
    if analysis.metric in ("pass@1", "final_number", "rougeL"):
        return 256
    longest = max((len(str(ex.output).split()) for ex in examples), default=8)
    return int(min(256, 3 * longest + 16))


def prepare(store: Store, bus: EventBus, config: ColdStartConfig) -> tuple[ColdStartSetup, Embedder]:
    """Analysis -> data -> E -> baselines, each recorded as a curation note, then the snapshot.
    Returns the setup and the (memoised) embedder, so the runner does not embed everything again."""
    seed_everything(config.seed)
    usage: dict[str, float] = {"tokens": 0, "dollars": 0.0}
    first = None
    if not (config.data or config.data_sources):  # no data: the description decides what the teacher writes
        first = analyse_by_rules(config.description, task=config.task, metric=config.metric)
    data, teacher_usage = _load_data(config, first)
    for k, v in teacher_usage.items():
        usage[k] += v
    schema = DataSchema.of(data.train, origin=data.origin, format=data.format, fields=data.fields,
                           n_rationales=len(data.rationales))
    analysis, llm_usage = analyse(config.description, schema, llm=config.llm, task=config.task, metric=config.metric,
                                  completion_kwargs=config.llm_options)
    usage["tokens"] += llm_usage.prompt_tokens + llm_usage.completion_tokens
    usage["dollars"] += llm_usage.cost_usd
    kind = task_type(analysis.task)
    base = config.base or DEFAULT_BASE[kind.backend]
    family = model_family(base)
    if family == "encoder" and kind.generative:
        raise ConfigError(f"--base {base} is an encoder: the task is {analysis.task} ({analysis.reason}); use a "
                          f"decoder such as --base {DEFAULT_BASE['decoder']}")
    if family == "decoder" and kind.spans:
        raise ConfigError(f"--base {base} is a decoder: {analysis.task.upper()} trains an encoder here; use --base "
                          f"{DEFAULT_BASE['encoder']}")
    # A decoder writes every answer as text: it trains as the text task (a label is the text it writes).
    train_task = DECODER_TASK if family == "decoder" else analysis.task
    bus.emit(CurationNote(section="Task analysis", markdown=analysis.markdown(), analysis=analysis.to_dict(),
                          schema=schema.to_dict()))

    pool, held, split = split_held_out(data, analysis, fraction=config.eval_fraction, max_items=config.max_eval,
                                       seed=config.seed)
    if config.max_train_rows is not None and len(pool) > config.max_train_rows:
        pool = stratified_sample(pool, config.max_train_rows, analysis.task, config.seed)
        split["pool"] = len(pool)
        split["pool_capped_at"] = config.max_train_rows
    embedder = make_embedder(config.embedder, base, family, [*(ex.input for ex in pool), *(ex.input for ex in held)],
                             config.seed)
    eval_set = build_held_out_set(held, analysis, embedder=embedder, seed=config.seed,
                                  boundary_share=config.boundary_share, adversarial=config.adversarial,
                                  references=data.references, labels=analysis.labels)
    rationales = {str(ex.id): data.rationales[str(ex.id)] for ex in pool if str(ex.id) in data.rationales}
    with store.transaction():
        pool_version = store.datasets.create(
            [{"id": str(ex.id), "input": ex.input, "output": task_type(analysis.task).to_json(ex.output)} for ex in pool],
            name="cold-start training pool", task=analysis.task, run_id=bus.run_id,
            note=f"{data.origin}: training pool after holding out E ({split['source']})")
        eval_version = store.datasets.create(
            [{"id": i.id, "input": i.input, "output": i.expected, "subset": i.subset, "stratum": i.stratum,
              "partner": i.partner, "source": i.source} for i in eval_set.items],
            name="cold-start held-out set E", task=analysis.task, run_id=bus.run_id,
            qc_report=eval_set.report,
            note=f"{data.origin}: held out before any training; never trained on (checked by hash)")
        bus.emit(CurationNote(section="Data", markdown=_data_markdown(data, split), data=data.summary()))
        bus.emit(CurationNote(section="Evaluation set", markdown=report_markdown(eval_set.report, split),
                              report=eval_set.report, dataset_version_id=eval_version))

    system_prompt = system_prompt_for(analysis) if family == "decoder" else None
    max_new = _max_new_tokens(pool, analysis, base) if family == "decoder" else 0
    if family == "decoder":
        baselines = decoder_baselines(pool, eval_set, analysis, base, system_prompt=system_prompt or "",
                                      max_new_tokens=max_new, shots=config.shots, seed=config.seed)
    else:
        centroid = embedder if config.embedder == "base" else make_embedder("base", base, family, [], config.seed)
        baselines = encoder_baselines(pool, eval_set, analysis, centroid, seed=config.seed)
    setup = ColdStartSetup(analysis, family, base, train_task, data.summary(), split, pool_version, eval_version,
                           eval_set.content_hash(), eval_set, baselines, rationales, system_prompt, max_new, usage)
    with store.transaction():
        atomic_write_text(snapshot_path(store, bus.run_id), json.dumps(setup.to_dict(), ensure_ascii=False,
                                                                        default=str))
        bus.emit(CurationNote(section="Baseline", markdown=baselines.markdown(),
                              baselines={r.name: r.score for r in baselines.results}))
    return setup, embedder


def _data_markdown(data: LoadedData, split: Mapping[str, Any]) -> str:
    sizes = ", ".join(f"{k} {len(v)}" for k, v in data.splits.items())
    lines = [f"- source `{data.origin}` ({data.format}; {sizes})"]
    if data.fields:
        lines.append(f"- fields: input `{data.fields.get('input')}`, output `{data.fields.get('output')}`")
    lines += [f"- {note}" for note in data.notes]
    if split.get("test"):
        lines.append(f"- the source's test split ({split['test']}) is not used by the search")
    return "\n".join(lines)
