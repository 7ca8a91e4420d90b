"""Study specs -> per-seed values -> verdicts, with the sensitivity of each verdict.

A study file's `analysis` block names the arm key (the scientific variable, `model.norm`),
the nuisance keys tuned per arm (`tune`), the confirmation seeds and the claims. The design:
- **tune, then confirm**: each arm's setting is chosen on validation data (`select_on`) from
  the *tuning* runs (every seed not in `confirm_seeds`); the chosen settings run again on the
  confirmation seeds, and a claim that depends on a choice is decided by those alone;
- **sensitivity**: every such claim is also judged at each setting both arms share (matched
  learning rates), on the tuning seeds, Holm-adjusted within the claim;
- **edges**: a chosen setting at the edge of its grid is flagged — it is not shown to be best.

Kinds of claim: `compare` (a metric per seed at each arm's chosen setting, or at a stated
`matched` setting), `max_usable` (per seed, log2 of the largest value of `over` whose run
learned and reached `threshold` on the selection metric; censored at the grid's ends),
`worst_case` (per seed, the worst metric over `over`), `gain` (per seed, what the chosen value
of `over` adds over its `reference` value).

**Arms and comparisons.** A study has any number of arms (values of the arm key); each claim is
judged on one or more *comparisons*, a baseline arm against a treatment arm:
- `superiority` (the default): the treatment beats the baseline in the claim's direction by at
  least `min_effect` (none → batch: "BN helps");
- `equivalence`: the two arms differ by less than a margin stated in advance (batch →
  noisy_batch: "noisy BN trains about as well as BN", Santurkar et al.): supported when the 95%
  interval of the difference lies inside ±margin (bnlab.analysis.stats.equivalence).
The study's `analysis.comparisons` list applies to every claim; a claim may list its own. A
study with one comparison may still name it with `baseline:`/`treatment:`. Every comparison of
every claim is one verdict in the report's Holm family.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from bnlab.analysis.frames import FINISHED, OUTCOMES, swept_columns
from bnlab.resolvers import EXPERIMENTS_DIR
from bnlab.errors import ConfigError
from bnlab.analysis.stats import ALPHA, apply_holm, compare, effect_text, equivalence, seed_stats

TESTS = ("superiority", "equivalence")


@dataclass(frozen=True)
class Comparison:
    """One question a claim asks of two arms: does `treatment` beat `baseline` (superiority),
    or do they differ by less than `margin` (equivalence; the margin is on the claim's metric,
    taken from the claim's `equivalence_margin` when the comparison names none)."""
    baseline: str
    treatment: str
    test: str = "superiority"
    margin: float | None = None

    @property
    def id(self) -> str:
        return f"{self.treatment}_vs_{self.baseline}"


@dataclass
class StudySpec:
    """A study's analysis. `arms` are every arm in the study, the baseline first; `baseline`
    and `treatment` are the two arms of the comparison at hand (`for_comparison`)."""
    name: str
    description: str
    claims: list[dict]
    arm_key: str = "model.norm"
    baseline: str = "none"
    treatment: str = "batch"
    tune: list[str] = field(default_factory=list)
    select_on: str = "best/val/acc"
    max_steps: int | None = None
    confirm_seeds: list[int] = field(default_factory=list)
    adhoc: bool = False  # made up from a folder of runs, not read from experiments/
    comparisons: list[Comparison] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # study-specific figures (ioffe_fig1)
    profile: str | None = None  # the budget profile read (profiles.<profile> in the study file)
    sweeps: list[list[str]] = field(default_factory=list)  # extra grids (override lists) of phase 1
    seeds: list[int] = field(default_factory=list)  # the profile's grid seeds, when it names them
    # the profile's smaller grid, when it names one (quick: fewer learning rates), as overrides
    grid: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.comparisons:
            self.comparisons = [Comparison(self.baseline, self.treatment)]
        if not self.arms:
            seen = [a for c in self.comparisons for a in (c.baseline, c.treatment)]
            seen += [a for c in self.claims for cc in c.get("comparisons") or [] for a in
                     (str(cc.get("baseline")), str(cc.get("treatment")))]
            self.arms = list(dict.fromkeys(seen))

    @property
    def arm_col(self) -> str:
        return f"cfg.{self.arm_key}"

    @property
    def pair(self) -> tuple[str, str]:
        """The comparison at hand: (baseline, treatment)."""
        return (self.baseline, self.treatment)

    def for_comparison(self, comparison: Comparison) -> "StudySpec":
        return replace(self, baseline=comparison.baseline, treatment=comparison.treatment)

    def claim_comparisons(self, claim: dict) -> list[Comparison]:
        """The comparisons a claim is judged on: its own list, else the study's (an
        equivalence taking the claim's `equivalence_margin` when it names no margin)."""
        cid = claim.get("id", claim.get("claim"))
        own = claim.get("comparisons")
        if own:
            return [_comparison(c, f"analysis.claims[{cid}].comparisons[{i}]", claim) for i, c in enumerate(own)]
        out = []
        for c in self.comparisons:
            margin = c.margin if c.margin is not None else claim.get("equivalence_margin")
            if c.test == "equivalence":
                _check_margin(margin, f"analysis.claims[{cid}].equivalence_margin", c)
            out.append(replace(c, margin=float(margin) if c.test == "equivalence" else None))
        return out

    def needs_confirmation(self, claim: dict) -> bool:
        """A claim decided at a setting chosen from the data (not a whole-grid measure, not a
        pre-specified setting) must be confirmed on fresh seeds."""
        kind = claim.get("kind", "compare")
        return (kind == "compare" and not claim.get("matched") and bool(self.tune)) or kind == "gain"


def list_studies(experiments_dir: Path = EXPERIMENTS_DIR) -> list[str]:
    return sorted(p.stem for p in experiments_dir.glob("*.yaml"))


def _check_margin(margin, key: str, comparison) -> None:
    if not (isinstance(margin, (int, float)) and not isinstance(margin, bool) and margin > 0):
        raise ConfigError(key, f"got {margin!r}; the equivalence of {comparison.treatment} and "
                               f"{comparison.baseline} needs a margin > 0 on the claim's metric (margin: on "
                               f"the comparison or equivalence_margin: on the claim)")


def _comparison(raw, key: str, claim: dict | None = None) -> Comparison:
    """A comparison from a study file, checked: both arms named, a known test; within a claim,
    an equivalence must have a positive margin (its own `margin`, else the claim's
    `equivalence_margin`)."""
    if not isinstance(raw, dict) or "baseline" not in raw or "treatment" not in raw:
        raise ConfigError(key, f"got {raw!r}; each comparison needs baseline: and treatment: "
                               f"(and optionally test: {'|'.join(TESTS)}, margin:)")
    test = raw.get("test", "superiority")
    if test not in TESTS:
        raise ConfigError(f"{key}.test", f"got {test!r}; allowed: {', '.join(TESTS)}")
    comparison = Comparison(str(raw["baseline"]), str(raw["treatment"]), test)
    if test != "equivalence":
        return comparison
    margin = raw.get("margin", (claim or {}).get("equivalence_margin"))
    if margin is not None or claim is not None:
        _check_margin(margin, f"{key}.margin", comparison)
    return replace(comparison, margin=None if margin is None else float(margin))


def _override_value(v) -> str:
    """A study file's value as a command-line override: null, lists joined by commas."""
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return ",".join(_override_value(x) for x in v)
    return str(v)


def profiles_of(raw: dict) -> dict:
    """A study file's budget profiles ({name: settings}); {} for a study with none."""
    return dict(raw.get("profiles") or {})


def chosen_profile(raw: dict, profile: str | None) -> str | None:
    """The profile a study is read under: the one asked for, else the file's default; None
    for a study without profiles. A name the study does not define is a ConfigError."""
    profiles = profiles_of(raw)
    if not profiles:
        return None
    chosen = profile or raw.get("profile")
    if chosen not in profiles:
        raise ConfigError("profile", f"got {chosen!r}; allowed: {', '.join(map(str, profiles))}")
    return str(chosen)


# The claims a study may test (`claim:` in analysis.claims), in the report's order, with its titles
CLAIMS = {
    "ics": "1. BN reduces internal covariate shift",
    "speed": "2. Training is faster (fewer steps), although each step costs more",
    "accuracy": "3. Accuracy is higher",
    "lr": "4. Higher learning rates can be used",
    "dropout": "5. BN regularizes and reduces the need for dropout",
    "init": "6. BN makes training robust to poor weight initialization",
    # not one of the benefits claimed for BN: Santurkar et al.'s explanation of them
    "smoothness": "7. (Santurkar et al.'s mechanism) BN makes the loss landscape smoother",
}


def load_spec(name: str, experiments_dir: Path = EXPERIMENTS_DIR, profile: str | None = None) -> StudySpec:
    """The analysis block of experiments/<name>.yaml, checked (ConfigError names the key),
    under a budget profile when the study has them (profiles.<p>: max_steps, seeds,
    confirm_seeds, a smaller grid and its own extra grids of that budget)."""
    raw = OmegaConf.to_container(OmegaConf.load(experiments_dir / f"{name}.yaml"))
    a = raw.get("analysis") or {}
    chosen = chosen_profile(raw, profile)
    budget = profiles_of(raw).get(chosen, {}) if chosen else {}
    if "comparisons" in a:
        if "baseline" in a or "treatment" in a:
            raise ConfigError("analysis.comparisons", "give either comparisons: or baseline:/treatment:, not both")
        comparisons = [_comparison(c, f"analysis.comparisons[{i}]") for i, c in enumerate(a["comparisons"] or [])]
        if not comparisons:
            raise ConfigError("analysis.comparisons", "got an empty list; name at least one comparison")
    else:
        comparisons = [Comparison(str(a.get("baseline", "none")), str(a.get("treatment", "batch")))]
    arm_key = a.get("arm_key", "model.norm")
    # every arm the study sweeps is drawn, compared or not (baseline first)
    swept = (((raw.get("hydra") or {}).get("sweeper") or {}).get("params") or {}).get(arm_key, "")
    swept = [str(x) for x in swept] if isinstance(swept, list) else [
        x.strip() for x in str(swept).split(",") if x.strip() and not any(ch in x for ch in "()[]")]
    arms = [str(x) for x in a.get("arms", [])] or list(dict.fromkeys(
        [comparisons[0].baseline] + [x for c in comparisons for x in (c.baseline, c.treatment)] + swept))
    spec = StudySpec(name=raw.get("name", name), description=raw.get("description", ""),
                     claims=a.get("claims", []), arm_key=arm_key,
                     baseline=comparisons[0].baseline, treatment=comparisons[0].treatment,
                     tune=list(a.get("tune", [])), select_on=a.get("select_on", "best/val/acc"),
                     max_steps=budget.get("max_steps", (raw.get("trainer") or {}).get("max_steps")),
                     confirm_seeds=[int(s) for s in budget.get("confirm_seeds", a.get("confirm_seeds", []))],
                     comparisons=comparisons, arms=arms, figures=[str(f) for f in a.get("figures", [])],
                     profile=chosen, seeds=[int(x) for x in budget.get("seeds", [])],
                     grid=[f"{k}={_override_value(v)}" for k, v in (budget.get("grid") or {}).items()],
                     # a profile may name its own extra grids (quick: fewer), replacing the study's
                     sweeps=[[f"{k}={_override_value(v)}" for k, v in extra.items()]
                             for extra in (budget["sweeps"] if "sweeps" in budget else raw.get("sweeps")) or []])
    for claim in spec.claims:  # every comparison of every claim checked now, before any analysis
        if claim.get("claim") not in CLAIMS:
            raise ConfigError(f"analysis.claims[{claim.get('id', claim.get('claim'))}].claim",
                              f"got {claim.get('claim')!r}; allowed: {', '.join(CLAIMS)}")
        spec.claim_comparisons(claim)
        _check_gain(claim, spec)
    return spec


def _check_gain(claim: dict, spec: StudySpec) -> None:
    """A gain claim names a tuned key `over` and its `reference` value; `reference_where`
    (a mapping of config keys) belongs to gain claims only."""
    cid = claim.get("id", claim.get("claim"))
    if claim.get("kind") != "gain":
        if "reference_where" in claim:
            raise ConfigError(f"analysis.claims[{cid}].reference_where", "only a kind: gain claim has a reference")
        return
    if claim.get("over") not in spec.tune:
        raise ConfigError(f"analysis.claims[{cid}].over", f"got {claim.get('over')!r}; must be one of the "
                                                          f"study's tuned keys (analysis.tune: {spec.tune})")
    if not is_num(claim.get("reference")):
        raise ConfigError(f"analysis.claims[{cid}].reference", f"got {claim.get('reference')!r}; must be a number "
                                                               f"(the value of {claim['over']} the gain is measured from)")
    for key in ("where", "reference_where"):
        if claim.get(key) is not None and not isinstance(claim[key], dict):
            raise ConfigError(f"analysis.claims[{cid}].{key}", f"got {claim[key]!r}; must be a mapping "
                                                               f"of config keys to values")


def adhoc_spec(runs: pd.DataFrame, name: str) -> StudySpec:
    """A spec for runs launched ad hoc (no study file): the arm key is `model.norm` when it
    was swept, else the first swept key; the other swept keys (seed aside) are tuned per
    arm. No claims: figures and tables only."""
    swept = [c.removeprefix("cfg.") for c in swept_columns(runs) if c != "cfg.seed"]
    arm_key = "model.norm" if "model.norm" in swept or not swept else swept[0]
    col = f"cfg.{arm_key}"
    values = sorted({str(v) for v in runs[col].dropna()}, key=lambda v: (v != "none", v)) if col in runs else []
    baseline = values[0] if values else "none"
    treatment = values[1] if len(values) > 1 else baseline
    comparisons = [Comparison(baseline, v) for v in values[1:]] or [Comparison(baseline, treatment)]
    return StudySpec(name=name, description=f"runs under {name}, launched ad hoc", claims=[],
                     arm_key=arm_key, baseline=baseline, treatment=treatment, comparisons=comparisons,
                     arms=values or [baseline],
                     tune=[k for k in swept if k != arm_key], adhoc=True,
                     max_steps=int(runs["cfg.trainer.max_steps"].max()) if "cfg.trainer.max_steps" in runs else None)


def spec_for_runs(runs: pd.DataFrame, fallback_name: str) -> StudySpec:
    """The spec of the study a folder of runs belongs to (their most common `name`, when
    experiments/ has that study), else one made up from what the runs swept."""
    names = runs["cfg.name"].dropna().astype(str) if "cfg.name" in runs else pd.Series(dtype=str)
    name = names.mode().iloc[0] if len(names) else fallback_name
    return load_spec(name) if name in list_studies() else adhoc_spec(runs, name)


# ------------------------------------------------------------------ phases and settings

def seeds_text(seeds) -> str:
    """Seeds as a reader reads them: "100–104" for a run of three or more, else a list."""
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds)) or "none"


