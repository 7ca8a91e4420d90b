"""From a study's runs to numbers a reader can trust: seeds aggregated with intervals, each
arm at its own best setting (chosen on validation data), and a verdict for each claim.

A study frame is a pandas DataFrame with one row per run: `cfg.*` config columns, `status`,
the summary metrics, derived metrics (`act_in_drift`) and a `curves` column (a dict of
lists: the logged curves). It comes from the run store (`frame_from_store`) or from the
committed CSV (`frame_from_csv`); both give the same columns, so every figure and verdict
can be rebuilt from either.

The verdict rule (VERDICT_RULE) is stated once here and quoted in the report.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from scipy import stats

from bnlab.resolvers import EXPERIMENTS_DIR, REPO_ROOT
from bnlab.store import RUN_FILE, load_runs, read_json, read_metrics

FINISHED = ("completed", "diverged")
MIN_SEEDS = 5
ALPHA = 0.05
VERDICT_RULE = (
    f"For each claim the per-seed values of the claim's metric are compared between the BN arm "
    f"and the no-BN arm (each at its own best setting, chosen on validation accuracy, unless the "
    f"claim says otherwise). The effect is the difference of means, signed so that a positive "
    f"effect is in the direction the claim predicts, with a 95% Welch confidence interval and a "
    f"two-sided Welch t-test (α = {ALPHA}); Hedges' g gives its size in standard deviations. "
    f"**supported**: the interval lies above 0 (p < {ALPHA}) and the mean effect is at least the "
    f"smallest effect that matters (set per claim). **not supported**: the interval lies below "
    f"that smallest effect, i.e. the data rule out an effect that matters (this includes "
    f"significant effects in the opposite direction). **inconclusive**: anything else, or fewer "
    f"than {MIN_SEEDS} seeds in an arm."
)
# Curves kept per run in the frame and the CSV: evaluation records and the train-loss trace.
EVAL_KEYS = ("step", "samples", "time_s", "val/acc", "val/loss", "test/acc", "test/loss")


# ------------------------------------------------------------------ loading

def _round(v, digits=5):
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.{digits}g}")
    return None if isinstance(v, float) else v


def curves_of(metrics: pd.DataFrame) -> dict:
    """The curves of one run as plain lists (JSON-able): evaluations and train loss."""
    if metrics.empty:
        return {}
    out = {}
    ev = metrics[metrics["val/acc"].notna()] if "val/acc" in metrics else metrics.iloc[0:0]
    for k in [*EVAL_KEYS, *sorted(c for c in metrics if c.startswith("probe/"))]:
        if k in ev:
            out[f"eval:{k}"] = [_round(v) for v in ev[k].tolist()]
    tr = metrics[metrics["train/loss"].notna()] if "train/loss" in metrics else metrics.iloc[0:0]
    for k in ("step", "time_s", "train/loss", "train/acc"):
        if k in tr:
            out[f"train:{k}"] = [_round(v) for v in tr[k].tolist()]
    return out


def act_in_drift(curves: dict) -> float | None:
    """How far the activation-input distribution moves during training (Ioffe Fig. 1b,c):
    the mean absolute change of each probed unit's median between consecutive evaluations,
    divided by that unit's mean 15-85th percentile width; averaged over units."""
    units = sorted({k.split("/")[2] for k in curves if k.startswith("eval:probe/act_in/")})
    drifts = []
    for u in units:
        p15, p50, p85 = (np.array(curves.get(f"eval:probe/act_in/{u}/p{p}", []), dtype=float)
                         for p in (15, 50, 85))
        if len(p50) < 2 or not np.all(np.isfinite(p50)):
            continue
        width = np.mean(p85 - p15)
        if width > 0:
            drifts.append(np.mean(np.abs(np.diff(p50))) / width)
    return float(np.mean(drifts)) if drifts else None


def grad_ics(curves: dict, measure: str = "rel") -> float | None:
    """Santurkar et al.'s ICS summarised per run: the mean over evaluations and layers of the
    probe's gradient change (`rel`: ||G - G'|| / ||G||, or `cos`)."""
    series = [np.asarray(v, dtype=float) for k, v in curves.items()
              if k.startswith("eval:probe/grad_ics/") and k.endswith(f"/{measure}")]
    values = np.concatenate(series) if series else np.array([])
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


DERIVED = {"act_in_drift": act_in_drift, "grad_ics_rel": grad_ics,
           "grad_ics_cos": lambda c: grad_ics(c, "cos")}


