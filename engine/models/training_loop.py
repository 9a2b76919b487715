"""The one training loop both backends run (engine.models.encoder and .decoder).

It owns what must not drift between them: seeding and threads, the AdamW set-up, the LR schedule
(linear warmup then linear decay, as transformers' `get_linear_schedule_with_warmup`), gradient
clipping, the stop check (before each step, so a stop never costs a step and a finished run is
never thrown away), the loss read-back (once per report: the only host sync), a non-finite loss,
out of memory as one TrainingError with one hint, and the progress clock. A backend supplies
`Steps`: how to turn row indices into a batch and a batch into a loss.

Batches are length-grouped (engine.models.batching): each is padded only to its own longest row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol, TypeVar

from engine.errors import ConfigError, PioneerError, TrainingError
from engine.models.base import Progress, ProgressCallback, TrainConfig
from engine.models.batching import length_grouped_batches, padding_fraction
from engine.models.runtime import PRECISIONS, autocast, is_oom, pick_device, resolve_precision, set_threads
from engine.seed import seed_everything

StopCheck = Callable[[], bool]


# ---------------------------------------------------------------- options


def check_fields(owner: object, checks: Sequence[tuple[str, Callable[[Any], bool], str]]) -> None:
    """ConfigError naming `Owner.field` for the first value its predicate rejects (a wrong type too)."""
    for name, ok, expected in checks:
        value = getattr(owner, name)
        try:
            valid = bool(ok(value))
        except TypeError:
            valid = False
        if not valid:
            raise ConfigError(f"{type(owner).__name__}.{name}={value!r} is invalid: use {expected}")


@dataclass(frozen=True)
class LoopOptions:
    """Settings of the loop every backend's options share; they do not change what a TrainConfig means
    (precision changes the arithmetic, not the recipe)."""

    precision: str = "auto"  # auto: bf16 autocast where the device computes bf16 natively
    max_grad_norm: float = 1.0  # 0 disables clipping
    report_every: int | None = None  # steps between loss reads; None: 1 on CPU (free), 10 on GPU (a sync)
    num_threads: int | None = None  # torch threads; None: $OMP_NUM_THREADS, else the usable cores

    def __post_init__(self) -> None:
        check_fields(self, [
            ("precision", lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
            ("max_grad_norm", lambda v: v >= 0 and math.isfinite(v), "a number >= 0 (0 disables clipping)"),
            ("report_every", lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1 or unset"),
            ("num_threads", lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1 or unset"),
        ])


Options = TypeVar("Options", bound=LoopOptions)


def build_options(cls: type[Options], base: Options | None, overrides: Mapping[str, Any]) -> Options:
    """`base` (or the defaults) with `overrides`; an unknown name is a ConfigError listing the known ones."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no option {unknown[0]!r}: use one of {', '.join(known)}")
    return replace(base, **overrides) if base is not None else cls(**overrides)


def begin(config: TrainConfig, options: LoopOptions, device: str | None = None) -> Any:
    """Seed (engine.seed, the one place), set torch's threads, and return the device to train on."""
    seed_everything(config.seed)
    set_threads(options.num_threads)
    return pick_device(device)


# ---------------------------------------------------------------- optimiser and schedule


