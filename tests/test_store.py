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


def test_an_artifact_is_readable_by_other_users_whatever_its_writer_did(tmp_path):
    """safetensors writes 0600 files; a model folder is read by serving users and tools, so its files and
    folders end readable (0644 / 0755), executables keep their bit."""
    def build(d: Path) -> None:
        (d / "sub").mkdir(mode=0o700)
        (d / "sub" / "weights.safetensors").write_bytes(b"w")
        os.chmod(d / "sub" / "weights.safetensors", 0o600)
        (d / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(d / "run.sh", 0o700)

    target = atomic_write_dir(tmp_path / "model", build)
    mode = lambda path: path.stat().st_mode & 0o777  # noqa: E731
    assert (mode(target), mode(target / "sub"), mode(target / "sub" / "weights.safetensors"),
            mode(target / "run.sh")) == (0o755, 0o755, 0o644, 0o744)


def test_events_publish_only_after_commit(tmp_path):
    from engine.events import BudgetSpent, EventBus, NodeAdded, RunFinished, RunStarted

    with Store(tmp_path) as store:
        bus = EventBus(store, store.runs.create("production"))
        seen: list[str] = []
        bus.subscribe(lambda e: seen.append(e.type))
        with store.transaction():
            bus.emit(RunStarted(mode="production"))
            assert seen == []
        assert seen == ["run_started"]
        with pytest.raises(RuntimeError), store.transaction():
            bus.emit(NodeAdded(node_id="n1"))
            raise RuntimeError
        bus.emit(RunFinished(status="finished"))
        assert seen == ["run_started", "run_finished"]
        with store.transaction():  # a rolled-back savepoint publishes none of its events, the rest still go
            with pytest.raises(RuntimeError), store.transaction():
                bus.emit(NodeAdded(node_id="n2"))
                raise RuntimeError
            bus.emit(BudgetSpent(spent={}))
        assert seen == ["run_started", "run_finished", "budget"]
        assert [e.type for e in bus.history()] == ["run_started", "run_finished", "budget"]


# --- secrets --------------------------------------------------------------------------------------

KEY = "sk-proj-" + "A1b2C3d4" * 4


def _raw_text(store: Store) -> str:
    """Every table's rows as text, as a person reading the database file would see them."""
    tables = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return "\n".join(repr(store.conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


def test_secrets_are_redacted_before_anything_is_stored(tmp_path):
    config = {"cold_start": {"llm": "gpt-4o", "llm_options": {
        "api_key": "plain-secret-value", "max_tokens": 256, "extra_headers": {"Authorization": "Bearer tok-123"},
        "client_secret": "abc"}}, "hyperparams": {"pad_token": "[PAD]", "eos_token": "</s>"}}
    with Store(tmp_path) as store:
        run_id = store.runs.create("cold_start", config)
        store.runs.append_event(run_id, "run_started", {"mode": "cold_start", "config": config})
        store.runs.append_event(run_id, "curation_note", {"markdown": f"the planner said: key {KEY} failed"})
        store.runs.record_decision(run_id, "curriculum", "veto", "bob", reason=f"leaked {KEY}")
        store.runs.update(run_id, status="failed", stop_reason=f"AuthenticationError: Incorrect API key {KEY}")
        text = _raw_text(store)
        for secret in ("plain-secret-value", "tok-123", KEY, '"abc"'):
            assert secret not in text
        stored = store.runs.get(run_id)["config"]
        options = stored["cold_start"]["llm_options"]
        assert options == {"api_key": "[redacted]", "max_tokens": 256, "extra_headers": {"Authorization": "[redacted]"},
                           "client_secret": "[redacted]"}
        assert stored["hyperparams"] == {"pad_token": "[PAD]", "eos_token": "</s>"}  # look like keys, are not
        assert config["cold_start"]["llm_options"]["api_key"] == "plain-secret-value"  # the caller's copy is intact
        assert "[redacted]" in store.runs.get(run_id)["stop_reason"]


def test_a_resumed_config_drops_redacted_values():
    from store.redact import REDACTED, without_redacted

    assert without_redacted({"llm_options": {"api_key": REDACTED, "temperature": 0}, "tags": ["a", REDACTED]}) == \
        {"llm_options": {"temperature": 0}, "tags": ["a", REDACTED]}


# --- a busy workspace --------------------------------------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Start another process that holds the workspace's write lock for `seconds`."""
    import subprocess
    import sys

    procs = []

    def hold(seconds: float) -> subprocess.Popen:
        Store(tmp_path / "ws").close()
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "ws" / "pioneer.db"), str(seconds)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_busy_database_waits_with_progress_then_names_the_holder(tmp_path, lock_holder, monkeypatch):
    from store import StoreBusy
    from store import db as store_db

    monkeypatch.setenv("PIONEER_BUSY_TIMEOUT", "0.6")
    monkeypatch.setattr(store_db, "_REPORT_EVERY_S", 0.15)
    holder = lock_holder(30)
    reports: list[tuple[float, float, str]] = []
    with Store(tmp_path / "ws", on_busy=lambda *r: reports.append(r)) as store:
        with pytest.raises(StoreBusy) as info:
            store.runs.create("production")
        assert store.runs.list() == []
    message = str(info.value)
    assert "\n" not in message and f"process {holder.pid} (python" in message and "within 0.6 s" in message
    assert reports and all(limit == 0.6 and f"process {holder.pid}" in who for _, limit, who in reports)


def test_a_busy_database_is_written_once_the_holder_lets_go(tmp_path, lock_holder, monkeypatch):
    monkeypatch.setenv("PIONEER_BUSY_TIMEOUT", "20")
    lock_holder(0.4)
    with Store(tmp_path / "ws") as store:
        run_id = store.runs.create("production")
        assert store.runs.get(run_id)["status"] == "running"


def test_cli_busy_database_is_one_line_naming_the_holder(tmp_path, lock_holder, monkeypatch, capsys):
    from pioneer_tui.cli import main

    monkeypatch.setenv("PIONEER_BUSY_TIMEOUT", "0.5")
    holder = lock_holder(30)
    trace = '{"ts": "2026-01-01T00:00:00Z", "model_id": "m", "input": "x", "prediction": "y", "verdict": "pass"}\n'
    (tmp_path / "t.jsonl").write_text(trace)
    assert main(["--workspace", str(tmp_path / "ws"), "ingest", str(tmp_path / "t.jsonl")]) == 75
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"process {holder.pid}" in err and "Traceback" not in err


# --- temp files of killed writers -------------------------------------------------------------------

KILLED_WRITER = """
import sys, time
from store.artifacts import atomic_write_dir
atomic_write_dir(sys.argv[1], lambda tmp: (print("building", flush=True), time.sleep(60)))
"""


def test_a_killed_writers_temp_folder_is_swept_when_the_workspace_opens(tmp_path):
    import subprocess
    import sys

    models = tmp_path / "ws" / "artifacts" / "models"
    models.mkdir(parents=True)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(models / "m-1")], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).parent.parent)
    assert writer.stdout.readline().strip() == "building"
    writer.kill()
    writer.wait()
    (left,) = models.iterdir()
    assert left.name.startswith(f".m-1.{writer.pid}-") and left.name.endswith(".tmp")
    live = models / f".m-2.{os.getpid()}-abcd1234.tmp"  # a writer of this (live) process: kept
    live.mkdir()
    Store(tmp_path / "ws").close()
    assert sorted(p.name for p in models.iterdir()) == [live.name]


def test_a_cold_start_config_keeps_its_key_out_of_the_run_and_its_log(tmp_path):
    from engine.coldstart.mode import cold_start
    from engine.coldstart.registry import DataUnavailable
    from engine.coldstart.setup import ColdStartConfig
    from engine.curation_log import write_curation_log
    from engine.search.reviewer import HeadlessReviewer

    config = ColdStartConfig(description="detect spam", data=str(tmp_path / "missing.jsonl"),
                             llm_options={"api_key": KEY, "temperature": 0})
    with Store(tmp_path / "ws") as store:
        with pytest.raises(DataUnavailable):
            cold_start(store, config, reviewer=HeadlessReviewer("auto"))
        (run,) = store.runs.list()
        log = write_curation_log(store, run["id"]).read_text()
        assert KEY not in _raw_text(store) and KEY not in log
        resumed = ColdStartConfig.from_dict(run["config"]["cold_start"])
    assert resumed.llm_options == {"temperature": 0}  # a resumed run takes the key from the environment