def is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def phase_of(runs: pd.DataFrame, spec: StudySpec) -> pd.Series:
    confirm = set(spec.confirm_seeds)
    return runs["cfg.seed"].map(lambda s: "confirm" if int(s) in confirm else "tune")


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


# ------------------------------------------------------------------ per-seed values

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


def usable_runs(runs: pd.DataFrame, claim: dict) -> pd.DataFrame:
    """The runs a claim's metric is read from: finished ones; with `only_learned` (probe
    measures such as ICS, meaningless in a net that never trained), only those that learned."""
    fin = finished(runs)
    return fin[fin["outcome"] == "learned"] if claim.get("only_learned") and "outcome" in fin else fin


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


def _gain(runs: pd.DataFrame, spec: StudySpec, arm: str, choice: dict, metric: str, claim: dict) -> pd.Series:
    """Per seed: the metric at the arm's chosen setting minus at its reference setting."""
    treated, reference = (finished(p) for p in gain_pools(runs, claim))
    at_best = arm_runs(treated, spec, arm, choice["chosen"]).set_index("cfg.seed")[metric]
    at_ref = arm_runs(reference, spec, arm, choice["reference"]).set_index("cfg.seed")[metric]
    gain = (at_best - at_ref).dropna().astype(float)
    return gain.set_axis([int(s) for s in gain.index]).sort_index()