def frame_from_store(root: str | Path) -> pd.DataFrame:
    """Every run under `root`, with curves, derived metrics and the hardware it ran on."""
    runs = load_runs(root)
    if runs.empty:
        return runs
    curves, hw = [], []
    for path in runs["path"]:
        c = curves_of(read_metrics(path))
        curves.append(c)
        env = (read_json(Path(path) / RUN_FILE) or {}).get("env", {})
        hw.append({"env.device": env.get("device"), "env.device_name": env.get("device_name"),
                   "env.torch": env.get("torch"), "env.torch_threads": env.get("torch_threads")})
    runs = pd.concat([runs.reset_index(drop=True), pd.DataFrame(hw)], axis=1)
    runs["curves"] = curves
    for name, fn in DERIVED.items():
        runs[name] = [fn(c) for c in curves]
    runs["run"] = [_relative(p) for p in runs["path"]]
    return runs


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def write_csv(runs: pd.DataFrame, path: Path) -> None:
    """The study's aggregate CSV: one row per run, curves as a JSON column."""
    keep = [c for c in runs.columns if c not in ("path", "curves")]
    out = runs[keep].copy()
    out["curves"] = [json.dumps(c, separators=(",", ":")) for c in runs["curves"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)


def frame_from_csv(path: str | Path) -> pd.DataFrame:
    runs = pd.read_csv(path)
    runs["curves"] = [json.loads(c) if isinstance(c, str) else {} for c in runs["curves"]]
    runs["path"] = runs["run"]
    return runs


# ------------------------------------------------------------------ study specs

@dataclass
class StudySpec:
    name: str
    description: str
    claims: list[dict]
    arm_key: str = "model.norm"
    baseline: str = "none"
    treatment: str = "batch"
    tune: list[str] = field(default_factory=list)
    select_on: str = "best/val/acc"
    max_steps: int | None = None

    @property
    def arm_col(self) -> str:
        return f"cfg.{self.arm_key}"


def load_spec(name: str, experiments_dir: Path = EXPERIMENTS_DIR) -> StudySpec:
    """The analysis block of experiments/<name>.yaml."""
    raw = OmegaConf.to_container(OmegaConf.load(experiments_dir / f"{name}.yaml"))
    a = raw.get("analysis") or {}
    return StudySpec(name=raw.get("name", name), description=raw.get("description", ""),
                     claims=a.get("claims", []), arm_key=a.get("arm_key", "model.norm"),
                     baseline=str(a.get("baseline", "none")), treatment=str(a.get("treatment", "batch")),
                     tune=list(a.get("tune", [])), select_on=a.get("select_on", "best/val/acc"),
                     max_steps=(raw.get("trainer") or {}).get("max_steps"))


def current_runs(runs: pd.DataFrame, name: str) -> tuple[pd.DataFrame, dict]:
    """The runs that belong to the study as experiments/<name>.yaml defines it *now*.

    A study folder keeps every run ever made for it, including runs of an earlier
    definition (say, a different step budget) or quick checks launched with extra
    overrides. Mixing them would average different experiments, so runs whose config
    differs from the current study on any key the study does not sweep are left out
    (and counted)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from bnlab.resolvers import CONF_DIR
    from bnlab.store import NON_SCIENTIFIC_KEYS

    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="analysis"):
        cfg = compose("config", overrides=[f"experiments={name}"], return_hydra_config=True)
    swept = {f"cfg.{k}" for k in (OmegaConf.select(cfg, "hydra.sweeper.params") or {})}
    with open_dict(cfg):
        del cfg["hydra"]
    current = pd.json_normalize(OmegaConf.to_container(cfg, resolve=True), sep=".").iloc[0]
    current.index = [f"cfg.{k}" for k in current.index]
    skip = tuple(f"cfg.{k}" for k in NON_SCIENTIFIC_KEYS)
    keys = [k for k in current.index if k in runs and k not in swept and not k.startswith(skip)]
    stale = pd.Series(False, index=runs.index)
    differing: dict = {}
    for k in keys:
        want = current[k]
        diff = runs[k].map(lambda v: not _same(v, want))
        if diff.any():
            differing[k.removeprefix("cfg.")] = sorted({repr(v) for v in runs.loc[diff, k]})[:3]
        stale |= diff
    return runs[~stale].reset_index(drop=True), {"stale": int(stale.sum()), "differing": differing}


def _same(a, b) -> bool:
    if _is_num(a) and _is_num(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b or (a is None and isinstance(b, float) and math.isnan(b))


def swept_columns(runs: pd.DataFrame) -> list[str]:
    """`cfg.*` columns that take more than one value across the runs, leaving out keys that
    say where or how a run was made rather than what it computed (NON_SCIENTIFIC_KEYS)."""
    from bnlab.store import NON_SCIENTIFIC_KEYS

    skip = tuple(f"cfg.{k}" for k in NON_SCIENTIFIC_KEYS)
    return [c for c in runs.columns
            if c.startswith("cfg.") and not c.startswith(skip) and runs[c].map(repr).nunique() > 1]


def list_studies(experiments_dir: Path = EXPERIMENTS_DIR) -> list[str]:
    return sorted(p.stem for p in experiments_dir.glob("*.yaml"))


# ------------------------------------------------------------------ statistics

def seed_stats(values) -> dict:
    """n, mean, std and the 95% t-interval of the mean."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": np.nan, "std": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    mean = v.mean()
    std = v.std(ddof=1) if n > 1 else np.nan
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n) if n > 1 else np.nan
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def welch(baseline, treatment, direction: str, min_effect: float, min_seeds: int = MIN_SEEDS) -> dict:
    """Effect of treatment over baseline (signed: positive = the claimed direction), its 95%
    Welch interval, Welch's t-test, Hedges' g, and the verdict under VERDICT_RULE."""
    b = np.asarray([x for x in baseline if x is not None and np.isfinite(x)], dtype=float)
    t = np.asarray([x for x in treatment if x is not None and np.isfinite(x)], dtype=float)
    sign = 1.0 if direction == "higher" else -1.0
    out = {"n_baseline": len(b), "n_treatment": len(t), "baseline_mean": b.mean() if len(b) else np.nan,
           "treatment_mean": t.mean() if len(t) else np.nan, "effect": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "p": np.nan, "hedges_g": np.nan, "min_effect": min_effect}
    if len(b) < 2 or len(t) < 2:
        out.update(verdict="inconclusive", reason=f"fewer than 2 seeds in an arm")
        return out
    diff = sign * (t.mean() - b.mean())
    vb, vt = b.var(ddof=1) / len(b), t.var(ddof=1) / len(t)
    se = math.sqrt(vb + vt)
    if se == 0:  # identical values within each arm: the difference is exact
        lo = hi = diff
        p = 0.0 if diff != 0 else 1.0
    else:
        df = (vb + vt) ** 2 / (vb ** 2 / (len(b) - 1) + vt ** 2 / (len(t) - 1))
        half = stats.t.ppf(0.975, df) * se
        lo, hi = diff - half, diff + half
        with warnings.catch_warnings():  # nearly identical seeds: scipy warns, the p-value stands
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(t, b, equal_var=False).pvalue)
    pooled = math.sqrt(((len(b) - 1) * b.var(ddof=1) + (len(t) - 1) * t.var(ddof=1)) / (len(b) + len(t) - 2))
    g = diff / pooled * (1 - 3 / (4 * (len(b) + len(t)) - 9)) if pooled > 0 else np.nan
    out.update(effect=diff, ci_low=lo, ci_high=hi, p=p, hedges_g=g)
    if min(len(b), len(t)) < min_seeds:
        out.update(verdict="inconclusive", reason=f"fewer than {min_seeds} seeds in an arm")
    elif lo > 0 and diff >= min_effect:
        out.update(verdict="supported", reason="interval above 0 and mean effect at least the smallest that matters")
    elif hi < min_effect:
        out.update(verdict="not supported",
                   reason="interval below the smallest effect that matters" + (" (opposite direction)" if hi < 0 else ""))
    else:
        out.update(verdict="inconclusive", reason="interval too wide to decide")
    return out


