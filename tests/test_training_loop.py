"""The one training loop (engine.models.training_loop) on a tiny BERT classifier built from a config:
schedule, clipping, stop check, out of memory, non-finite loss, progress, and the backends' options."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from transformers import BertConfig, BertForSequenceClassification

from engine.errors import ConfigError, TrainingError
from engine.models import runtime
from engine.models import training_loop as loop
from engine.models.base import TrainConfig
from engine.models.decoder import DecoderOptions, DecoderTrainer
from engine.models.encoder import EncoderOptions, EncoderTrainer, _Data, _Steps
from engine.models.factory import trainer_for

CPU = torch.device("cpu")


def tiny_classifier(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config)


def rows(n: int = 12) -> _Data:
    """n rows of 3..8 tokens; label = whether the row has an even length."""
    ids = [[2, *range(5, 5 + 1 + i % 6), 3] for i in range(n)]
    return _Data(ids, [len(x) % 2 for x in ids], 0)


def config(**kw) -> TrainConfig:
    defaults = {"task": "classification", "base_model": "unused", "method": "full", "batch_size": 4, "epochs": 2,
                "learning_rate": 1e-3, "warmup_ratio": 0.25, "seed": 0}
    return TrainConfig(**{**defaults, **kw})


def run(data: _Data | None = None, steps: loop.Steps | None = None, options: loop.LoopOptions | None = None,
        **kw) -> loop.FitStats:
    data = data or rows()
    return loop.fit(tiny_classifier(), [len(x) for x in data.ids], steps or _Steps(data, 0, CPU),
                    kw.pop("config", config()), options or EncoderOptions(precision="fp32"), **kw)


class Counting:
    """Steps that count batches and can fail at a given batch."""

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.inner = _Steps(rows(), 0, CPU)
        self.batches = 0
        self.fail_at, self.error = fail_at, error

    def collate(self, idx: list[int]):
        self.batches += 1
        return self.inner.collate(idx)

    def loss(self, model, batch):
        if self.batches == self.fail_at:
            raise self.error
        return self.inner.loss(model, batch)


# ---------------------------------------------------------------- schedule


def test_schedule_is_transformers_linear_warmup_then_decay():
    from transformers import get_linear_schedule_with_warmup

    total, warmup = 20, 5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_linear_schedule_with_warmup(opt, warmup, total)
    reference = []
    for _ in range(total + 1):
        reference.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert [loop.lr_factor(s, warmup, total) for s in range(total + 1)] == pytest.approx(reference)
    assert loop.lr_factor(0, 0, total) == 1.0 and loop.lr_factor(total, 0, total) == 0.0


def test_steps_and_warmup_round_up():
    assert loop.total_steps(10, config(batch_size=4, epochs=2)) == (3, 6)
    assert loop.total_steps(10, config(batch_size=4, epochs=0.5)) == (3, 2)
    assert loop.warmup_steps(config(warmup_ratio=0.06), 100) == 6
    assert loop.warmup_steps(config(warmup_ratio=0.06), 10) == 1
    assert loop.warmup_steps(config(warmup_ratio=0.0), 10) == 0


def test_the_optimiser_sees_the_schedule_and_the_head_learning_rate():
    seen: list[list[float]] = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, *_: seen.append(sorted({g["lr"] for g in opt.param_groups})))
    try:
        run(config=config(head_learning_rate=1e-2), head_names=("classifier",))
    finally:
        hook.remove()
    total, warmup = 6, 2
    for step, lrs in enumerate(seen):
        factor = loop.lr_factor(step, warmup, total)
        assert lrs == pytest.approx(sorted({1e-3 * factor, 1e-2 * factor}))
    assert len(seen) == total


# ---------------------------------------------------------------- clipping


@pytest.mark.parametrize("max_norm", [0.0, 0.05])
def test_gradients_are_clipped_to_max_grad_norm_before_each_step(max_norm):
    norms: list[float] = []

    def record(opt, *_):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    hook = register_optimizer_step_pre_hook(record)
    try:
        run(options=EncoderOptions(precision="fp32", max_grad_norm=max_norm), config=config(learning_rate=0.5))
    finally:
        hook.remove()
    if max_norm:
        assert max(norms) <= max_norm * (1 + 1e-4)
    else:
        assert max(norms) > 0.05  # unclipped: the same run's gradients are larger than the clip above


# ---------------------------------------------------------------- the stop check


def test_stop_is_checked_before_each_step_and_never_after_the_last():
    steps, calls = Counting(), []
    stats = run(steps=steps, should_stop=lambda: bool(calls.append(steps.batches)))
    assert stats.steps == 6 and calls == [0, 1, 2, 3, 4, 5]  # before steps 1..6, not after the 6th


@pytest.mark.parametrize(("stop_on_call", "done"), [(1, 0), (3, 2)])
def test_a_stop_request_ends_training_before_the_next_step(stop_on_call, done):
    steps, calls = Counting(), []
    with pytest.raises(TrainingError, match=f"stopped on request at step {done}/6; nothing was saved"):
        run(steps=steps, should_stop=lambda: len(calls.append(1) or calls) >= stop_on_call)
    assert steps.batches == done


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ...")])
def test_out_of_memory_is_one_training_error_with_one_hint(error):
    with pytest.raises(TrainingError, match=r"^out of memory at step 2 \(batch_size=4, max_length=128\): "
                                            r"retry with batch_size=2 or a shorter max_length$"):
        run(steps=Counting(fail_at=2, error=error))
    with pytest.raises(TrainingError, match=r"^out of memory \(batch_size=4"), loop.oom_as_training_error(config()):
        raise error


def test_other_errors_pass_through_unchanged():
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        run(steps=Counting(fail_at=1, error=RuntimeError("shape mismatch")))
    original = TrainingError("out of memory already explained")
    with pytest.raises(TrainingError) as info, loop.oom_as_training_error(config()):
        raise original
    assert info.value is original


def test_a_non_finite_loss_stops_at_the_report_that_sees_it():
    class NaNAt3(Counting):
        def loss(self, model, batch):
            loss = super().loss(model, batch)
            return loss * float("nan") if self.batches == 3 else loss

    with pytest.raises(TrainingError, match=r"loss became nan by step 4/6: lower learning_rate \(now 0.001\)"):
        run(steps=NaNAt3(), options=EncoderOptions(precision="fp32", report_every=2))


# ---------------------------------------------------------------- progress and results


def test_progress_reports_every_n_steps_and_the_last_with_tokens():
    reports = []
    data = rows()
    stats = run(data=data, options=EncoderOptions(precision="fp32", report_every=4), progress=reports.append)
    assert [r.step for r in reports] == [4, 6] and reports[-1].total_steps == 6
    assert reports[-1].epoch == pytest.approx(2.0) and reports[-1].eta_s == 0.0
    assert all(r.examples_per_s > 0 and r.tokens_per_s > r.examples_per_s and math.isfinite(r.loss) for r in reports)
    assert stats.steps == 6 and stats.loss == reports[-1].loss and 0.0 <= stats.padding_fraction < 0.5


def test_same_seed_same_weights_and_the_model_is_left_in_eval_mode():
    """Deterministic kernels, without torch's NaN fill of new tensors (a cost, not a need: same weights)."""
    data = rows()
    models = []
    for _ in range(2):
        loop.begin(config(), EncoderOptions(num_threads=1))
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory
        model = tiny_classifier()
        loop.fit(model, [len(x) for x in data.ids], _Steps(data, 0, CPU), config(), EncoderOptions(precision="fp32"))
        models.append(model)
    assert not models[0].training
    a, b = (dict(m.named_parameters()) for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_auto_precision_is_bf16_exactly_where_the_device_has_it(monkeypatch):
    native = runtime.bf16_supported(CPU)
    assert runtime.resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: True)
    assert runtime.resolve_precision("auto", CPU) == "bf16"
    assert runtime.resolve_precision("fp32", CPU) == "fp32"
    monkeypatch.setattr(runtime, "bf16_supported", lambda device: False)
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "fp32"
    with pytest.raises(ConfigError, match="needs a GPU with bf16 support"):
        runtime.resolve_precision("bf16", torch.device("cuda"))


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(("make", "needle"), [
    (lambda: EncoderTrainer(bf16=True), "EncoderOptions has no option 'bf16': use one of precision, "),
    (lambda: DecoderTrainer(log_every=5), "DecoderOptions has no option 'log_every'"),
    (lambda: trainer_for("generation", "smollm2", head_init="probe"), "DecoderOptions has no option 'head_init'"),
    (lambda: trainer_for("classification", "minilm", device="cpu"), "EncoderOptions has no option 'device'"),
    (lambda: EncoderTrainer(precision="fp16"), r"EncoderOptions.precision='fp16' is invalid: use one of auto, bf16"),
    (lambda: DecoderTrainer(precision="half"), r"DecoderOptions.precision='half' is invalid"),
    (lambda: EncoderTrainer(max_grad_norm=-1.0), r"EncoderOptions.max_grad_norm=-1.0 is invalid"),
    (lambda: DecoderTrainer(report_every=0), r"DecoderOptions.report_every=0 is invalid"),
    (lambda: EncoderTrainer(report_every="5"), r"EncoderOptions.report_every='5' is invalid"),
    (lambda: EncoderTrainer(num_threads=0), r"EncoderOptions.num_threads=0 is invalid"),
    (lambda: EncoderTrainer(head_init="zeros"), r"EncoderOptions.head_init='zeros' is invalid"),
    (lambda: EncoderTrainer(labels=("a", "a")), r"EncoderOptions.labels=\('a', 'a'\) is invalid: use distinct"),
    (lambda: EncoderTrainer(distill_weight="high"), r"EncoderOptions.distill_weight='high' is invalid"),
    (lambda: DecoderTrainer(device="tpu"), r"DecoderOptions.device='tpu' is invalid"),
    (lambda: DecoderTrainer(gradient_checkpointing="yes"), r"DecoderOptions.gradient_checkpointing='yes'"),
    (lambda: DecoderTrainer(allow_cpu_qlora=1), r"DecoderOptions.allow_cpu_qlora=1 is invalid"),
])
def test_bad_backend_options_are_a_config_error_naming_the_field(make, needle):
    with pytest.raises(ConfigError, match=needle):
        make()