# ------------------------------------------------------------------ verdicts

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
    return compare(b.tolist(), t.tolist(), claim.get("direction", "higher"), float(claim.get("min_effect", 0)),
                   paired=paired, censored_baseline=cb.tolist(), censored_treatment=ct.tolist())


def where(runs: pd.DataFrame, claim: dict) -> pd.DataFrame:
    """The runs a claim is about: those matching its `where` ({model.name: deep_mlp}: the deep
    net only), all of them when it has none."""
    for key, value in (claim.get("where") or {}).items():
        col = f"cfg.{key}"
        runs = runs[runs[col].astype(str) == str(value)] if col in runs else runs.iloc[0:0]
    return runs


def claim_result(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> dict:
    """The headline verdict of one claim (before the report's Holm adjustment), its
    per-seed values and the verdict at every matched setting."""
    if claim.get("kind") != "gain":  # a gain claim picks its treated and reference runs itself (gain_pools)
        runs = where(runs, claim)
    pv = per_seed_values(runs, spec, claim)
    res = decide(runs, spec, claim, pv)
    if pv["provisional"] and res["verdict"] != "inconclusive":
        res.update(verdict="inconclusive", reason=pv["provisional"] + f" (they alone say {res['verdict']})")
    _precondition(res, claim, pv["values"][spec.baseline])
    res.update(claim=claim["claim"], id=claim.get("id", claim["claim"]), kind=claim.get("kind", "compare"),
               metric=claim.get("metric", claim.get("over")), note=claim.get("note", ""),
               direction=claim.get("direction", "higher"), chosen=pv["chosen"], edges=pv["edges"],
               decided_by=pv["decided_by"], seeds=pv["seeds"], chosen_on=pv["chosen_on"],
               provisional=pv["provisional"], literature=claim.get("literature", ""), url=claim.get("url", ""),
               literature_values=dict(claim.get("literature_values") or {}),
               baseline_values=pv["values"][spec.baseline].sort_index().tolist(),
               treatment_values=pv["values"][spec.treatment].sort_index().tolist(),
               baseline_censored=pv["censored"][spec.baseline].sort_index().tolist(),
               treatment_censored=pv["censored"][spec.treatment].sort_index().tolist(),
               sensitivity=sensitivity(runs, spec, claim), baseline=spec.baseline, treatment=spec.treatment,
               test_kind=claim.get("test", "superiority"),
               comparison=comparison_text(Comparison(spec.baseline, spec.treatment, claim.get("test", "superiority"),
                                                     claim.get("margin"))))
    res["sensitivity_summary"] = summarize_sensitivity(res["sensitivity"], spec)
    return res


def _precondition(res: dict, claim: dict, baseline_values: pd.Series) -> None:
    """"BN reduces the need for X" presumes the no-BN arm needs X: with `precondition:
    baseline_benefits`, the no-BN arm's gain must be measurably > 0, else the verdict is
    inconclusive (there is no need for BN to reduce)."""
    if claim.get("precondition") != "baseline_benefits" or res["verdict"] == "inconclusive":
        return
    base = seed_stats(baseline_values.tolist())
    gain = f"({effect_text({**base, 'effect': base['mean']})})"
    if not base["ci_low"] > 0:
        res.update(verdict="inconclusive",
                   reason=f"the precondition fails: the no-BN arm gains nothing measurable from "
                          f"{claim.get('over', 'it')} here {gain}, so there is no need for BN to reduce")
    else:  # said, so a reader sees the verdict rests on a need that was measured
        res["reason"] += f"; the precondition holds: the no-BN arm gains from {claim.get('over', 'it')} {gain}"


def sensitivity(runs: pd.DataFrame, spec: StudySpec, claim: dict) -> list[dict]:
    """The claim judged at every setting both arms share (tuning seeds), Holm-adjusted
    within the claim. Whole-grid kinds (max_usable, worst_case) have none: the tuned key is
    what they measure."""
    kind = claim.get("kind", "compare")
    tuning = tuning_runs(runs, spec)
    rows = []
    if kind == "compare" and spec.tune:
        cols = [f"cfg.{k}" for k in spec.tune]
        for key, g in finished(tuning).groupby(cols, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            setting = dict(zip(cols, key))
            if g[spec.arm_col].astype(str).nunique() < 2:
                continue
            unlearned = [arm for arm in spec.pair
                         if (arm_runs(g, spec, arm, {})["outcome"] != "learned").any()] if "outcome" in g else []
            if claim.get("only_learned") and unlearned:
                names = " and ".join(unlearned)
                rows.append({"setting": setting, "verdict": "not comparable", "p": np.nan, "test": "none",
                             "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "baseline_mean": np.nan,
                             "treatment_mean": np.nan, "n_baseline": 0, "n_treatment": 0, "bound": None,
                             "reason": f"{spec.arm_key}={names}: some runs did not learn or diverged here, and "
                                       f"this measure means nothing in a net that did not train"})
                continue
            pv = _compare_at(g, spec, claim["metric"], {arm: setting for arm in spec.pair}, claim)
            rows.append({"setting": setting, **decide(g, spec, claim, pv)})
    elif kind == "gain":
        over, metric = f"cfg.{claim['over']}", claim["metric"]
        treated, _ = gain_pools(tuning, claim)
        for value in sorted(treated[over].astype(float).unique()):
            # each value of `over` against the reference, each at its own tuned setting
            choice = gain_choice(runs, spec, claim, value)
            values = {arm: _gain(tuning, spec, arm, choice[arm], metric, claim) if arm in choice
                      else pd.Series(dtype=float) for arm in spec.pair}
            pv = {"values": values, "censored": {a: pd.Series(0.0, index=v.index) for a, v in values.items()}}
            row = {"setting": {over: value}, **decide(tuning, spec, claim, pv)}
            _precondition(row, claim, values[spec.baseline])
            rows.append(row)
    apply_holm(rows)
    return rows


def reversed_(r: dict) -> bool:
    """Significantly in the direction opposite to the claim (after Holm when adjusted); an
    equivalence has no direction to reverse."""
    if r.get("margin") is not None:
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
    return f"{name(comparison.treatment)} vs {name(comparison.baseline)}"


def study_verdicts(runs: pd.DataFrame, spec: StudySpec) -> list[dict]:
    """One verdict per claim and comparison. A claim judged on one comparison keeps its own id
    (figures claim_<id>.png); on several, each verdict's id adds the comparison
    (accuracy_noisy_batch_vs_batch)."""
    out = []
    for claim in spec.claims:
        own_id = claim.get("id", claim["claim"])
        comparisons = spec.claim_comparisons(claim)
        for comp in comparisons:
            judged = {**claim, "id": own_id if len(comparisons) == 1 else f"{own_id}_{comp.id}",
                      "test": comp.test, "margin": comp.margin}
            out.append({**claim_result(runs, spec.for_comparison(comp), judged), "claim_id": own_id})
    return out
