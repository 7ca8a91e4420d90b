"""Which runs, at which setting: the one home of every selection the verdicts, figures and
report make.

- **phases**: the *tuning* runs (every seed not in `confirm_seeds`) choose; the *confirmation*
  runs (`confirm_seeds`) decide (`tuning_runs`, `confirmation_runs`, `phase_of`);
- **chosen settings**: each arm's setting with the best mean selection metric on validation
  data (`setting_table`, `best_settings`; a `gain` claim's chosen value and its reference,
  `gain_choice`/`gain_pools`), and per value of one key (`at_best_of`);
- **grid edges**: a chosen setting at the top or bottom of its grid (`edge_flags`);
- **fixed settings**: the settings a study that tunes nothing draws apart (`fixed_settings`),
  and the runs a reader sees per arm (`decided_runs`);
- the filters written once: `finished` (completed or diverged, bnlab.analysis.frames.FINISHED),
  `arm_runs` (one arm at a setting), `where` (a claim's slice), `usable_runs`.

Hands downstream (kinds, verdicts, views): frames of runs and {arm: {"cfg.<key>": value}}.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from bnlab.analysis.frames import FINISHED, OUTCOMES, swept_columns
from bnlab.analysis.spec import StudySpec, is_num
from bnlab.analysis.stats import seed_stats

def seeds_text(seeds) -> str:
    """Seeds as a reader reads them: "100–104" for a run of three or more, else a list."""
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds)) or "none"


def phase_of(runs: pd.DataFrame, spec: StudySpec) -> pd.Series:
    """"tune" or "confirm" by each run's seed; "none" for a run without one (a damaged run.json)."""
    confirm = set(spec.confirm_seeds)
    return runs["cfg.seed"].map(lambda s: "none" if not (is_num(s) and s == s) else "confirm" if int(s) in confirm else "tune")


