"""Per-seed values -> verdicts, with the preconditions and the sensitivity of each verdict.

The design:
- **tune, then confirm**: each arm's setting is chosen on validation data (`select_on`) from
  the *tuning* runs; the chosen settings run again on the confirmation seeds, and a claim that
  depends on a choice is decided by those alone (bnlab.analysis.selection, kinds);
- **sensitivity**: every such claim is also judged at each setting both arms share (matched
  learning rates), on the tuning seeds, Holm-adjusted within the claim;
- **edges**: a chosen setting at the edge of its grid is flagged: it is not shown to be best.

Hands downstream (bnlab.analysis.study, then bnlab.views): `study_verdicts(runs, spec)`, one
verdict per claim and comparison, before the family's Holm adjustment (bnlab.analysis.study);
and the readings the report shows beside them, computed here so that the report formats and
never computes: `range_over_settings` (a worst-case claim's range per arm) and
`ics_with_accuracy` (does ICS go with the accuracy benefit).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from bnlab.analysis.kinds import kind_of, per_seed_values, sensitivity_settings
from bnlab.analysis.claim_measures import claim_measure, natural_mean, ratio_of
from bnlab.analysis.frames import swept_columns
from bnlab.analysis.selection import (arm_runs, finished, fixed_settings, gain_choice, gain_pools, is_time_to, setting_table,
                                      tuning_runs, where)
from bnlab.analysis.records import Claim, Verdict, as_claim, as_verdict, with_
from bnlab.analysis.spec import DATASETS, Comparison, StudySpec, is_num
from bnlab.analysis.stats import ALPHA, apply_holm, compare, effect_text, equivalence, noninferiority, seed_stats

def _paired(runs: pd.DataFrame, values: dict, spec: StudySpec) -> bool:
    """Paired analysis when both arms have exactly the same seeds and every run is paired."""
    b, t = (values[a] for a in spec.pair)
    if len(b) < 2 or set(b.index) != set(t.index):
        return False
    return "paired" in runs and bool(runs["paired"].notna().all())


def decide(runs: pd.DataFrame, spec: StudySpec, claim: dict, pv: dict) -> dict:
    b, t = (pv["values"][a].sort_index() for a in spec.pair)
    cb, ct = (pv["censored"][a].reindex(pv["values"][a].sort_index().index).fillna(0) for a in spec.pair)
    paired = _paired(runs, pv["values"], spec)
    if paired:  # align by seed
        t, ct = t.reindex(b.index), ct.reindex(b.index)
    if claim.get("test") == "equivalence":
        return equivalence(b.tolist(), t.tolist(), float(claim["margin"]), paired=paired,
                           censored_baseline=cb.tolist(), censored_treatment=ct.tolist())
    if claim.get("test") == "non_inferiority":  # the margin: the smallest effect that matters
        return noninferiority(b.tolist(), t.tolist(), float(claim.min_effect), claim.direction,
                              paired=paired, censored_baseline=cb.tolist(), censored_treatment=ct.tolist())
    return compare(b.tolist(), t.tolist(), claim.direction, float(claim.min_effect),
                   paired=paired, censored_baseline=cb.tolist(), censored_treatment=ct.tolist())


def claim_result(runs: pd.DataFrame, spec: StudySpec, claim: Claim | dict) -> Verdict:
    """The headline verdict of one claim (before the report's Holm adjustment), its
    per-seed values and the verdict at every matched setting."""
    claim = as_claim(claim)
    if claim.kind != "gain":  # a gain claim picks its treated and reference runs itself (gain_pools)
        runs = where(runs, claim)
    runs, claim = claim_measure(runs, spec, claim)  # a measure of its own: steps to a target, a log scale
    pv = per_seed_values(runs, spec, claim)
    res = decide(runs, spec, claim, pv)
    if pv["provisional"]:  # held back whatever its family says: the seeds that chose cannot decide
        res.update(hold=pv["provisional"], verdict="inconclusive", reason=pv["provisional"])
    metric = claim.get("metric")
    # a steps-to-target column that is empty is runs that never got there (censored), not a readout missing
    if metric and claim.kind == "compare" and (metric not in runs or (
            not is_time_to(metric) and pd.to_numeric(runs[metric], errors="coerce").notna().sum() == 0)):
        said = (f"not measured yet: no run of the study has `{metric}` (its runs predate that readout); "
                f"rerun the study to measure it")
        res.update(hold=said, verdict="inconclusive", reason=said)
    _precondition(res, claim, pv["values"][spec.baseline])
    res.update(claim=claim.claim, id=claim.name, kind=claim.kind,
               metric=claim.get("metric", claim.get("over")), note=claim.get("note", ""),
               direction=claim.direction, chosen=pv["chosen"], edges=pv["edges"],
               decided_by=pv["decided_by"], seeds=pv["seeds"], chosen_on=pv["chosen_on"],
               provisional=pv["provisional"], literature=claim.get("literature", ""), url=claim.get("url", ""),
               literature_values=dict(claim.get("literature_values") or {}),
               baseline_values=pv["values"][spec.baseline].sort_index().tolist(),
               treatment_values=pv["values"][spec.treatment].sort_index().tolist(),
               baseline_censored=pv["censored"][spec.baseline].sort_index().tolist(),
               treatment_censored=pv["censored"][spec.treatment].sort_index().tolist(),
               sensitivity=sensitivity(runs, spec, claim), baseline=spec.baseline, treatment=spec.treatment,
               test_kind=claim.test,
               target_value=claim.get("target_value"), target_from=claim.get("target_from"),
               measured=claim.get("measured"), arm_where=dict(claim.get("arm_where") or {}),
               comparison=comparison_text(Comparison(spec.baseline, spec.treatment, claim.test,
                                                     claim.get("margin"))))
    res["sensitivity_summary"] = summarize_sensitivity(res["sensitivity"], spec)
    # the verdict in the claim's own unit, for the report's plain sentence
    res["ratio"] = ratio_of(res)
    res["baseline_natural"] = natural_mean(res, res.get("baseline_mean"))
    res["treatment_natural"] = natural_mean(res, res.get("treatment_mean"))
    return as_verdict(res)


def _precondition(res: dict, claim: dict, baseline_values: pd.Series) -> None:
    """"BN reduces the need for X" presumes the no-BN arm needs X: with `precondition:
    baseline_benefits`, the no-BN arm's gain must be measurably > 0, else the verdict is held
    at inconclusive (there is no need for BN to reduce). Whether it holds is always said
    (`precondition`), whatever the verdict."""
    if claim.get("precondition") != "baseline_benefits":
        return
    base = seed_stats(baseline_values.tolist())
    gain = f"({effect_text({**base, 'effect': base['mean']})})"
    over = claim.get("over", "it")
    if not base["ci_low"] > 0:
        said = (f"the precondition fails: the no-BN arm gains nothing measurable from {over} here {gain}, "
                f"so there is no need for BN to reduce")
        res.update(precondition=said, hold=res.get("hold") or said, verdict="inconclusive", reason=said)
    else:  # said, so a reader sees the verdict rests on a need that was measured
        res["precondition"] = f"the precondition holds: the no-BN arm gains from {over} {gain}"


def sensitivity(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> list[dict]:
    """The claim judged at every setting its kind names (bnlab.analysis.kinds: each setting both
    arms share on the tuning seeds, or each value of a gain's `over`), Holm-adjusted within the
    claim. Whole-grid kinds (max_usable, worst_case) have none: the tuned key is what they measure."""
    rows = []
    for entry in sensitivity_settings(runs, spec, claim):
        if "not_comparable" in entry:
            rows.append({"setting": entry["setting"], "verdict": "not comparable", "p": np.nan, "test": "none",
                         "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "baseline_mean": np.nan,
                         "treatment_mean": np.nan, "n_baseline": 0, "n_treatment": 0, "bound": None,
                         "reason": entry["not_comparable"]})
            continue
        row = {"setting": entry["setting"], **decide(entry["runs"], spec, claim, entry["pv"])}
        if "precondition_values" in entry:
            _precondition(row, claim, entry["precondition_values"])
        rows.append(row)
    apply_holm(rows)
    return rows


def reversed_(r: dict) -> bool:
    """Significantly in the direction opposite to the claim (after Holm when adjusted); an
    equivalence has no direction to reverse."""
    if r.get("margin") is not None or r.get("ni_margin") is not None:
        return False
    p = r.get("p_holm", r.get("p", np.nan))
    return bool(np.isfinite(p) and p < ALPHA and r.get("effect", np.nan) < 0)


def summarize_sensitivity(rows: list[dict], spec: StudySpec) -> str:
    """"holds at …; reversed at …; not supported at …; inconclusive at …": reversed is
    significant the other way after Holm; not supported, an interval below the smallest effect
    that matters without that."""
    if not rows:
        return ""
    groups: dict[str, list[str]] = {}
    # keys with one value in every row (a claim's `where`: dropout 0) say nothing about where it holds
    varying = [k for k in rows[0]["setting"] if len(rows) < 2 or len({str(r["setting"].get(k)) for r in rows}) > 1]
    for r in rows:
        label = ", ".join(f"{k.removeprefix('cfg.').split('.')[-1]} {v:g}" if is_num(v)
                          else f"{k.removeprefix('cfg.').split('.')[-1]}={v}"
                          for k, v in r["setting"].items() if k in varying)
        if r["verdict"] == "not comparable":
            g = "not comparable (an arm did not learn) at"
        elif r.get("margin") is not None:  # an equivalence
            g = {"supported": "equivalent at", "not supported": "differ by more than the margin at"}.get(
                r["verdict"], "inconclusive at")
        elif r["verdict"] == "supported":
            g = "holds at"
        elif reversed_(r):
            g = "reversed at"
        elif r["verdict"] == "not supported":
            g = "not supported at"
        else:
            g = "inconclusive at"
        groups.setdefault(g, []).append(label)
    order = ("holds at", "equivalent at", "reversed at", "not supported at", "differ by more than the margin at",
             "inconclusive at",
             "not comparable (an arm did not learn) at")
    return "; ".join(f"{g} {', '.join(groups[g])}" for g in order if g in groups)


def comparison_text(comparison: Comparison, name=str) -> str:
    """"BN vs no BN" (superiority) or "noisy BN ≈ BN (±0.01)" (equivalence); `name` spells an arm."""
    if comparison.test == "equivalence":
        return f"{name(comparison.treatment)} ≈ {name(comparison.baseline)} (±{comparison.margin:g})"
    if comparison.test == "non_inferiority":
        return f"{name(comparison.treatment)} not worse than {name(comparison.baseline)}"
    return f"{name(comparison.treatment)} vs {name(comparison.baseline)}"


def study_verdicts(runs: pd.DataFrame, spec: StudySpec) -> list[Verdict]:
    """One verdict per claim and comparison. A claim judged on one comparison keeps its own id
    (figures claim_<id>.png); on several, each verdict's id adds the comparison
    (accuracy_noisy_batch_vs_batch)."""
    out = []
    for claim in spec.claims:
        own_id = claim.name
        comparisons = spec.claim_comparisons(claim)
        for comp in comparisons:
            judged = with_(claim, id=own_id if len(comparisons) == 1 else f"{own_id}_{comp.id}",
                           test=comp.test, margin=comp.margin)
            verdict = claim_result(runs, spec.for_comparison(comp), judged)
            verdict.update(claim_id=own_id, family=spec.family_of(claim, comp),
                           dataset=DATASETS.get(spec.dataset, spec.dataset), study=spec.name)
            out.append(verdict)
    return out


def range_over_settings(runs: pd.DataFrame, spec: StudySpec, r: dict) -> list[dict]:
    """A worst-case claim's whole range for each arm: its worst and best setting (mean over
    seeds) and how many other settings tie with each (within 5e-4), so "flat across inits" or
    "struggles somewhere" can be read off, not only the worst. [] for other kinds."""
    if not kind_of(r).ranged:
        return []
    claim = next((c for c in spec.claims if c.name == r["id"]), {})
    runs = finished(where(runs, claim))
    # keys that really vary (a key added later is NaN on older runs: its neutral value, not a setting)
    keys = [c for c in swept_columns(runs) if c not in (spec.arm_col, "cfg.seed")
            and runs[c].dropna().map(repr).nunique() > 1]
    if not keys or r["metric"] not in runs:
        return []
    out = []
    for arm in (r["baseline"], r["treatment"]):
        means = runs[runs[spec.arm_col].astype(str) == arm].groupby(keys, dropna=False)[r["metric"]].mean().dropna()
        if means.empty:
            continue

        def at(value, setting) -> dict:
            setting = setting if isinstance(setting, tuple) else (setting,)
            return {"value": float(value), "setting": dict(zip(keys, setting)),
                    "ties": int(np.isclose(means, value, atol=5e-4).sum()) - 1}
        out.append({"arm": arm, "worst": at(means.min(), means.idxmin()), "best": at(means.max(), means.idxmax())})
    return out


def settings_reading(runs: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """The validation metric per arm and setting on the tuning seeds (mean, 95% CI, outcomes):
    a study that tunes nothing but fixes several settings in advance (santurkar: lr 0.1 and
    0.5) has a row per arm and setting, as one that tunes has per arm and candidate."""
    fixed = sorted({k.removeprefix("cfg.") for f in fixed_settings(runs, spec) for k in f})
    tuning, by = runs[~runs["cfg.seed"].isin(spec.confirm_seeds)], spec if spec.tune else replace(spec, tune=fixed)
    table = setting_table(tuning, by, spec.select_on)
    recalibrated = RECALIBRATED.get(spec.select_on)
    if table.empty or recalibrated not in tuning or tuning[recalibrated].isna().all():
        return table
    # the recalibrated readout beside the running-statistics one (bnlab.recalibration): how far
    # an arm's running statistics lag its weights; an arm without BN has none (NaN)
    recal = setting_table(tuning, by, recalibrated)
    table["recalibrated"] = recal["mean"].to_numpy()
    table["recalibrated − running"] = table["recalibrated"] - table["mean"]
    return table


# a selection metric's recalibrated counterpart, shown beside it where the runs recorded it
RECALIBRATED = {"best/val/acc": "best/recal/val/acc", "best/test/acc": "best/recal/test/acc"}


def normalization_check(runs: pd.DataFrame, spec: StudySpec, results: list) -> list[dict]:
    """"Normalizes the feature vectors to have zero mean and unit variance", checked (a check of
    what the normalization does, not a hypothesis: DESIGN.md, family D): for every arm whose
    runs logged the normalized value (bnlab.activation_stats), its per-unit |mean| and variance
    in train mode (batch statistics) and eval mode (running statistics), mean [95% CI] over the
    seeds and at the setting of the study's first compare verdict that read the arm."""
    if "act_train_norm_var" not in runs:
        return []
    runs = finished(runs)
    out = []
    for arm in spec.arms:
        r = next((r for r in results if r.get("kind") == "compare" and arm in (r["baseline"], r["treatment"])
                  and r.get("seeds")), None)
        if r is None:
            continue
        setting = {k: v for k, v in (r["chosen"].get(arm) or {}).items() if k.startswith("cfg.")}
        sel = arm_runs(runs, spec, arm, setting)
        sel = sel[sel["cfg.seed"].isin(r["seeds"])]
        row = {"arm": arm, "seeds": sorted(int(s) for s in sel["cfg.seed"])}
        for mode in ("train", "eval"):
            for stat in ("norm_mean_abs", "norm_var"):
                values = pd.to_numeric(sel.get(f"act_{mode}_{stat}"), errors="coerce").dropna().tolist()
                row[f"{mode}_{stat}"] = seed_stats(values)
        if row["train_norm_var"]["n"]:
            out.append(row)
    return out


# the ICS measures a study's `ics` claims may use
ICS_METRICS = ("act_in_drift", "grad_ics_l2", "grad_ics_rel", "grad_ics_cos")


def _decided_sign(stats_: dict) -> int:
    """+1 / -1 when the 95% interval lies on one side of 0, 0 when it spans it."""
    lo, hi = stats_.get("ci_low"), stats_.get("ci_high")
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def ics_with_accuracy(runs: pd.DataFrame, spec: StudySpec, results: list[dict]) -> list[dict]:
    """Whether ICS, as each paper measures it, goes with the accuracy benefit: for every arm an
    `ics` claim compares with the baseline, its ICS reduction (the claim's effect, + = less ICS)
    beside its test-accuracy gain over the baseline on the same seeds and settings (paired per
    seed). Per ICS measure: each arm's `gain` (seed_stats), its ICS `verdict`, the two decided
    signs, and the arms that changed both the same way (`agree`), opposite ways (`disagree`)
    or one without the other (`unmatched`)."""
    runs = finished(runs)
    ics = [r for r in results if r["claim"] == "ics" and r["metric"] in ICS_METRICS
           and r["baseline"] == spec.baseline and np.isfinite(r.get("effect", np.nan))]
    if not ics or "best/test/acc" not in runs:
        return []
    out = []
    for metric in dict.fromkeys(r["metric"] for r in ics):
        reading = {"metric": metric, "arms": [], "agree": [], "disagree": [], "unmatched": []}
        for r in (r for r in ics if r["metric"] == metric):
            arm = r["treatment"]

            def accuracy(a):
                setting = {k: v for k, v in (r["chosen"].get(a) or {}).items() if k.startswith("cfg.")}
                sel = arm_runs(runs, spec, a, setting)
                return sel[sel["cfg.seed"].isin(r["seeds"])].groupby("cfg.seed")["best/test/acc"].mean()

            gain = seed_stats((accuracy(arm) - accuracy(spec.baseline)).dropna().tolist())
            a, i = _decided_sign(gain), _decided_sign(r)
            if a and i:
                reading["agree" if a == i else "disagree"].append(arm)
            elif a or i:
                reading["unmatched"].append(arm)
            reading["arms"].append({"arm": arm, "gain": gain, "verdict": r, "accuracy_sign": a, "ics_sign": i})
        out.append(reading)
    return out
