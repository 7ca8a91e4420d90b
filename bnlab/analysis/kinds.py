"""Kinds of claim: the per-seed values that decide a claim, for each kind.

Kinds: `compare` (a metric per seed at each arm's chosen setting, or at a stated `matched`
setting), `max_usable` (per seed, log2 of the largest value of `over` whose run learned and
reached `threshold` on the selection metric; censored at the grid's ends), `worst_case` (per
seed, the worst metric over `over`), `gain` (per seed, what the chosen value of `over` adds over
its `reference` value).

`KINDS` is the registry, one `Kind` per kind, holding everything the code knows about it: its
per-seed values, its settings for the sensitivity rows, whether it must be confirmed on fresh
seeds, its axis label and its words in the report. A new kind is one entry here.

Hands downstream (bnlab.analysis.verdicts): `per_seed_values(runs, spec, claim)` -> {"values",
"censored" (per arm, per seed), "chosen", "edges", "decided_by", "seeds", "chosen_on",
"provisional"}; `sensitivity_settings(runs, spec, claim)`; `needs_confirmation(spec, claim)`;
`kind_of(claim)` (its `Kind`: `axis_label`, `words`, `log_scale`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from bnlab.analysis.selection import (arm_runs, best_settings, confirmation_runs, edge_flags, finished,
                                      gain_choice, gain_pools, metric_values, tuning_runs, usable_runs,
                                      _gain_edges)
from bnlab.analysis.records import Claim
from bnlab.analysis.spec import StudySpec

DEFAULT_KIND = Claim.__dataclass_fields__["kind"].default

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


def _compare_values(runs, spec, claim, tuning, confirming, tune_seeds, out) -> str:
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
    if needs_confirmation(spec, claim) and any(len(v) == 0 for v in out["values"].values()):
        out.update(_compare_at(tuning, spec, metric, settings, claim))
        out["provisional"] = "no confirmation runs at the chosen settings yet: shown on the tuning seeds that chose them"
        decided = "tuning seeds (provisional)"
    return decided


def _max_usable_values(runs, spec, claim, tuning, confirming, tune_seeds, out) -> str:
    out.update(_max_usable(tuning, spec, claim))
    out["chosen"] = {arm: {"unit": f"log2 {claim['over']}", "threshold": claim["threshold"]} for arm in spec.pair}
    return "grid seeds (every value measured, nothing chosen)"


def _worst_case_values(runs, spec, claim, tuning, confirming, tune_seeds, out) -> str:
    over, metric = f"cfg.{claim['over']}", claim["metric"]
    values = {}
    for arm in spec.pair:
        sel = finished(tuning[tuning[spec.arm_col].astype(str) == arm])
        worst = sel.groupby("cfg.seed")[metric].min().astype(float) if len(sel) else pd.Series(dtype=float)
        values[arm] = worst.rename(index=int)
        out["chosen"][arm] = {"over": sorted(sel[over].unique().tolist())}
    out["values"] = values
    out["censored"] = {arm: pd.Series(0.0, index=v.index) for arm, v in values.items()}
    return "grid seeds (every value measured, nothing chosen)"


def _gain_values(runs, spec, claim, tuning, confirming, tune_seeds, out) -> str:
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
    return decided


def _compare_settings(runs, spec, claim) -> list[dict]:
    """Every setting of the tuned keys both arms share, on the tuning seeds; a setting where an
    arm did not learn is "not comparable" for a claim that reads only nets that trained."""
    if not spec.tune or claim.get("arm_where"):  # arm_where: the arms differ in a tuned key
        return []
    cols = [f"cfg.{k}" for k in spec.tune]
    out = []
    for key, g in finished(tuning_runs(runs, spec)).groupby(cols, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        setting = dict(zip(cols, key))
        if g[spec.arm_col].astype(str).nunique() < 2:
            continue
        unlearned = [arm for arm in spec.pair
                     if (arm_runs(g, spec, arm, {})["outcome"] != "learned").any()] if "outcome" in g else []
        if claim.get("only_learned") and unlearned:
            out.append({"setting": setting, "not_comparable":
                        f"{spec.arm_key}={' and '.join(unlearned)}: some runs did not learn or diverged here, and "
                        f"this measure means nothing in a net that did not train"})
            continue
        out.append({"setting": setting, "runs": g,
                    "pv": _compare_at(g, spec, claim["metric"], {arm: setting for arm in spec.pair}, claim)})
    return out


def _gain_settings(runs, spec, claim) -> list[dict]:
    """Each value of `over` against the reference, each at its own tuned setting; the no-BN
    arm's gain there is what the claim's precondition reads."""
    over, metric = f"cfg.{claim['over']}", claim["metric"]
    tuning = tuning_runs(runs, spec)
    treated, _ = gain_pools(tuning, claim)
    out = []
    for value in sorted(treated[over].astype(float).unique()):
        choice = gain_choice(runs, spec, claim, value)
        values = {arm: _gain(tuning, spec, arm, choice[arm], metric, claim) if arm in choice
                  else pd.Series(dtype=float) for arm in spec.pair}
        out.append({"setting": {over: value}, "runs": tuning, "precondition_values": values[spec.baseline],
                    "pv": {"values": values, "censored": {a: pd.Series(0.0, index=v.index) for a, v in values.items()}}})
    return out


@dataclass(frozen=True)
class Kind:
    """One entry of the claim-kind registry: everything the code knows about a kind of claim."""

    values: Callable[..., str]
    """(runs, spec, claim, tuning runs, confirmation runs, tuning seeds, out) -> which seeds
    decided, in words; fills `out` with the per-seed values ("values", "censored") and what was
    chosen ("chosen", "edges", "chosen_on", "provisional")."""
    settings: Callable[..., list[dict]] | None
    """(runs, spec, claim) -> the sensitivity rows' settings, each {"setting", "runs", "pv"} or
    {"setting", "not_comparable": why}; None for a whole-grid measure (the tuned key is what it
    measures)."""
    confirmed: Callable[..., bool]
    """(spec, claim) -> whether its verdict rests on a setting chosen from the data, so that it
    must be confirmed on fresh seeds."""
    axis_label: str
    """Its per-seed values' axis label, with {m} for the metric's label."""
    words: str
    """How the report names what it measures, with {m} for the metric's words."""
    log_scale: bool = False
    """Whether its per-seed values are log2 of a quantity (read back as the quantity itself)."""
    ranged: bool = False
    """Whether each arm's range over the grid is shown beside it (a worst case over settings)."""


