"""Forward-only schema migrations. Version N is the database after MIGRATIONS[:N] ran.

Never edit a released migration: add a new one. tests/test_store_migrations.py builds a database
at every earlier version and checks it migrates to the same schema as a fresh one.
"""

from __future__ import annotations

V1_BASE = """
CREATE TABLE trace_records (
    id TEXT PRIMARY KEY,
    ts TEXT NOT NULL,
    model_id TEXT NOT NULL,
    task TEXT,
    input TEXT NOT NULL,
    prediction TEXT,
    correction TEXT,
    auto_verdict TEXT NOT NULL CHECK (auto_verdict IN ('pass', 'fail')),
    reasoning TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    human_verdict TEXT CHECK (human_verdict IS NULL OR human_verdict IN ('pass', 'fail')),
    human_output TEXT,
    latency_ms REAL,
    stage TEXT,
    source TEXT,
    content_hash TEXT NOT NULL,
    ingested_at TEXT NOT NULL
);

-- The one place the human-over-automated rule lives: every pass/fail computation reads this view.
CREATE VIEW traces AS
SELECT id, ts, model_id, task, input, prediction,
       COALESCE(human_output, correction) AS correction,
       COALESCE(human_verdict, auto_verdict) AS verdict,
       auto_verdict, human_verdict, human_output, correction AS judge_correction,
       reasoning, metadata, latency_ms, stage, source
FROM trace_records;

CREATE TABLE dataset_versions (
    id TEXT PRIMARY KEY,
    parent_id TEXT REFERENCES dataset_versions(id),
    run_id TEXT,
    name TEXT,
    task TEXT,
    content_hash TEXT NOT NULL,
    artifact_path TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    composition TEXT NOT NULL DEFAULT '{}',
    qc_report TEXT NOT NULL DEFAULT '{}',
    note TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE models (
    id TEXT PRIMARY KEY,
    name TEXT,
    task TEXT,
    base_model TEXT NOT NULL,
    parent_id TEXT REFERENCES models(id),
    method TEXT,
    artifact_path TEXT,
    dataset_version_id TEXT REFERENCES dataset_versions(id),
    hyperparameters TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'candidate'
        CHECK (status IN ('candidate', 'deployed', 'rolled_back', 'retired', 'failed')),
    wall_time_s REAL,
    peak_memory_mb REAL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'finished', 'failed', 'interrupted', 'stopped')),
    config TEXT NOT NULL DEFAULT '{}',
    best_score REAL,
    spent TEXT NOT NULL DEFAULT '{}',
    stop_reason TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE TABLE search_nodes (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    parent_id TEXT REFERENCES search_nodes(id),
    iteration INTEGER NOT NULL DEFAULT 0,
    pipeline TEXT NOT NULL,
    pipeline_hash TEXT NOT NULL,
    score REAL,
    regressions INTEGER,
    status TEXT NOT NULL DEFAULT 'proposed',
    rationale TEXT,
    model_id TEXT REFERENCES models(id),
    dataset_version_id TEXT REFERENCES dataset_versions(id),
    visits INTEGER NOT NULL DEFAULT 0,
    total_reward REAL NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);

CREATE TABLE search_edges (
    run_id TEXT NOT NULL REFERENCES runs(id),
    src TEXT NOT NULL REFERENCES search_nodes(id),
    dst TEXT NOT NULL REFERENCES search_nodes(id),
    operator TEXT NOT NULL,
    modification TEXT,
    reason TEXT,
    PRIMARY KEY (src, dst)
);

CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY,
    run_id TEXT REFERENCES runs(id),
    node_id TEXT REFERENCES search_nodes(id),
    model_id TEXT REFERENCES models(id),
    eval_set TEXT NOT NULL,
    example_id TEXT NOT NULL,
    input TEXT,
    expected TEXT,
    prediction TEXT,
    correct INTEGER,
    score REAL,
    confidence REAL,
    created_at TEXT NOT NULL
);

CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    node_id TEXT REFERENCES search_nodes(id),
    kind TEXT NOT NULL CHECK (kind IN ('curriculum', 'rollback', 'promotion', 'threshold')),
    action TEXT NOT NULL CHECK (action IN ('approve', 'veto', 'edit', 'refuse')),
    who TEXT NOT NULL,
    reason TEXT,
    diff TEXT NOT NULL DEFAULT '{}',
    dataset_version_id TEXT REFERENCES dataset_versions(id),
    ts TEXT NOT NULL
);

CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, seq)
);
"""

V2_INDEXES_AND_CACHE = """
CREATE INDEX idx_trace_records_verdict ON trace_records (COALESCE(human_verdict, auto_verdict), model_id);
CREATE INDEX idx_trace_records_hash ON trace_records (content_hash);
CREATE INDEX idx_models_parent ON models (parent_id);
CREATE INDEX idx_nodes_run ON search_nodes (run_id);
CREATE INDEX idx_evaluations_node ON evaluations (node_id, eval_set);
CREATE INDEX idx_decisions_run ON decisions (run_id);

CREATE TABLE prediction_cache (
    model_key TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    threshold TEXT NOT NULL DEFAULT '',
    prediction TEXT NOT NULL,
    confidence REAL NOT NULL,
    PRIMARY KEY (model_key, input_hash, threshold)
) WITHOUT ROWID;
"""

# Who relabelled a trace and when (a person's verdict or output is a decision like any other).
V3_HUMAN_LABEL_PROVENANCE = """
ALTER TABLE trace_records ADD COLUMN human_by TEXT;
ALTER TABLE trace_records ADD COLUMN human_at TEXT;

DROP VIEW traces;
CREATE VIEW traces AS
SELECT id, ts, model_id, task, input, prediction,
       COALESCE(human_output, correction) AS correction,
       COALESCE(human_verdict, auto_verdict) AS verdict,
       auto_verdict, human_verdict, human_output, correction AS judge_correction,
       reasoning, metadata, latency_ms, stage, source, human_by, human_at
FROM trace_records;
"""

# Which dataset a cold-start run trains on is a decision like any other (engine.coldstart.data_search):
# SQLite cannot widen a CHECK in place, so the table is rebuilt with its rows.
V4_DATA_DECISIONS = """
CREATE TABLE decisions_v4 (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    node_id TEXT REFERENCES search_nodes(id),
    kind TEXT NOT NULL CHECK (kind IN ('curriculum', 'rollback', 'promotion', 'threshold', 'data')),
    action TEXT NOT NULL CHECK (action IN ('approve', 'veto', 'edit', 'refuse')),
    who TEXT NOT NULL,
    reason TEXT,
    diff TEXT NOT NULL DEFAULT '{}',
    dataset_version_id TEXT REFERENCES dataset_versions(id),
    ts TEXT NOT NULL
);
INSERT INTO decisions_v4 SELECT id, run_id, node_id, kind, action, who, reason, diff, dataset_version_id, ts
FROM decisions;
DROP TABLE decisions;
ALTER TABLE decisions_v4 RENAME TO decisions;
CREATE INDEX idx_decisions_run ON decisions (run_id);
"""

# A run reads one model's traces in a time window (engine.diagnosis.traces.TraceWindow).
V5_TRACE_WINDOW_INDEX = """
CREATE INDEX idx_trace_records_model_ts ON trace_records (model_id, ts);
"""

MIGRATIONS: list[str] = [V1_BASE, V2_INDEXES_AND_CACHE, V3_HUMAN_LABEL_PROVENANCE, V4_DATA_DECISIONS,
                         V5_TRACE_WINDOW_INDEX]
LATEST = len(MIGRATIONS)
