"""One object per task type: everything that differs between classification, NER and generation —
how outputs are parsed, keyed, labelled, stratified and serialised, which metric scores them and
whether one example is right, how an error counts (false positive / false negative / confusion), and
what a task can do (a decision threshold, distillation, chain-of-thought, a backend family). The rest
of the engine asks `task_type(name)` instead of branching on the name; a new task type is one module
here plus its tests.
"""

from __future__ import annotations

from engine.errors import ConfigError
from engine.tasks.base import Errors, TaskType
from engine.tasks.classification import Classification
from engine.tasks.generation import Generation
from engine.tasks.ner import Ner

TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (Classification(), Ner(), Generation())}


def task_type(name: str) -> TaskType:
    """The task type called `name`; a clear error naming the known ones otherwise."""
    try:
        return TASK_TYPES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"task {name!r} is not a task type: use one of {', '.join(TASK_TYPES)}") from None


__all__ = ["TASK_TYPES", "Errors", "TaskType", "task_type"]
