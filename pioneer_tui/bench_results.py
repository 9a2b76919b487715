"""AdaptFT-Bench results (the result.json that `pioneer-tui bench adaptft` writes) as plain data for
the bench screen: the per-checkpoint table and the stage trajectories.

Read here rather than through engine.bench.adaptft.BenchResult.from_dict because that module loads
torch, which the workbench must not pay for to show a table; the fields read are the ones
BenchResult.to_dict writes, and the table's delta and gap are engine.bench.report's (agent minus
realistic naive), which tests/test_tui_bench.py checks against the report on the same file. A file
that cannot be read gives one line naming the file and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
ARM_ORDER = ("agent", "naive", "oracle", "clean_only", "random_aug")


class BenchResultError(ValueError):
    """A result file that cannot be shown; the message names the file and the field."""


@dataclass(frozen=True)
class CheckpointRow:
    name: str
    poison_rate: float | None
    scores: dict[str, float]  # arm -> metric in [0, 1]
    promoted: bool | None  # the agent's stage ended in a promotion (None for C1)

    @property
    def delta(self) -> float | None:
        """Agent minus realistic naive retraining, as in the report's Table 6."""
        naive = self.scores.get("naive")
        return None if naive is None else round(self.scores["agent"] - naive, 4)


@dataclass(frozen=True)
class BenchView:
    path: Path
    dataset: str
    task: str
    seed: int
    metric: str
    n_held_out: int
    n_held_out_scored: int
    seconds: float
    arms: tuple[str, ...]
    checkpoints: tuple[CheckpointRow, ...]

    @property
    def final_gap(self) -> float | None:
        return self.checkpoints[-1].delta

    @property
    def agent_monotone(self) -> bool:
        curve = [c.scores["agent"] for c in self.checkpoints]
        return all(b >= a for a, b in zip(curve, curve[1:], strict=False))

    def trajectory(self, arm: str) -> list[float]:
        return [c.scores[arm] for c in self.checkpoints]


def find_results(workspace_root: Path) -> list[Path]:
    """Result files under the workspace's bench/ folder (the command's default output), newest first."""
    found = [p for p in (workspace_root / "bench").glob(f"*/{RESULT_FILE}") if p.is_file()]
    return sorted(found, key=lambda p: (-p.stat().st_mtime, str(p)))


def resolve(path: Path) -> Path:
    """A result file, or a bench output folder holding one."""
    path = path.expanduser()
    return path / RESULT_FILE if path.is_dir() else path


def load_result(path: Path) -> BenchView:
    """Parse and check one result file; BenchResultError names the file and the bad field."""
    path = resolve(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchResultError(f"{path}: no such file; run `pioneer-tui bench adaptft` or give a result.json") \
            from None
    except OSError as exc:
        raise BenchResultError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise BenchResultError(f"{path}: line {exc.lineno}: not JSON ({exc.msg}); re-run the benchmark to "
                               "rewrite it") from None
    reader = _Reader(path)
    if not isinstance(raw, dict):
        reader.fail("(top level)", "is not an object")
    checkpoints = reader.get(raw, "checkpoints", list, "a list of checkpoints C1..C4")
    if not checkpoints:
        reader.fail("checkpoints", "is empty")
    rows = tuple(reader.checkpoint(c, i) for i, c in enumerate(checkpoints))
    arms = tuple(a for a in ARM_ORDER if a in rows[0].scores) + tuple(sorted(set(rows[0].scores) - set(ARM_ORDER)))
    for i, row in enumerate(rows):
        missing = [a for a in arms if a not in row.scores]
        if missing:
            reader.fail(f"checkpoints[{i}].scores", f"lacks {', '.join(missing)} (C1 has them)")
    return BenchView(path, str(reader.get(raw, "dataset", str, "the dataset name")),
                     str(reader.get(raw, "task", str, "the task")), int(reader.get(raw, "seed", int, "an integer")),
                     str(reader.get(raw, "metric", str, "the metric name")),
                     int(reader.get(raw, "n_held_out", int, "a row count")),
                     int(reader.get(raw, "n_held_out_scored", int, "a row count")),
                     float(reader.get(raw, "seconds", (int, float), "seconds")), arms, rows)


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> None:
        raise BenchResultError(f"{self.path}: field {field} {problem}; re-run `pioneer-tui bench adaptft` to "
                               "rewrite the file")

    def get(self, raw: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, where: str = "") -> Any:
        name = f"{where}{key}"
        if key not in raw:
            self.fail(name, f"is missing ({what})")
        value = raw[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(name, f"is {json.dumps(value)[:40]}, not {what}")
        return value

    def checkpoint(self, raw: Any, i: int) -> CheckpointRow:
        where = f"checkpoints[{i}]."
        if not isinstance(raw, dict):
            self.fail(f"checkpoints[{i}]", "is not an object")
        scores = self.get(raw, "scores", dict, "a mapping of arm -> score", where)
        if "agent" not in scores:
            self.fail(f"{where}scores", "has no agent score")
        for arm, value in scores.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) \
                    or not 0.0 <= value <= 1.0:
                self.fail(f"{where}scores.{arm}", f"is {json.dumps(value)[:40]}, not a score in [0, 1]")
        rate = raw.get("poison_rate")
        if rate is not None and not (isinstance(rate, int | float) and 0.0 <= rate <= 1.0):
            self.fail(f"{where}poison_rate", f"is {json.dumps(rate)[:40]}, not a rate in [0, 1] or null")
        promoted = raw.get("agent_promoted")
        if promoted is not None and not isinstance(promoted, bool):
            self.fail(f"{where}agent_promoted", f"is {json.dumps(promoted)[:40]}, not true, false or null")
        name = self.get(raw, "name", str, "a checkpoint name", where)
        return CheckpointRow(name, None if rate is None else float(rate),
                             {k: float(v) for k, v in scores.items()}, promoted)
