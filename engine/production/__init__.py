"""Production mode (issue 5): from a deployed model and its judged traces to a verified better model.

Diagnosis (once per run, snapshotted so a resumed run works on exactly the same sets): T_fail / T_pass
from the `traces` view (a person's verdict wins); fixable vs poison triage (never trained on); the
failure taxonomy; probes through the deployed model to confirm each fixable cluster; D_parent through
the registry's lineage; the failure set and its fix holdout, a stratified regression set of T_pass and
the previous checkpoint's set.

Search: the root node is the deployed model itself, evaluated from its traces (a(pi) = 0 by
construction), so the first expansion sees the real confusion pairs. Every other node builds D_post =
gold corrections + hard negatives + replay of D_parent and of the verified passes outside the protected
sets under the quality controls, trains from the BASE model, and is scored on those sets; the gates
decide and only a person (the Reviewer) promotes.

    config     ProductionConfig: the run's settings
    diagnosis  diagnose, the Diagnosis snapshot, adopting another run's (a fork)
    runner     ProductionRunner: the NodeRunner (curriculum, train, evaluate)
    mode       root_pipeline, loop_parts, improve, summarize_run
    fork       a new run from any node of a finished one
"""

from engine.production.config import MAX_REGRESSION_ITEMS, ProductionConfig
from engine.production.diagnosis import (
    Diagnosis,
    adopt_diagnosis,
    deployed_model,
    diagnose,
    load_diagnosis,
    model_traces,
    parent_data,
    previous_checkpoint_set,
    replay_pool,
    save_diagnosis,
)
from engine.production.mode import (
    Iteration,
    ProductionSummary,
    improve,
    loop_parts,
    root_pipeline,
    summarize_run,
)
from engine.production.runner import ProductionRunner

__all__ = [
    "MAX_REGRESSION_ITEMS", "Diagnosis", "Iteration", "ProductionConfig", "ProductionRunner",
    "ProductionSummary", "adopt_diagnosis", "deployed_model", "diagnose", "improve", "load_diagnosis",
    "loop_parts", "model_traces", "parent_data", "previous_checkpoint_set", "replay_pool", "root_pipeline",
    "save_diagnosis", "summarize_run",
]
