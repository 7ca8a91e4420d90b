"""Measures a claim defines for itself, added to the runs before its per-seed values are read,
and a verdict read back in the claim's own unit.

The run-level measures every study shares (steps to 95/97/98%, ICS, landscape, the gap) are
bnlab.analysis.measures.RUN_MEASURES. A claim may ask for one more:
- `target: baseline_best`: steps to the baseline arm's best validation accuracy — Ioffe &
  Szegedy's "the same accuracy in N× fewer steps". The target is the baseline arm's mean best
  validation accuracy on the *tuning* seeds at its chosen setting, so it is known before any
  confirmation run; each arm then runs at its fastest rate for that target (chosen on the
  tuning seeds like any other setting). `target: <number>` states it in the study file (a
  study that tunes nothing: the number comes from runs made before, said in its note).
- `transform: log2`: the claim's metric on a log2 scale, so a paired difference is the log of a
  ratio (a BN step's cost over a no-BN step's).

Hands downstream (bnlab.analysis.verdicts): `claim_measure(runs, spec, claim)` -> (runs with
the column, the claim reading it); `ratio_of(result)` and `natural_mean(result, mean)`, a
verdict read back in the claim's own unit (a ratio of steps or of step times, a rate).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bnlab.analysis.kinds import kind_of
from bnlab.analysis.measures import steps_to
from bnlab.analysis.records import Claim, with_
from bnlab.analysis.selection import arm_runs, best_settings, finished, tuning_runs
from bnlab.analysis.spec import StudySpec


def target_column(target: float) -> str:
    """The column of steps to a validation accuracy: steps_to_val_0.9703 (read as censored at
    the budget when never reached, like every steps_to_ column)."""
    return f"steps_to_val_{target:.4g}"


def baseline_best(runs: pd.DataFrame, spec: StudySpec) -> tuple[float, str]:
    """The baseline arm's mean best validation accuracy (the study's `select_on`) on the tuning
    seeds at its chosen setting, and how it was got, in words."""
    tuning = finished(tuning_runs(runs, spec))
    setting = best_settings(runs, spec).get(spec.baseline, {})
    sel = arm_runs(tuning, spec, spec.baseline, setting)
    value = float(sel[spec.select_on].astype(float).mean()) if len(sel) else float("nan")
    where = ", ".join(f"{k.removeprefix('cfg.')} {v:g}" if isinstance(v, (int, float)) else f"{k.removeprefix('cfg.')}={v}"
                      for k, v in setting.items())
    seeds = sorted(int(s) for s in sel["cfg.seed"]) if len(sel) else []
    return value, (f"{spec.baseline}'s mean {spec.select_on} on tuning seeds {seeds}"
                   + (f" at its chosen {where}" if where else ""))


def claim_measure(runs: pd.DataFrame, spec: StudySpec, claim: Claim) -> tuple[pd.DataFrame, Claim]:
    """The runs with the column the claim reads, and the claim reading it (unchanged for a
    claim that asks for no measure of its own)."""
    target = claim.target
    if target is not None:
        if target == "baseline_best":
            value, how = baseline_best(runs, spec)
        else:
            value, how = float(target), "stated in the study file"
        col = target_column(value)
        runs = runs.assign(**{col: steps_to(runs, value) if np.isfinite(value) else [None] * len(runs)})
        claim = with_(claim, metric=col, target_value=value, target_from=how)
        if spec.tune and not claim.matched:  # each arm at its fastest rate for this target
            claim = with_(claim, select_on=col, select_direction="lower")
    if claim.transform == "log2":
        col = f"log2 {claim['metric']}"
        values = pd.to_numeric(runs[claim["metric"]], errors="coerce") if claim["metric"] in runs else np.nan
        runs = runs.assign(**{col: np.log2(values.where(values > 0))})
        claim = with_(claim, metric=col, measured=claim.metric)
    return runs, claim


def _log_scale(r: dict) -> bool:
    return str(r.get("metric", "")).startswith("log2 ") or kind_of(r).log_scale


def ratio_of(r: dict) -> dict | None:
    """A verdict as a ratio, where its claim is one: a log2 measure (step cost, largest usable
    rate) as 2^effect with its interval ("times"); steps to a target as the baseline's mean over
    the treatment's ("fewer steps"), a bound where runs were censored. None otherwise."""
    effect = r.get("effect", np.nan)
    if not np.isfinite(effect):
        return None
    if _log_scale(r):
        sense = 1 if r.get("direction", "higher") == "higher" else -1
        lo, hi = sorted((2 ** (sense * r.get("ci_low", np.nan)), 2 ** (sense * r.get("ci_high", np.nan))))
        return {"kind": "times", "value": float(2 ** (sense * effect)), "low": float(lo), "high": float(hi),
                "bound": r.get("bound")}
    if str(r.get("metric", "")).startswith("steps_to"):
        b, t = r.get("baseline_mean"), r.get("treatment_mean")
        if not (b and t and np.isfinite(b) and np.isfinite(t)):
            return None
        return {"kind": "fewer steps", "value": float(b / t), "low": np.nan, "high": np.nan, "bound": r.get("bound")}
    return None


def natural_mean(r: dict, mean) -> float:
    """An arm's mean in the claim's own unit: a log2 measure as the value itself (the geometric
    mean over seeds), anything else as it is."""
    if mean is None or not np.isfinite(mean):
        return np.nan
    return float(2 ** mean) if _log_scale(r) else float(mean)
