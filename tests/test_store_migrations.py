"""Forward migrations from every earlier schema version reach the same schema as a fresh database,
and keep the rows written at the older version."""

from __future__ import annotations

import pytest

from store.db import connect, migrate, schema_version
from store.migrations import LATEST


def _schema(conn) -> list[tuple[str, str, str]]:
    return sorted(conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall())


@pytest.mark.parametrize("start", range(0, LATEST + 1))
def test_migrates_from_every_version(tmp_path, start):
    fresh = connect(tmp_path / "fresh.db")
    migrate(fresh)
    old = connect(tmp_path / "old.db")
    migrate(old, start)
    assert schema_version(old) == start
    if start >= 1:
        old.execute(
            "INSERT INTO trace_records (id, ts, model_id, input, auto_verdict, human_verdict, content_hash, "
            "ingested_at) VALUES ('t1', '2026-01-01', 'm', 'hello', 'pass', 'fail', 'h', '2026-01-01')")
        old.execute("PRAGMA foreign_keys = OFF")  # a decision row without its run: only its survival matters
        old.execute("INSERT INTO decisions (run_id, kind, action, who, ts) VALUES "
                    "('r1', 'promotion', 'refuse', 'me', '2026-01-01')")
    migrate(old)
    assert schema_version(old) == LATEST
    assert _schema(old) == _schema(fresh)
    if start >= 1:
        assert old.execute("SELECT verdict FROM traces WHERE id = 't1'").fetchone() == ("fail",)
        assert old.execute("SELECT kind, action, who FROM decisions").fetchall() == [("promotion", "refuse", "me")]
        old.execute("INSERT INTO decisions (run_id, kind, action, who, ts) VALUES ('r1', 'data', 'approve', 'me', 'x')")


def test_failed_migration_leaves_version_unchanged(tmp_path, monkeypatch):
    import store.db as db

    conn = connect(tmp_path / "x.db")
    migrate(conn, 1)
    monkeypatch.setattr(db, "MIGRATIONS", [db.MIGRATIONS[0], "CREATE TABLE broken (;"])
    with pytest.raises(db.SchemaError, match="schema_version 2"):
        db.migrate(conn, 2)
    assert schema_version(conn) == 1
