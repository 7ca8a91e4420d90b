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


def arm_readings(runs: pd.DataFrame, spec: StudySpec, arms: list[str], claim) -> dict[str, dict]:
    """Each arm on one claim's metric: the setting the claim's rule chooses on the tuning seeds,
    and the mean [95% CI] over the confirmation seeds there (the tuning seeds when the arm has
    no confirmation runs at that setting, said in `seeds_from`). An arm without runs is left out.
    The claim's measure and the settings are computed once for all the arms."""
    runs = where(runs, claim)
    runs, claim = claim_measure(runs, spec, claim)
    settings = best_settings(runs, spec, claim)
    confirming, tuning = finished(confirmation_runs(runs, spec)), finished(tuning_runs(runs, spec))
    out = {}
    for arm in arms:
        setting = settings.get(str(arm))
        if setting is None:
            continue
        sel, seeds_from = arm_runs(confirming, spec, arm, setting), "confirmation"
        if sel.empty:
            sel, seeds_from = arm_runs(tuning, spec, arm, setting), "tuning"
        values, censored = metric_values(sel, claim["metric"], spec)
        st = seed_stats(values)
        out[arm] = {"setting": {k.removeprefix("cfg."): (float(v) if isinstance(v, (int, float, np.number)) else v)
                                for k, v in setting.items()},
                    "seeds": sorted(int(s) for s in values.index), "seeds_from": seeds_from,
                    "n": st["n"], "mean": st["mean"], "ci_low": st["ci_low"], "ci_high": st["ci_high"],
                    "censored": int(censored.sum())}
    return out


def arms_beside(study: dict, by_name: dict[str, dict]) -> list[dict]:
    """Every arm of `study` and every arm its spec borrows, on each of its readable claims:
    one row per (claim, arm) with its source study, budget and reading (`label`: the borrowed
    arm's words, None for the study's own). A borrowed study that has not run gives no row; one
    trained on another dataset or budget says so (`differs`)."""
    spec: StudySpec = study["spec"]
    if not spec.beside or not study.get("ran"):
        return []
    # (study, its arms read here, each arm's label): the borrowed ones first, then the study's own
    sources = [(other, [b["arm"]], {b["arm"]: b["label"]}) for b in spec.beside
               if (other := by_name.get(b["study"])) is not None and other.get("ran")][::-1]
    sources.append((study, list(spec.arms), {}))
    rows = []
    for claim in spec.claims:
        if not _readable(claim):
            continue
        for source, arms, labels in sources:
            src: StudySpec = source["spec"]
            differs = ", ".join(f"{what} {theirs}" for what, theirs, ours in
                                (("data", src.dataset, spec.dataset), ("steps", src.max_steps, spec.max_steps))
                                if theirs != ours)
            for arm, reading in arm_readings(source["runs"], src, arms, claim).items():
                rows.append({"claim_id": claim.name, "metric": claim["metric"], "direction": claim.direction,
                             "arm": arm, "label": labels.get(arm), "study": src.name, "max_steps": src.max_steps,
                             "differs": differs, **reading})
    return rows