def adamw(model: Any, config: TrainConfig, head_names: Sequence[str] = ()) -> Any:
    """AdamW over the trainable parameters: no weight decay on biases and norms (1-D), a new task head
    (a module named in `head_names`) at config.head_learning_rate; the fused kernel when it applies."""
    import torch

    head_lr = config.head_learning_rate or config.learning_rate
    groups: dict[tuple[float, float], list[Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = any(f"{h}." in name for h in head_names)
        key = (head_lr if is_head else config.learning_rate, 0.0 if param.dim() < 2 else config.weight_decay)
        groups.setdefault(key, []).append(param)
    if not groups:
        raise TrainingError("no trainable parameters: check the method and the model")
    param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    try:
        return torch.optim.AdamW(param_groups, fused=True)
    except (RuntimeError, TypeError):  # fused kernels need matching devices/dtypes (e.g. 4-bit bases)
        return torch.optim.AdamW(param_groups, foreach=True)


def total_steps(n_rows: int, config: TrainConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, steps in all); fractional epochs round up to a whole step."""
    per_epoch = math.ceil(n_rows / config.batch_size)
    return per_epoch, max(1, math.ceil(config.epochs * per_epoch))


def warmup_steps(config: TrainConfig, total: int) -> int:
    return math.ceil(config.warmup_ratio * total)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The learning rate's multiplier before optimizer step `step` (0-based): linear warmup from 0 over
    `warmup` steps, then linear decay to 0 at `total`."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


# ---------------------------------------------------------------- stop, errors, progress


def check_stop(should_stop: StopCheck | None, step: int, total: int) -> None:
    """Raise when a stop was requested; called before a step, so `step` steps are done."""
    if should_stop is not None and should_stop():
        raise TrainingError(f"training stopped on request at step {step}/{total}; nothing was saved")


def oom_error(config: TrainConfig, step: int | None = None) -> TrainingError:
    where = f" at step {step}" if step is not None else ""
    return TrainingError(
        f"out of memory{where} (batch_size={config.batch_size}, max_length={config.max_length}): retry with "
        f"batch_size={max(1, config.batch_size // 2)} or a shorter max_length")


@contextmanager
def oom_as_training_error(config: TrainConfig) -> Iterator[None]:
    """Out of memory anywhere inside (loading, probing, training) becomes `oom_error`."""
    try:
        yield
    except PioneerError:
        raise
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if not is_oom(exc):
            raise
        raise oom_error(config) from exc


@dataclass
class Clock:
    """Counts what a run has seen and reports Progress (throughput and ETA from the wall clock)."""

    total_steps: int
    progress: ProgressCallback | None
    start: float = field(default_factory=time.perf_counter)
    examples: int = 0
    tokens: int = 0

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)

    def report(self, step: int, epoch: float, loss: float) -> None:
        if self.progress is None:
            return
        elapsed = self.elapsed()
        eta = elapsed / max(step, 1) * (self.total_steps - step)
        self.progress(Progress(step, self.total_steps, epoch, loss, self.examples / elapsed, eta,
                               self.tokens / elapsed))


# ---------------------------------------------------------------- the loop


class Steps(Protocol):
    """What a backend supplies: a batch of rows on the device, and that batch's mean loss."""

    def collate(self, rows: list[int]) -> Any: ...

    def loss(self, model: Any, batch: Any) -> Any: ...


@dataclass(frozen=True)
class FitStats:
    steps: int
    loss: float  # mean over the last report window
    examples_per_s: float
    tokens_per_s: float  # non-padding tokens
    padding_fraction: float  # of the token slots the batches padded


def fit(
    model: Any,
    lengths: Sequence[int],
    steps: Steps,
    config: TrainConfig,
    options: LoopOptions,
    *,
    head_names: Sequence[str] = (),
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> FitStats:
    """Train `model` for config.epochs over the rows whose token counts are `lengths`."""
    import torch

    device = next(p for p in model.parameters()).device
    precision = resolve_precision(options.precision, device)
    every = options.report_every or (1 if device.type == "cpu" else 10)
    per_epoch, total = total_steps(len(lengths), config)
    warmup = warmup_steps(config, total)
    optimizer = adamw(model, config, head_names)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
    params = [p for p in model.parameters() if p.requires_grad]
    clock = Clock(total, progress)
    loss_sum = torch.zeros((), device=device)
    window = step = epoch = 0
    last_loss = float("nan")
    padding: list[float] = []
    model.train()
    try:
        while step < total:
            batches = length_grouped_batches(lengths, config.batch_size, seed=config.seed, epoch=epoch)
            padding.append(padding_fraction(batches, lengths))
            for rows in batches[:total - step]:
                check_stop(should_stop, step, total)
                batch = steps.collate(rows)
                with autocast(device, precision):
                    loss = steps.loss(model, batch)
                loss.backward()
                if options.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, options.max_grad_norm, foreach=True)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach()
                window += 1
                step += 1
                clock.examples += len(rows)
                clock.tokens += sum(lengths[i] for i in rows)
                if step % every == 0 or step == total:
                    last_loss = float(loss_sum) / window  # the only host sync: once per report
                    if not math.isfinite(last_loss):
                        raise TrainingError(
                            f"loss became {last_loss} by step {step}/{total}: lower learning_rate (now "
                            f"{config.learning_rate:g}) or check the data and the base model for NaNs")
                    clock.report(step, step / per_epoch, last_loss)
                    loss_sum.zero_()
                    window = 0
            epoch += 1
    except PioneerError:
        raise
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if not is_oom(exc):
            raise
        raise oom_error(config, step + 1) from exc
    finally:
        model.eval()
    elapsed = clock.elapsed()
    return FitStats(step, last_loss, clock.examples / elapsed, clock.tokens / elapsed, sum(padding) / len(padding))
