"""What the runs of a study without claims found (the quickstart demo, a folder of runs launched
ad hoc): BN against no BN on accuracy, steps to the target and the cost of a step, judged by the
same verdict code as the claims (bnlab.analysis.verdicts.claim_result), so that `make demo` can
end with sentences generated from its runs rather than typed."""
from __future__ import annotations

import pandas as pd

from bnlab.analysis.spec import StudySpec
from bnlab.analysis.verdicts import claim_result

# the questions the report's claims ask, on the measures every run records
QUESTIONS = (
    {"claim": "accuracy", "id": "accuracy", "kind": "compare", "metric": "best/test/acc", "direction": "higher",
     "min_effect": 0.002},
    {"claim": "speed", "id": "speed", "kind": "compare", "metric": "steps_to_target", "direction": "lower",
     "min_effect": 250},
    {"claim": "speed", "id": "step_cost", "kind": "compare", "metric": "step_time_ms", "transform": "log2",
     "direction": "higher", "min_effect": 0.0},
)


def findings(runs: pd.DataFrame, spec: StudySpec) -> list[dict]:
    """The verdicts of QUESTIONS on `runs`, for a study that compares norms and has no claims of
    its own ([] otherwise, or where a measure was not recorded)."""
    if spec.claims or spec.arm_key != "model.norm" or spec.baseline == spec.treatment:
        return []
    out = []
    # a stacked run's step time is its share of its stack's (bnlab.stack_plan), not one run's
    stacked = "env.engine" in runs and (runs["env.engine"] == "stacked").any()
    for question in QUESTIONS:
        if stacked and question["metric"] == "step_time_ms":
            continue
        if question["metric"] in runs and pd.to_numeric(runs[question["metric"]], errors="coerce").notna().any():
            out.append(claim_result(runs, spec, question))
    return out
