"""Kinds of claim: the per-seed values that decide a claim, for each kind.

Kinds: `compare` (a metric per seed at each arm's chosen setting, or at a stated `matched`
setting), `max_usable` (per seed, log2 of the largest value of `over` whose run learned and
reached `threshold` on the selection metric; censored at the grid's ends), `worst_case` (per
seed, the worst metric over `over`), `gain` (per seed, what the chosen value of `over` adds over
its `reference` value).

Hands downstream (bnlab.analysis.verdicts): `per_seed_values(runs, spec, claim)` -> {"values",
"censored" (per arm, per seed), "chosen", "edges", "decided_by", "seeds", "chosen_on",
"provisional"}; `KIND_LABELS`, each kind's axis label.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnlab.analysis.selection import (arm_runs, best_settings, confirmation_runs, edge_flags, finished,
                                      gain_choice, gain_pools, metric_values, tuning_runs, usable_runs,
                                      _gain_edges)
from bnlab.analysis.spec import StudySpec

def _compare_at(runs: pd.DataFrame, spec: StudySpec, metric: str, settings: dict, claim: dict | None = None) -> dict:
    values, censored = {}, {}
    for arm in spec.pair:
        sel = usable_runs(arm_runs(runs, spec, arm, settings.get(arm, {})), claim or {})
        v, c = metric_values(sel, metric, spec)
        values[arm], censored[arm] = v, c
    return {"values": values, "censored": censored}


def _max_usable(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> dict:
    over, thr = f"cfg.{claim['over']}", claim["threshold"]
    grid = sorted(runs[over].astype(float).unique())
    step = math.log2(grid[1]) - math.log2(grid[0]) if len(grid) > 1 else 1.0
    floor, top = math.log2(grid[0]) - step, math.log2(grid[-1])
    values, censored = {}, {}
    for arm in spec.pair:
        sel = runs[runs[spec.arm_col].astype(str) == arm]
        v, c = {}, {}
        for seed, g in sel.groupby("cfg.seed"):
            ok = g[(g["outcome"] == "learned") & (g[spec.select_on].astype(float) >= thr)]
            if len(ok):
                v[int(seed)] = math.log2(ok[over].astype(float).max())
                c[int(seed)] = 1.0 if np.isclose(v[int(seed)], top) else 0.0  # at the top: at least
            else:
                v[int(seed)], c[int(seed)] = floor, -1.0  # nothing usable: below the grid
        values[arm], censored[arm] = pd.Series(v, dtype=float), pd.Series(c, dtype=float)
    return {"values": values, "censored": censored}


def _gain(runs: pd.DataFrame, spec: StudySpec, arm: str, choice: dict, metric: str, claim: dict) -> pd.Series:
    """Per seed: the metric at the arm's chosen setting minus at its reference setting."""
    treated, reference = (finished(p) for p in gain_pools(runs, claim))
    at_best = arm_runs(treated, spec, arm, choice["chosen"]).set_index("cfg.seed")[metric]
    at_ref = arm_runs(reference, spec, arm, choice["reference"]).set_index("cfg.seed")[metric]
    gain = (at_best - at_ref).dropna().astype(float)
    return gain.set_axis([int(s) for s in gain.index]).sort_index()


def per_seed_values(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> dict:
    """The per-seed values that decide a claim's headline verdict, which runs decided it, and
    what was chosen (and on which seeds)."""
    kind = claim.get("kind", "compare")
    tuning, confirming = tuning_runs(runs, spec), confirmation_runs(runs, spec)
    tune_seeds = sorted(int(s) for s in tuning["cfg.seed"].unique())
    out = {"chosen": {}, "edges": {}, "chosen_on": None, "provisional": None}
    if kind == "compare":
        metric = claim["metric"]
        if claim.get("matched"):
            settings = {arm: {f"cfg.{k}": v for k, v in claim["matched"].items()} for arm in spec.pair}
            pool, decided = tuning, "grid seeds at the pre-specified setting (nothing chosen)"
        else:
            settings = {a: v for a, v in best_settings(runs, spec, claim).items() if a in spec.pair}
            out["edges"] = edge_flags(runs, spec, settings)
            out["chosen_on"] = tune_seeds if spec.tune else None
            pool, decided = (confirming, "confirmation seeds") if spec.tune else (runs, "all seeds (nothing tuned)")
        out.update(_compare_at(pool, spec, metric, settings, claim))
        out["chosen"] = settings
        if spec.needs_confirmation(claim) and any(len(v) == 0 for v in out["values"].values()):
            out.update(_compare_at(tuning, spec, metric, settings, claim))
            out["provisional"] = "no confirmation runs at the chosen settings yet: shown on the tuning seeds that chose them"
            decided = "tuning seeds (provisional)"
    elif kind == "max_usable":
        out.update(_max_usable(tuning, spec, claim))
        out["chosen"] = {arm: {"unit": f"log2 {claim['over']}", "threshold": claim["threshold"]} for arm in spec.pair}
        decided = "grid seeds (every value measured, nothing chosen)"
    elif kind == "worst_case":
        over, metric = f"cfg.{claim['over']}", claim["metric"]
        values = {}
        for arm in spec.pair:
            sel = finished(tuning[tuning[spec.arm_col].astype(str) == arm])
            worst = sel.groupby("cfg.seed")[metric].min().astype(float) if len(sel) else pd.Series(dtype=float)
            values[arm] = worst.rename(index=int)
            out["chosen"][arm] = {"over": sorted(sel[over].unique().tolist())}
        out["values"] = values
        out["censored"] = {arm: pd.Series(0.0, index=v.index) for arm, v in values.items()}
        decided = "grid seeds (every value measured, nothing chosen)"
    elif kind == "gain":
        metric, decided = claim["metric"], "confirmation seeds"
        choice = gain_choice(runs, spec, claim)
        values = {arm: _gain(confirming, spec, arm, choice[arm], metric, claim) if arm in choice
                  else pd.Series(dtype=float) for arm in spec.pair}
        if any(len(v) == 0 for v in values.values()):
            values = {arm: _gain(tuning, spec, arm, choice[arm], metric, claim) if arm in choice
                      else pd.Series(dtype=float) for arm in spec.pair}
            out["provisional"] = "no confirmation runs at the chosen settings yet: shown on the tuning seeds that chose them"
            decided = "tuning seeds (provisional)"
        for arm in spec.pair:
            if arm in choice:
                out["chosen"][arm] = {**choice[arm]["chosen"], "reference": choice[arm]["reference"]}
        out["edges"] = _gain_edges(runs, spec, {a: c for a, c in choice.items() if a in spec.pair}, claim)
        out["chosen_on"] = tune_seeds
        out["values"] = values
        out["censored"] = {arm: pd.Series(0.0, index=v.index) for arm, v in values.items()}
    else:
        raise ValueError(f"unknown analysis kind {kind!r}")
    seeds = sorted({int(s) for v in out["values"].values() for s in v.index})
    out["decided_by"] = decided
    out["seeds"] = seeds
    return out

KIND_LABELS = {"compare": "{m}", "worst_case": "worst {m} over the grid", "gain": "gain in {m}",
               "max_usable": "log2 of the largest usable {m}"}