def tuning_runs(runs: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    return runs[phase_of(runs, spec) == "tune"] if len(runs) else runs


def confirmation_runs(runs: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    return runs[phase_of(runs, spec) == "confirm"] if len(runs) else runs


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin(FINISHED)]


def arm_runs(runs: pd.DataFrame, spec: StudySpec, arm, setting: dict) -> pd.DataFrame:
    sel = runs[runs[spec.arm_col].astype(str) == str(arm)]
    for k, v in setting.items():
        sel = sel[np.isclose(sel[k].astype(float), float(v))] if is_num(v) else sel[sel[k].astype(str) == str(v)]
    return sel


def where(runs: pd.DataFrame, claim: dict) -> pd.DataFrame:
    """The runs a claim is about: those matching its `where` ({model.name: deep_mlp}: the deep
    net only), all of them when it has none."""
    for key, value in (claim.get("where") or {}).items():
        col = f"cfg.{key}"
        runs = runs[runs[col].astype(str) == str(value)] if col in runs else runs.iloc[0:0]
    return runs


def arm_where(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> pd.DataFrame:
    """The runs a claim lets each arm choose from: an arm named in its `arm_where` ({batch:
    {model.dropout: 0.0}}: BN without dropout) keeps only its runs at those values; the other
    arms keep all theirs."""
    for arm, setting in (claim.get("arm_where") or {}).items():
        mine = runs[spec.arm_col].astype(str) == str(arm)
        keep = arm_runs(runs, spec, arm, {f"cfg.{k}": v for k, v in setting.items()}).index
        runs = runs[~mine | runs.index.isin(keep)]
    return runs


def usable_runs(runs: pd.DataFrame, claim: dict) -> pd.DataFrame:
    """The runs a claim's metric is read from: finished ones; with `only_learned` (probe
    measures such as ICS, meaningless in a net that never trained), only those that learned."""
    fin = finished(runs)
    return fin[fin["outcome"] == "learned"] if claim.get("only_learned") and "outcome" in fin else fin


def is_time_to(metric: str) -> bool:
    """Steps or seconds until a target (steps_to_target, time_to_val_0.97_s, ...)."""
    return metric.startswith(("steps_to_", "time_to_"))


def metric_values(sel: pd.DataFrame, metric: str, spec: StudySpec) -> tuple[pd.Series, pd.Series]:
    """(`metric` per seed, censoring per seed). A run that never reached a target (steps or
    seconds to it) is recorded at its budget, censored +1: the true value is at least that."""
    sel = sel.sort_values("cfg.seed")
    vals = sel[metric].astype(float) if metric in sel else pd.Series(np.nan, index=sel.index)
    cens = pd.Series(0.0, index=sel.index)
    if is_time_to(metric):
        missing = vals.isna()
        cens[missing] = 1.0
        if metric.startswith("steps_to_"):
            vals = vals.fillna(float(spec.max_steps or sel["steps"].astype(float).max()))
        else:
            vals = vals.fillna(sel["train_time_s"].astype(float) if "train_time_s" in sel else np.nan)
    seeds = sel["cfg.seed"].astype(int).tolist()
    return vals.set_axis(seeds), cens.set_axis(seeds)


def setting_table(runs: pd.DataFrame, spec: StudySpec, metric: str, select_on: str | None = None) -> pd.DataFrame:
    """Mean and 95% CI of `metric` over finished runs, with every outcome counted, for each
    (arm, tuned setting); `select_mean` is the mean of the selection metric (`select_on`,
    default the study's), a target never reached counted at the budget."""
    select_on = select_on or spec.select_on
    cols = [spec.arm_col, *[f"cfg.{k}" for k in spec.tune]]
    rows = []
    for key, g in runs.groupby(cols, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        fin = finished(g)
        s = seed_stats(fin[metric].astype(float)) if metric in fin else seed_stats([])
        if is_time_to(select_on):
            v, c = metric_values(fin, select_on, spec) if len(fin) else (pd.Series(dtype=float),) * 2
            # a setting whose runs all missed the target has no speed to rank by (each run's own
            # budget in seconds would decide): no value, so the ranking ends with it and a tie
            # of such settings goes to the study's selection
            sel = seed_stats(v) if len(v) and not (c > 0).all() else seed_stats([])
        else:
            sel = seed_stats(fin[select_on].astype(float)) if select_on in fin else seed_stats([])
        # the study's own selection metric too: the tie-break of a claim's selection
        study_sel = seed_stats(fin[spec.select_on].astype(float)) if spec.select_on in fin else seed_stats([])
        counts = {o: int((g["outcome"] == o).sum()) for o in OUTCOMES} if "outcome" in g else {}
        rows.append({**dict(zip(cols, key)), "runs": len(g), **counts, "select_mean": sel["mean"],
                     "study_select_mean": study_sel["mean"], **s})
    return pd.DataFrame(rows)


def best_settings(runs: pd.DataFrame, spec: StudySpec, claim: dict | None = None) -> dict:
    """For each arm, the tuned setting with the best mean selection metric over the tuning
    runs. {arm: {"cfg.optim.lr": 0.5, ...}}. The metric is the study's `select_on` (highest
    validation accuracy), or a claim's own `select_on` with its `select_direction` (say,
    fewest steps to 97%: each arm at the rate fastest for it). Ties — every rate censored at
    the budget, or two reaching the target at the same evaluation — go to the study's
    selection metric, then to the first in sorted order."""
    tuning = finished(tuning_runs(runs, spec))
    if not spec.tune:
        return {str(arm): {} for arm in spec.arms}
    if tuning.empty:
        return {}
    claim = claim or {}
    tuning = arm_where(tuning, spec, claim)
    table = setting_table(tuning, spec, spec.select_on, claim.get("select_on"))
    lowest = claim.get("select_direction", "higher") == "lower"
    best = {}
    for arm, g in table.groupby(spec.arm_col):
        row = g.sort_values(["select_mean", "study_select_mean"], ascending=[lowest, False], kind="stable").iloc[0]
        best[str(arm)] = {f"cfg.{k}": row[f"cfg.{k}"] for k in spec.tune}
    return best


def edge_flags(runs: pd.DataFrame, spec: StudySpec, best: dict) -> dict:
    """{arm: [text]} for every chosen numeric setting at the top or bottom of its arm's grid."""
    tuning = tuning_runs(runs, spec)
    flags: dict = {}
    for arm, setting in best.items():
        sel = tuning[tuning[spec.arm_col].astype(str) == arm]
        for col, value in setting.items():
            if not is_num(value):
                continue
            grid = sorted(sel[col].dropna().astype(float).unique())
            if len(grid) < 2:
                continue
            if np.isclose(value, grid[-1]):
                flags.setdefault(arm, []).append(f"{col.removeprefix('cfg.')}={value:g} is the top of its grid "
                                                 f"[{grid[0]:g} … {grid[-1]:g}]: widen the grid")
            elif np.isclose(value, grid[0]):
                flags.setdefault(arm, []).append(f"{col.removeprefix('cfg.')}={value:g} is the bottom of its grid "
                                                 f"[{grid[0]:g} … {grid[-1]:g}]: widen the grid")
    return flags


def gain_pools(runs: pd.DataFrame, claim: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(treated, reference) runs of a `gain` claim: `over` away from and at its reference
    value. The treated runs match the claim's `where`; the reference runs its
    `reference_where` when it has one, else its `where` (dropout 0 has no placement: the
    claims on each placement share one set of no-dropout runs)."""
    over, ref = f"cfg.{claim['over']}", float(claim["reference"])
    if over not in runs:
        return runs.iloc[0:0], runs.iloc[0:0]
    treated = where(runs, claim)
    reference = where(runs, {"where": claim.get("reference_where", claim.get("where"))})
    return (treated[~np.isclose(treated[over].astype(float), ref)],
            reference[np.isclose(reference[over].astype(float), ref)])


def _best_setting(table: pd.DataFrame, spec: StudySpec, arm: str) -> dict | None:
    """The arm's row of a setting table with the best mean selection metric (ties: the first
    in sorted order), as {"cfg.<tuned key>": value}; None when the arm has no row."""
    t = table[table[spec.arm_col].astype(str) == arm] if len(table) else table
    if not len(t):
        return None
    row = t.sort_values("select_mean", ascending=False, kind="stable").iloc[0]
    return {f"cfg.{k}": row[f"cfg.{k}"] for k in spec.tune}


def gain_choice(runs: pd.DataFrame, spec: StudySpec, claim: dict, value: float | None = None) -> dict:
    """For a `gain` claim, each arm's chosen setting and its reference setting, chosen on
    validation data from the tuning runs: {arm: {"chosen": {"cfg.model.dropout": 0.2,
    "cfg.optim.lr": 1.0}, "reference": {"cfg.model.dropout": 0.0, "cfg.optim.lr": 2.0}}}.
    The value of `over` is the best one other than the reference (or `value`, for a
    sensitivity row); every other tuned key (the learning rate) is tuned per cell, within
    each value of `over`, so the reference and the chosen value each run at their own best."""
    over = f"cfg.{claim['over']}"
    treated, reference = (setting_table(finished(p), spec, spec.select_on)
                          for p in gain_pools(tuning_runs(runs, spec), claim))
    if value is not None and len(treated):
        treated = treated[np.isclose(treated[over].astype(float), value)]
    choice = {}
    for arm in spec.arms:
        chosen, ref = _best_setting(treated, spec, arm), _best_setting(reference, spec, arm)
        if chosen is not None and ref is not None:
            choice[arm] = {"chosen": chosen, "reference": ref}
    return choice


def _gain_edges(runs: pd.DataFrame, spec: StudySpec, choice: dict, claim: dict) -> dict:
    """edge_flags for the keys a gain claim tunes per cell (the learning rate), at the chosen
    setting and at the reference; the value of `over` itself is the claim's question."""
    over, flags = f"cfg.{claim['over']}", {}
    for part in ("chosen", "reference"):
        tuned = {arm: {k: v for k, v in c[part].items() if k != over} for arm, c in choice.items()}
        for arm, texts in edge_flags(runs, spec, tuned).items():
            flags.setdefault(arm, []).extend(t for t in texts if t not in flags.get(arm, []))
    return flags


def decided_runs(runs: pd.DataFrame, spec: StudySpec) -> tuple[pd.DataFrame, dict, str]:
    """The runs a reader should see for each arm at its chosen setting: the confirmation
    runs when there are any, else the tuning runs."""
    fin = runs[runs.status.isin(FINISHED)]
    best = best_settings(fin, spec)
    conf = confirmation_runs(fin, spec)
    if len(conf) and all(len(arm_runs(conf, spec, a, best.get(a, {}))) for a in spec.arms):
        return conf, best, "confirmation seeds"
    return tuning_runs(fin, spec), best, "tuning seeds"


MAX_FIXED_PANELS = 6


def fixed_settings(runs: pd.DataFrame, spec: StudySpec) -> list[dict]:
    """The settings a study's per-arm figures are drawn at, one figure each. A study that
    tunes (or an ad-hoc folder) draws each arm at its chosen setting: [{}]. A study that fixes
    its settings in advance and sweeps them (santurkar: lr 0.1 and lr 0.5, each a question of
    its own) draws each combination of those keys apart, never averaging over them."""
    if spec.tune or spec.adhoc:
        return [{}]
    fin = tuning_runs(runs[runs.status.isin(FINISHED)], spec)
    keys = [c for c in swept_columns(fin) if c not in (spec.arm_col, "cfg.seed")]
    if not keys:
        return [{}]
    combos = fin[keys].drop_duplicates().sort_values(keys)
    if len(combos) > MAX_FIXED_PANELS:
        return [{}]
    return [{k: _native(v) for k, v in row.items()} for _, row in combos.iterrows()]


def _native(v):
    return v.item() if hasattr(v, "item") else v


def at_best_of(runs: pd.DataFrame, spec: StudySpec, key: str, others: list[str]) -> pd.DataFrame:
    """For each value of `key`, only the runs at the setting of the `others` keys that the
    study's own selection (best_settings: best mean validation accuracy) picks at that value:
    a figure over `key` that does not average over, say, learning rates nobody would choose."""
    within = replace(spec, tune=others)
    keep = []
    for x, g in runs.groupby(f"cfg.{key}", sort=True):
        for arm, setting in best_settings(g, within).items():
            keep.append(arm_runs(g, spec, arm, setting))
    return pd.concat(keep) if keep else runs.iloc[0:0]