# ------------------------------------------------------------------ per-arm selection

def finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin(FINISHED)]


def setting_table(runs: pd.DataFrame, spec: StudySpec, metric: str) -> pd.DataFrame:
    """Mean ± CI of `metric` and divergence counts for every (arm, tuned setting)."""
    cols = [spec.arm_col, *[f"cfg.{k}" for k in spec.tune]]
    rows = []
    for key, g in runs.groupby(cols, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        fin = g[g.status.isin(FINISHED)]
        s = seed_stats(fin[metric].astype(float)) if metric in fin else seed_stats([])
        sel = seed_stats(fin[spec.select_on].astype(float)) if spec.select_on in fin else seed_stats([])
        rows.append({**dict(zip(cols, key)), "runs": len(g), "finished": len(fin),
                     "diverged": int((g.status == "diverged").sum()),
                     "divergence_rate": float((g.status == "diverged").mean()),
                     f"select_mean": sel["mean"], **{f"{k}": v for k, v in s.items()}})
    return pd.DataFrame(rows)


def best_settings(runs: pd.DataFrame, spec: StudySpec) -> dict:
    """For each arm, the tuned setting with the highest mean validation metric (ties: the
    first in sorted order). {arm: {"cfg.optim.lr": 0.5, ...}}."""
    if not spec.tune:
        return {arm: {} for arm in runs[spec.arm_col].unique()}
    table = setting_table(finished(runs), spec, spec.select_on)
    best = {}
    for arm, g in table.groupby(spec.arm_col):
        row = g.sort_values("select_mean", ascending=False, kind="stable").iloc[0]
        best[arm] = {f"cfg.{k}": row[f"cfg.{k}"] for k in spec.tune}
    return best


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def arm_runs(runs: pd.DataFrame, spec: StudySpec, arm: str, setting: dict) -> pd.DataFrame:
    sel = runs[runs[spec.arm_col].astype(str) == str(arm)]
    for k, v in setting.items():
        sel = sel[np.isclose(sel[k].astype(float), float(v))] if _is_num(v) else sel[sel[k] == v]
    return sel


# ------------------------------------------------------------------ claims

def metric_values(sel: pd.DataFrame, metric: str, spec: StudySpec) -> pd.Series:
    """`metric` of each run; a run that never reached a `*_to_target` target is counted at
    the study's budget (censored: this understates the gap for the slower arm)."""
    vals = sel[metric].astype(float)
    if metric == "steps_to_target":
        vals = vals.fillna(float(spec.max_steps or sel["steps"].astype(float).max()))
    elif metric.endswith("_to_target"):
        vals = vals.fillna(sel["train_time_s"].astype(float) if "train_time_s" in sel else np.nan)
    return vals.reset_index(drop=True)


def per_seed_values(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> dict:
    """{arm: Series of one value per seed} for the claim's `kind`, plus what was chosen."""
    fin = finished(runs)
    kind = claim.get("kind", "compare")
    arms = (spec.baseline, spec.treatment)
    out, chosen = {}, {}
    if kind == "compare":
        if claim.get("matched"):
            setting = {f"cfg.{k}": v for k, v in claim["matched"].items()}
            settings = {arm: setting for arm in arms}
        else:
            settings = {str(k): v for k, v in best_settings(runs, spec).items()}
        metric = claim["metric"]
        for arm in arms:
            sel = arm_runs(fin, spec, arm, settings.get(arm, {}))
            vals = metric_values(sel, metric, spec).set_axis(sel["cfg.seed"].tolist())
            if metric.endswith("_to_target"):
                chosen[f"{arm} censored"] = int(sel[metric].isna().sum())
            out[arm], chosen[arm] = vals, settings.get(arm, {})
    elif kind == "max_usable":
        over, thr = f"cfg.{claim['over']}", claim["threshold"]
        grid = sorted(runs[over].astype(float).unique())
        floor = math.log2(grid[0]) - (math.log2(grid[1]) - math.log2(grid[0]) if len(grid) > 1 else 1)
        for arm in arms:
            sel = runs[runs[spec.arm_col].astype(str) == arm]
            vals = {}
            for seed, g in sel.groupby("cfg.seed"):
                ok = g[(g.status == "completed") & (g[spec.select_on].astype(float) >= thr)]
                vals[seed] = math.log2(ok[over].astype(float).max()) if len(ok) else floor
            out[arm] = pd.Series(vals, dtype=float)
            chosen[arm] = {"unit": f"log2 {claim['over']}", "threshold": thr}
    elif kind == "worst_case":
        over, metric = f"cfg.{claim['over']}", claim["metric"]
        for arm in arms:
            sel = fin[fin[spec.arm_col].astype(str) == arm]
            out[arm] = sel.groupby("cfg.seed")[metric].min().astype(float)
            chosen[arm] = {"over": sorted(sel[over].unique().tolist())}
    elif kind == "gain":
        over, metric, ref = f"cfg.{claim['over']}", claim["metric"], float(claim["reference"])
        table = setting_table(fin, spec, spec.select_on)
        for arm in arms:
            t = table[(table[spec.arm_col].astype(str) == arm) & ~np.isclose(table[over].astype(float), ref)]
            best = float(t.sort_values("select_mean", ascending=False, kind="stable").iloc[0][over])
            sel = fin[fin[spec.arm_col].astype(str) == arm]
            at_best = sel[np.isclose(sel[over].astype(float), best)].set_index("cfg.seed")[metric]
            at_ref = sel[np.isclose(sel[over].astype(float), ref)].set_index("cfg.seed")[metric]
            out[arm] = (at_best - at_ref).dropna().astype(float)
            chosen[arm] = {over: best, "reference": ref}
    else:
        raise ValueError(f"unknown analysis kind {kind!r}")
    return {"values": out, "chosen": chosen}


def claim_result(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> dict:
    pv = per_seed_values(runs, spec, claim)
    b, t = pv["values"][spec.baseline], pv["values"][spec.treatment]
    res = welch(b.tolist(), t.tolist(), claim.get("direction", "higher"), float(claim.get("min_effect", 0)))
    if claim.get("precondition") == "baseline_benefits" and res["verdict"] != "inconclusive":
        # "BN reduces the need for X" presumes the no-BN arm needs X: its gain must be > 0
        base = seed_stats(b.tolist())
        if not base["ci_low"] > 0:
            res.update(verdict="inconclusive",
                       reason=f"the precondition fails: the no-BN arm gains nothing measurable from "
                              f"{claim.get('over', 'it')} here ({base['mean']:+.4g} "
                              f"[{base['ci_low']:+.4g}, {base['ci_high']:+.4g}]), so there is no need "
                              f"for BN to reduce")
    res.update(claim=claim["claim"], id=claim.get("id", claim["claim"]), kind=claim.get("kind", "compare"), metric=claim.get("metric", claim.get("over")),
               note=claim.get("note", ""),
               direction=claim.get("direction", "higher"), chosen=pv["chosen"],
               literature=claim.get("literature", ""), url=claim.get("url", ""),
               baseline_values=b.tolist(), treatment_values=t.tolist())
    return res


def matched_table(runs: pd.DataFrame, spec: StudySpec, metric: str) -> pd.DataFrame:
    """Both arms at every shared setting of the tuned keys: means, difference, Welch p."""
    if not spec.tune:
        return pd.DataFrame()
    fin = finished(runs)
    cols = [f"cfg.{k}" for k in spec.tune]
    rows = []
    for key, g in fin.groupby(cols, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        b = metric_values(g[g[spec.arm_col].astype(str) == spec.baseline], metric, spec)
        t = metric_values(g[g[spec.arm_col].astype(str) == spec.treatment], metric, spec)
        w = welch(b.tolist(), t.tolist(), "higher", 0.0)
        rows.append({**dict(zip(cols, key)), f"{spec.baseline}": w["baseline_mean"],
                     f"{spec.treatment}": w["treatment_mean"], "difference": w["effect"],
                     "ci_low": w["ci_low"], "ci_high": w["ci_high"], "p": w["p"],
                     "n": f"{w['n_baseline']}/{w['n_treatment']}"})
    return pd.DataFrame(rows)


def budget(runs: pd.DataFrame) -> dict:
    """What produced a study's numbers: steps, seeds, data, hardware."""
    fin = finished(runs)
    def uniq(col):
        return sorted({str(v) for v in runs[col].dropna()}) if col in runs else []
    return {
        "runs": len(runs), "finished": len(fin), "diverged": int((runs.status == "diverged").sum()),
        "incomplete": int((~runs.status.isin(FINISHED)).sum()),
        "seeds": int(runs["cfg.seed"].nunique()) if "cfg.seed" in runs else 0,
        "max_steps": uniq("cfg.trainer.max_steps"), "batch_size": uniq("cfg.optim.batch_size"),
        "dataset": uniq("cfg.data.name"), "train_subset": uniq("cfg.data.train_subset"),
        "device": uniq("env.device_name") or uniq("env.device"), "threads": uniq("env.torch_threads"),
        "torch": uniq("env.torch"),
        "step_time_ms": {str(a): float(g["step_time_ms"].astype(float).mean())
                         for a, g in fin.groupby("cfg.model.norm")} if "step_time_ms" in fin else {},
    }
