"""A run reads a bounded, representative slice of a busy model's traces (issue 17, scale): a time window
(`--since`, `--until`) and a seeded sample stratified by verdict (`--max-traces`), over the (model_id, ts)
index; outside the window nothing is read."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from engine.diagnosis.traces import TraceWindow
from engine.errors import ConfigError
from engine.ingest import ingest_traces
from engine.production import ProductionConfig
from engine.production.diagnosis import model_window
from store import Store


def workspace(tmp_path, n=400, fail_every=4):
    path = tmp_path / "traces.jsonl"
    with path.open("w") as f:
        for i in range(n):
            ok = i % fail_every
            f.write(json.dumps({"id": f"t{i:04d}", "ts": f"2026-11-{1 + i // 100:02d}T{i % 24:02d}:00:00+00:00",
                                "model_id": "m1", "task": "classification", "input": f"text {i}",
                                "prediction": "a", "verdict": "pass" if ok else "fail",
                                **({} if ok else {"correction": "b"})}) + "\n")
        f.write(json.dumps({"id": "other", "ts": "2026-11-02T00:00:00+00:00", "model_id": "m2", "input": "x",
                            "prediction": "a", "verdict": "pass", "task": "classification"}) + "\n")
    store = Store(tmp_path / "ws")
    ingest_traces(store, path)
    return store


def test_the_window_reads_only_its_days_and_the_sample_keeps_the_verdict_mix(tmp_path):
    store = workspace(tmp_path)
    model = {"id": "m1", "name": "m1"}
    days, held = model_window(store, model, "classification", TraceWindow(since="2026-11-02", until="2026-11-04"))
    assert held == len(days) == 200 and {t.id for t in days} == {f"t{i:04d}" for i in range(100, 300)}
    sample, held = model_window(store, model, "classification", TraceWindow(max_traces=100, seed=3))
    assert held == 400 and len(sample) == 100
    assert Counter(t.verdict for t in sample) == {"pass": 75, "fail": 25}
    again, _ = model_window(store, model, "classification", TraceWindow(max_traces=100, seed=3))
    assert [t.id for t in again] == [t.id for t in sample]
    plan = store.conn.execute("EXPLAIN QUERY PLAN SELECT id FROM trace_records WHERE model_id IN ('m1') "
                              "AND ts >= '2026-11-02'").fetchall()
    assert "idx_trace_records_model_ts" in " ".join(str(r) for r in plan)


@pytest.mark.parametrize(("kw", "message"), [({"max_traces": 5}, "max_traces=5 is invalid"),
                                             ({"since": "2026-11-05", "until": "2026-11-01"}, "window since")])
def test_a_bad_window_is_refused_by_name(kw, message):
    with pytest.raises(ConfigError, match=message):
        ProductionConfig(model="m1", **kw)