KINDS: dict[str, Kind] = {
    "compare": Kind(_compare_values, _compare_settings,
                    lambda spec, claim: not claim.get("matched") and bool(spec.tune), "{m}", "{m}"),
    "max_usable": Kind(_max_usable_values, None, lambda spec, claim: False, "log2 of the largest usable {m}",
                       "largest usable learning rate (geometric mean over seeds)", log_scale=True),
    "worst_case": Kind(_worst_case_values, None, lambda spec, claim: False, "worst {m} over the grid",
                       "worst {m} over the grid", ranged=True),
    "gain": Kind(_gain_values, _gain_settings, lambda spec, claim: True, "gain in {m}", "gain in {m}"),
}


def kind_of(claim: dict) -> Kind:
    kind = claim.get("kind") or DEFAULT_KIND
    if kind not in KINDS:
        raise ValueError(f"unknown analysis kind {kind!r}; allowed: {', '.join(KINDS)}")
    return KINDS[kind]


def needs_confirmation(spec: StudySpec, claim: dict) -> bool:
    """A claim decided at a setting chosen from the data (not a whole-grid measure, not a
    pre-specified setting) must be confirmed on fresh seeds."""
    return kind_of(claim).confirmed(spec, claim)


def sensitivity_settings(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> list[dict]:
    """The settings the claim is also judged at (its kind's `settings`; none for a whole-grid measure)."""
    settings = kind_of(claim).settings
    return settings(runs, spec, claim) if settings else []


def per_seed_values(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> dict:
    """The per-seed values that decide a claim's headline verdict, which runs decided it, and
    what was chosen (and on which seeds)."""
    kind = kind_of(claim)
    tuning, confirming = tuning_runs(runs, spec), confirmation_runs(runs, spec)
    tune_seeds = sorted(int(s) for s in tuning["cfg.seed"].unique())
    out = {"chosen": {}, "edges": {}, "chosen_on": None, "provisional": None}
    decided = kind.values(runs, spec, claim, tuning, confirming, tune_seeds, out)
    seeds = sorted({int(s) for v in out["values"].values() for s in v.index})
    out["decided_by"] = decided
    out["seeds"] = seeds
    return out
