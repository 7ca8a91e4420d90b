"""Arms of one study read beside arms borrowed from another (a study file's `analysis.beside`).

`placement_mnist` puts BN at the first or last hidden layer only; its "no BN at any hidden
layer" arm is `mnist_mlp`'s no-BN arm (every arm standardizes its input, so that arm *is*
"the input only"), trained on the same MLP, data, budget and seeds. Rather than train it a
second time, the study names it under `analysis.beside`, and this module reads every arm —
the study's own and the borrowed — the same way: for each of the study's compare claims, the
arm's tuned setting chosen by the claim's own rule on that arm's study's tuning seeds, then
mean and 95% interval over its confirmation seeds. No verdict: a side-by-side reading.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bnlab.analysis.claim_measures import claim_measure
from bnlab.analysis.selection import (arm_runs, best_settings, confirmation_runs, finished, metric_values,
                                      tuning_runs, where)
from bnlab.analysis.spec import StudySpec
from bnlab.analysis.stats import seed_stats


def _readable(claim) -> bool:
    """Claims read the same way in any study: a plain compare on a metric every run has (not
    a target taken from the study's own baseline, not a rate fixed for the study)."""
    return claim.kind == "compare" and claim.target is None and not claim.get("matched")


def arm_reading(runs: pd.DataFrame, spec: StudySpec, arm: str, claim) -> dict | None:
    """One arm on one claim's metric: the setting the claim's rule chooses on the tuning seeds,
    and the mean [95% CI] over the confirmation seeds there (the tuning seeds when the arm has
    no confirmation runs at that setting, said in `seeds_from`). None when the arm has no runs."""
    runs = where(runs, claim)
    runs, claim = claim_measure(runs, spec, claim)
    setting = best_settings(runs, spec, claim).get(str(arm))
    if setting is None:
        return None
    sel, seeds_from = arm_runs(finished(confirmation_runs(runs, spec)), spec, arm, setting), "confirmation"
    if sel.empty:
        sel, seeds_from = arm_runs(finished(tuning_runs(runs, spec)), spec, arm, setting), "tuning"
    values, censored = metric_values(sel, claim["metric"], spec)
    st = seed_stats(values)
    return {"setting": {k.removeprefix("cfg."): (float(v) if isinstance(v, (int, float, np.number)) else v)
                        for k, v in setting.items()},
            "seeds": sorted(int(s) for s in values.index), "seeds_from": seeds_from,
            "n": st["n"], "mean": st["mean"], "ci_low": st["ci_low"], "ci_high": st["ci_high"],
            "censored": int(censored.sum())}


def arms_beside(study: dict, by_name: dict[str, dict]) -> list[dict]:
    """Every arm of `study` and every arm its spec borrows, on each of its readable claims:
    one row per (claim, arm) with its source study, budget and reading (`label`: the borrowed
    arm's words, None for the study's own). A borrowed study that has not run gives no row; one
    trained on another dataset or budget says so (`differs`)."""
    spec: StudySpec = study["spec"]
    if not spec.beside or not study.get("ran"):
        return []
    sources = [(None, study, a) for a in spec.arms]
    for b in spec.beside:
        other = by_name.get(b["study"])
        if other is not None and other.get("ran"):
            sources.insert(0, (b["label"], other, b["arm"]))
    rows = []
    for claim in spec.claims:
        if not _readable(claim):
            continue
        for label, source, arm in sources:
            src: StudySpec = source["spec"]
            reading = arm_reading(source["runs"], src, arm, claim)
            if reading is None:
                continue
            differs = [f"{what} {theirs}" for what, theirs, ours in
                       (("data", src.dataset, spec.dataset), ("steps", src.max_steps, spec.max_steps)) if theirs != ours]
            rows.append({"claim_id": claim.name, "metric": claim["metric"], "direction": claim.direction,
                         "arm": arm, "label": label, "study": src.name, "max_steps": src.max_steps,
                         "differs": ", ".join(differs), **reading})
    return rows
