"""A workspace is a folder holding `pioneer.db` and `artifacts/`; `Store` is its single entry point."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from store.artifacts import sweep_stale_tmp
from store.db import BusyReporter, begin_immediate, open_db

DEFAULT_WORKSPACE = ".pioneer"
WORKSPACE_ENV = "PIONEER_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "pioneer.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def datasets(self) -> Path:
        """Where cold-start looks for a person's own datasets (and their NAME.card.json) by default."""
        return self.root / "datasets"

    @classmethod
    def resolve(cls, explicit: str | Path | None = None) -> Workspace:
        """`--workspace` wins, then $PIONEER_WORKSPACE, then ./.pioneer."""
        root = explicit or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
        return cls(Path(root).expanduser().resolve())

    def create(self) -> Workspace:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self


class Store:
    """The workspace database plus typed accessors for each table group.

    One Store per thread: SQLite connections are not shared across threads here. Opening one removes
    the temp files and folders that killed writers left in artifacts/. `on_busy` hears about waits
    for another process's write lock (default: a line on stderr every few seconds).
    """

    def __init__(self, workspace: Workspace | str | Path | None = None, *,
                 on_busy: BusyReporter | None = None) -> None:
        from store.registry import DatasetVersions, ModelRegistry
        from store.runlog import RunLog
        from store.traces import PredictionCache, TraceTable

        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace.resolve(workspace)
        self.workspace.create()
        sweep_stale_tmp(self.workspace.artifacts)
        self.on_busy = on_busy
        self.db = open_db(self.workspace.db_path)
        self.conn = self.db.conn
        self._lock = threading.RLock()
        self._depth = 0
        self._after_commit: list[Callable[[], None]] = []  # hooks of the open transaction, in order
        self.traces = TraceTable(self)
        self.models = ModelRegistry(self)
        self.datasets = DatasetVersions(self)
        self.runs = RunLog(self)
        self.cache = PredictionCache(self)

    @property
    def artifacts(self) -> Path:
        return self.workspace.artifacts

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing writes; nests through savepoints. A rolled-back savepoint also drops the
        after-commit hooks registered inside it (its events never happened)."""
        with self._lock:
            name = f"sp{self._depth}"
            if self._depth == 0:
                begin_immediate(self.conn, self.on_busy)
            else:
                self.conn.execute(f"SAVEPOINT {name}")
            hooks_before = len(self._after_commit)
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                del self._after_commit[hooks_before:]
                if self._depth == 0:
                    self.conn.execute("ROLLBACK")
                else:
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                raise
            else:
                self._depth -= 1
                if self._depth == 0:
                    self.conn.execute("COMMIT")
                    hooks, self._after_commit = self._after_commit, []
                    for hook in hooks:
                        hook()
                else:
                    self.conn.execute(f"RELEASE {name}")

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once the outermost transaction commits (now, if none is open); dropped on rollback."""
        with self._lock:
            if self._depth == 0:
                hook()
            else:
                self._after_commit.append(hook)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
