"""Workspace resolution, WAL/foreign keys, transactions, registry lineage, events and atomic artifacts."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from store import Store, Workspace, atomic_write_text, file_hash
from store.artifacts import atomic_write_dir
from store.db import SchemaError, connect, migrate
from store.migrations import LATEST


def test_workspace_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PIONEER_WORKSPACE", raising=False)
    assert Workspace.resolve().root == tmp_path / ".pioneer"
    monkeypatch.setenv("PIONEER_WORKSPACE", str(tmp_path / "env"))
    assert Workspace.resolve().root == tmp_path / "env"
    assert Workspace.resolve(tmp_path / "flag").root == tmp_path / "flag"


def test_store_creates_wal_db_with_foreign_keys(tmp_path):
    with Store(tmp_path / "ws") as store:
        assert store.workspace.db_path.exists()
        assert store.artifacts.is_dir()
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        with pytest.raises(sqlite3.IntegrityError):
            store.models.register(base_model="minilm", artifact_path=None, parent_id="m-missing")


def test_newer_schema_is_refused(tmp_path):
    conn = connect(tmp_path / "db.sqlite")
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(SchemaError, match="upgrade pioneer-tui"):
        migrate(conn)


def test_transaction_rolls_back_everything(tmp_path):
    with Store(tmp_path) as store:
        run_id = store.runs.create("production")
        with pytest.raises(RuntimeError), store.transaction():
            store.runs.append_event(run_id, "run_started", {"mode": "production"})
            store.models.register(base_model="minilm", artifact_path=None)
            raise RuntimeError("boom")
        assert store.runs.events(run_id) == []
        assert store.models.list() == []


def test_nested_transaction_rolls_back_inner_only(tmp_path):
    with Store(tmp_path) as store:
        run_id = store.runs.create("production")
        with store.transaction():
            store.runs.append_event(run_id, "run_started")
            with pytest.raises(ValueError), store.transaction():
                store.runs.append_event(run_id, "node_added")
                raise ValueError
        assert [e.type for e in store.runs.events(run_id)] == ["run_started"]


def test_model_lineage_and_status(tmp_path):
    with Store(tmp_path) as store:
        rows = [{"input": "hi", "output": "greeting"}]
        ds = store.datasets.create(rows, name="parent", composition={"gold": 1})
        base = store.models.register(base_model="minilm", artifact_path=None, dataset_version_id=ds,
                                     status="deployed")
        child = store.models.register(base_model="minilm", artifact_path=None, parent_id=base)
        chain = store.models.ancestors(child)
        assert [m["id"] for m in chain] == [child, base]
        assert chain[1]["dataset_path"] == store.datasets.get(ds)["artifact_path"]
        assert store.datasets.rows(ds) == rows
        store.models.set_status(base, "retired")
        store.models.set_status(child, "deployed")
        assert store.models.deployed()["id"] == child
        with pytest.raises(ValueError, match="not one of"):
            store.models.set_status(child, "shipped")


def test_register_refuses_missing_artifact(tmp_path):
    with Store(tmp_path) as store, pytest.raises(FileNotFoundError, match="write it before registering"):
        store.models.register(base_model="minilm", artifact_path=tmp_path / "nope")


def test_events_are_sequential_and_survive_reopen(tmp_path):
    with Store(tmp_path) as store:
        run_id = store.runs.create("cold_start")
        for i in range(5):
            store.runs.append_event(run_id, "train_progress", {"step": i})
    with Store(tmp_path) as store:
        events = store.runs.events(run_id)
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        assert [e.payload["step"] for e in store.runs.events(run_id, after_seq=3)] == [3, 4]


def test_decisions_keep_diff(tmp_path):
    with Store(tmp_path) as store:
        run_id = store.runs.create("production")
        store.runs.record_decision(run_id, "curriculum", "edit", "alice", reason="drop dupes",
                                   diff={"removed": ["r1"]})
        (decision,) = store.runs.decisions(run_id)
        assert decision["who"] == "alice" and decision["diff"] == {"removed": ["r1"]}


def test_prediction_cache_round_trip(tmp_path):
    with Store(tmp_path) as store:
        store.cache.put_many("model-a", [("h1", "greeting", 0.9), ("h2", "bye", 0.6)])
        assert store.cache.get_many("model-a", ["h1", "h3"]) == {"h1": ("greeting", 0.9)}
        assert store.cache.get_many("model-b", ["h1"]) == {}


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    before = file_hash(target)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert file_hash(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_dir_replaces_whole_directory(tmp_path):
    def build(version: str):
        def _build(d: Path) -> None:
            (d / "weights.bin").write_text(version)
        return _build

    target = tmp_path / "model"
    atomic_write_dir(target, build("v1"))
    atomic_write_dir(target, build("v2"))
    assert (target / "weights.bin").read_text() == "v2"
    with pytest.raises(ZeroDivisionError):
        atomic_write_dir(target, lambda d: 1 / 0)
    assert (target / "weights.bin").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_events_publish_only_after_commit(tmp_path):
    from engine.events import EventBus

    with Store(tmp_path) as store:
        bus = EventBus(store, store.runs.create("production"))
        seen: list[str] = []
        bus.subscribe(lambda e: seen.append(e.type))
        with store.transaction():
            bus.emit("run_started", mode="production")
            assert seen == []
        assert seen == ["run_started"]
        with pytest.raises(RuntimeError), store.transaction():
            bus.emit("node_added", node_id="n1")
            raise RuntimeError
        bus.emit("run_finished", status="finished")
        assert seen == ["run_started", "run_finished"]
        assert [e.type for e in bus.history()] == ["run_started", "run_finished"]