def test_both_backends_share_the_loop_options_and_overrides_keep_the_rest():
    shared = {"precision", "max_grad_norm", "report_every", "num_threads"}
    assert shared <= set(EncoderOptions.__dataclass_fields__) & set(DecoderOptions.__dataclass_fields__)
    assert EncoderOptions().precision == DecoderOptions().precision == "auto"
    trainer = EncoderTrainer(EncoderOptions(head_init="probe", num_threads=1), report_every=3)
    assert (trainer.options.head_init, trainer.options.num_threads, trainer.options.report_every) == ("probe", 1, 3)
    assert DecoderTrainer(device="cpu", max_grad_norm=0.5).options.max_grad_norm == 0.5


def test_both_backends_train_through_the_one_loop(tmp_path, monkeypatch):
    from test_decoder import ROWS, _base
    from tiny_bert import build_tiny_bert, topic_examples

    class Reached(Exception):
        pass

    def fit(model, lengths, steps, config, options, **kw):
        batch = steps.collate(list(range(min(2, len(lengths)))))
        assert float(steps.loss(model, batch).detach()) > 0
        raise Reached(type(options).__name__)

    monkeypatch.setattr(loop, "fit", fit)
    with pytest.raises(Reached, match="EncoderOptions"):
        EncoderTrainer(num_threads=1).train(topic_examples(2), config(base_model=str(build_tiny_bert(tmp_path / "b"))),
                                            tmp_path / "enc")
    with pytest.raises(Reached, match="DecoderOptions"):
        DecoderTrainer(device="cpu").train(ROWS, config(task="generation", base_model=_base(tmp_path / "d"),
                                                        method="lora", max_length=64), tmp_path / "dec")
