"""Statistics behind every verdict: intervals over seeds, the test that fits the data, Holm.

Which test (`compare`):
- **paired t** when every seed has both arms and the runs are paired (same initial weights,
  batches and dropout masks per seed: bnlab.train): the interval and test are on per-seed
  differences, which answers "what does the norm layer change, all else equal";
- **Welch t** for independent arms (unpaired runs, e.g. made before the paired design);
- **exact permutation test on ranks** (Mann-Whitney's U, every relabelling enumerated) when
  a value is censored — a bound, not a measurement: a limit reached at the grid's top, a
  target never reached — or an arm (or the paired differences) has no spread, where a t
  interval means nothing. Five seeds a side can then reach p = 2/252 at best, never 0. The
  effect is then a difference of means computed with the bounds, so itself a bound (shown
  "≥" or "≤"), and no interval is given.
Holm–Bonferroni (`holm`) adjusts a family of p-values; a "supported" verdict must survive it.
"""
from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_SEEDS = 5

VERDICT_RULE = (
    f"Per seed, the claim's metric in the treatment arm and the baseline arm of a comparison (BN and no "
    f"BN unless the row names other arms). The effect is treatment − baseline, "
    f"signed so that + is the direction the claim predicts. Test: a paired t interval and test on "
    f"per-seed differences when every seed has both arms from paired runs (same initial weights, "
    f"batches and dropout masks); Welch's t otherwise; an exact permutation test on ranks when a "
    f"value is censored (a bound such as a limit at the grid's top or a target never reached: the "
    f"effect is then itself a bound, shown ≥ or ≤, with no interval) or the values have no spread. "
    f"Every headline p-value is adjusted over the report's family of verdicts by Holm–Bonferroni "
    f"(p_Holm). **supported**: the effect is significant in the claimed direction after Holm "
    f"(p_Holm < {ALPHA}; for a t test its 95% interval lies above 0) and at least the smallest effect "
    f"that matters (for a bound, the bound must be). **not supported**: the 95% interval lies below "
    f"the smallest effect that matters — the data rule out an effect that matters, including "
    f"significant effects the other way — or, for censored data, a significant effect the other "
    f"way. **inconclusive**: anything else, or fewer than {MIN_SEEDS} seeds in an arm. The headline "
    f"uses only seeds that chose nothing: confirmation seeds for a setting chosen on tuning seeds; "
    f"the grid seeds where nothing was chosen (a whole-grid measure or a pre-specified setting)."
)


def finite(values) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)


def seed_stats(values) -> dict:
    """n, mean, std and the 95% t-interval of the mean (None and NaN ignored)."""
    v = finite(values)
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": np.nan, "std": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    mean = v.mean()
    std = v.std(ddof=1) if n > 1 else np.nan
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n) if n > 1 else np.nan
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def rank_permutation_p(a: np.ndarray, b: np.ndarray, max_exact: int = 20000) -> float:
    """Two-sided p of Mann-Whitney's U by enumerating every relabelling of the pooled values
    (exact, ties handled through mid-ranks); random relabellings when there are too many."""
    pooled = np.concatenate([a, b])
    ranks = stats.rankdata(pooled)
    n, na = len(pooled), len(a)
    observed = ranks[:na].sum()
    centre = na * (n + 1) / 2
    dev = abs(observed - centre)
    combos = math.comb(n, na)
    if combos <= max_exact:
        sums = np.fromiter((ranks[list(c)].sum() for c in itertools.combinations(range(n), na)), float, combos)
    else:
        rng = np.random.default_rng(0)
        sums = np.array([ranks[rng.permutation(n)[:na]].sum() for _ in range(max_exact)])
    return float(np.mean(np.abs(sums - centre) >= dev - 1e-9))


def _bound(sign: float, censored_b: np.ndarray, censored_t: np.ndarray) -> str | None:
    """Which bound the signed effect is when values are censored: censoring +1 means the true
    value is at least the recorded one, -1 at most. None when nothing is censored;
    "?" when censoring pulls both ways (no bound)."""
    pulls = set()
    for c in censored_t[censored_t != 0]:
        pulls.add(sign * c)          # a larger true treatment value: effect larger when sign > 0
    for c in censored_b[censored_b != 0]:
        pulls.add(-sign * c)
    if not pulls:
        return None
    if len(pulls) > 1:
        return "?"
    return "≥" if pulls.pop() > 0 else "≤"


def _measured(baseline, treatment, censored_baseline, censored_treatment, paired: bool):
    """Per-seed values and their censoring as arrays, without missing values (with `paired`,
    a seed missing in either arm is dropped from both)."""
    b_raw = np.asarray([np.nan if x is None else x for x in baseline], dtype=float)
    t_raw = np.asarray([np.nan if x is None else x for x in treatment], dtype=float)
    cb_raw = np.zeros(len(b_raw)) if censored_baseline is None else np.asarray(censored_baseline, dtype=float)
    ct_raw = np.zeros(len(t_raw)) if censored_treatment is None else np.asarray(censored_treatment, dtype=float)
    if paired:
        keep = np.isfinite(b_raw) & np.isfinite(t_raw)
        return b_raw[keep], t_raw[keep], cb_raw[keep], ct_raw[keep]
    kb, kt = np.isfinite(b_raw), np.isfinite(t_raw)
    return b_raw[kb], t_raw[kt], cb_raw[kb], ct_raw[kt]


def compare(baseline, treatment, direction: str, min_effect: float, *, paired: bool = False,
            censored_baseline=None, censored_treatment=None, min_seeds: int = MIN_SEEDS) -> dict:
    """Effect of treatment over baseline (signed: + = the claimed direction), its interval,
    p-value and size, and the verdict under VERDICT_RULE (before any Holm adjustment).

    `baseline`/`treatment`: per-seed values in seed order (with `paired`, position i of both
    is seed i). `censored_*`: per value 0, +1 (true value >= recorded) or -1 (<=)."""
    b, t, cb, ct = _measured(baseline, treatment, censored_baseline, censored_treatment, paired)
    sign = 1.0 if direction == "higher" else -1.0
    out = {"n_baseline": len(b), "n_treatment": len(t), "baseline_mean": b.mean() if len(b) else np.nan,
           "treatment_mean": t.mean() if len(t) else np.nan, "effect": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "p": np.nan, "effect_size": np.nan, "min_effect": min_effect,
           "test": "none", "bound": None, "censored": int((cb != 0).sum() + (ct != 0).sum())}
    if len(b) < 2 or len(t) < 2:
        out.update(verdict="inconclusive", reason="fewer than 2 seeds in an arm")
        return out
    diff = sign * (t.mean() - b.mean())
    out["effect"] = diff
    bound = _bound(sign, cb, ct)
    spread_b, spread_t = np.ptp(b), np.ptp(t)
    d = sign * (t - b) if paired else None
    no_spread = spread_b == 0 or spread_t == 0 or (paired and np.ptp(d) == 0)
    if bound is not None or no_spread:
        # a t interval needs spread; with none (or with bounds) the ranks still order the seeds
        p = rank_permutation_p(t, b)
        out.update(test="permutation (ranks)" + (", censored" if bound else ", no spread"), p=p, bound=bound)
    elif paired:
        n = len(d)
        sd = d.std(ddof=1)
        half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_1samp(d, 0.0).pvalue)
        out.update(test="paired t", ci_low=diff - half, ci_high=diff + half, p=p, effect_size=diff / sd)
    else:
        vb, vt = b.var(ddof=1) / len(b), t.var(ddof=1) / len(t)
        se = math.sqrt(vb + vt)
        df = (vb + vt) ** 2 / (vb ** 2 / (len(b) - 1) + vt ** 2 / (len(t) - 1))
        half = stats.t.ppf(0.975, df) * se
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(t, b, equal_var=False).pvalue)
        pooled = math.sqrt(((len(b) - 1) * b.var(ddof=1) + (len(t) - 1) * t.var(ddof=1)) / (len(b) + len(t) - 2))
        g = diff / pooled * (1 - 3 / (4 * (len(b) + len(t)) - 9)) if pooled > 0 else np.nan
        out.update(test="Welch t", ci_low=diff - half, ci_high=diff + half, p=p, effect_size=g)
    out.update(_verdict(out, min(len(b), len(t)), min_seeds))
    return out


EQUIVALENCE_RULE = (
    "An *equivalence* comparison (\"noisy BN trains about as well as BN\") states a margin m on the "
    "claim's metric in advance; its effect is treatment − baseline, unsigned by any direction. "
    "**supported** (equivalent): the 95% interval of the difference (paired t on per-seed differences, "
    "else Welch) lies inside (−m, +m) — stricter than the usual two one-sided tests (TOST), whose "
    "p-value, the larger of the two one-sided ones, is the one Holm adjusts and must stay below "
    f"{ALPHA}. **not supported**: the interval lies wholly beyond +m or −m (the arms differ by more "
    "than the margin). **inconclusive**: anything else, censored values (bounds cannot show "
    f"closeness), or fewer than {MIN_SEEDS} seeds in an arm."
)


def equivalence(baseline, treatment, margin: float, *, paired: bool = False, censored_baseline=None,
                censored_treatment=None, min_seeds: int = MIN_SEEDS) -> dict:
    """Are the arms within ±`margin` of each other? The same fields as `compare`, with the
    effect = mean(treatment) − mean(baseline), its 95% interval, and p = the TOST p-value
    (max of the two one-sided tests against −margin and +margin); verdict by EQUIVALENCE_RULE."""
    b, t, cb, ct = _measured(baseline, treatment, censored_baseline, censored_treatment, paired)
    out = {"n_baseline": len(b), "n_treatment": len(t), "baseline_mean": b.mean() if len(b) else np.nan,
           "treatment_mean": t.mean() if len(t) else np.nan, "effect": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "p": np.nan, "effect_size": np.nan, "min_effect": np.nan, "margin": margin,
           "test": "none", "bound": None, "censored": int((cb != 0).sum() + (ct != 0).sum())}
    if len(b) < 2 or len(t) < 2:
        out.update(verdict="inconclusive", reason="fewer than 2 seeds in an arm")
        return out
    diff = t.mean() - b.mean()
    out["effect"] = diff
    if out["censored"]:
        out.update(test="none (censored)", verdict="inconclusive",
                   reason="censored values are bounds, which cannot show that two arms are close")
        return out
    if paired:
        d = t - b
        n, sd = len(d), d.std(ddof=1)
        se, df, test = sd / math.sqrt(n), n - 1, "paired t, TOST"
        out["effect_size"] = diff / sd if sd > 0 else np.nan
    else:
        vb, vt = b.var(ddof=1) / len(b), t.var(ddof=1) / len(t)
        se, test = math.sqrt(vb + vt), "Welch t, TOST"
        df = (vb + vt) ** 2 / (vb ** 2 / (len(b) - 1) + vt ** 2 / (len(t) - 1)) if se > 0 else 1
    if se == 0:  # no spread: the difference is known exactly
        inside = abs(diff) < margin
        out.update(test="exact (no spread)", ci_low=diff, ci_high=diff, p=0.0 if inside else 1.0)
    else:
        half = stats.t.ppf(0.975, df) * se
        p_low = 1 - stats.t.cdf((diff + margin) / se, df)   # H0: difference <= -margin
        p_high = stats.t.cdf((diff - margin) / se, df)      # H0: difference >= +margin
        out.update(test=test, ci_low=diff - half, ci_high=diff + half, p=float(max(p_low, p_high)))
    n_min = min(len(b), len(t))
    if n_min < min_seeds:
        out.update(verdict="inconclusive", reason=f"fewer than {min_seeds} seeds in an arm")
    elif -margin < out["ci_low"] and out["ci_high"] < margin:
        out.update(verdict="supported", reason=f"the 95% interval of the difference lies inside ±{margin:g}")
    elif out["ci_low"] >= margin or out["ci_high"] <= -margin:
        out.update(verdict="not supported", reason=f"the arms differ by more than the margin ±{margin:g}")
    else:
        out.update(verdict="inconclusive", reason=f"the 95% interval reaches beyond the margin ±{margin:g}")
    return out


def _verdict(r: dict, n: int, min_seeds: int, p_key: str = "p") -> dict:
    p, diff, lo, hi, me = r[p_key], r["effect"], r["ci_low"], r["ci_high"], r["min_effect"]
    if n < min_seeds:
        return {"verdict": "inconclusive", "reason": f"fewer than {min_seeds} seeds in an arm"}
    significant = p < ALPHA
    if r["test"].startswith("permutation"):
        bound = r["bound"]
        if significant and diff > 0 and bound in (None, "≥") and diff >= me:
            return {"verdict": "supported",
                    "reason": "significant in the claimed direction" + (" and the effect's lower bound " if bound else
                                                                         " and the effect ") + "at least the smallest that matters"}
        if significant and diff < 0 and bound in (None, "≤"):
            return {"verdict": "not supported", "reason": "significant effect in the opposite direction"}
        why = "censored values bound the effect only on one side" if bound else "not significant"
        return {"verdict": "inconclusive", "reason": why}
    if lo > 0 and significant and diff >= me:
        return {"verdict": "supported", "reason": "interval above 0 and mean effect at least the smallest that matters"}
    if hi < me:
        return {"verdict": "not supported",
                "reason": "interval below the smallest effect that matters" + (" (opposite direction)" if hi < 0 else "")}
    return {"verdict": "inconclusive", "reason": "interval too wide to decide"}


def effect_text(r: dict) -> str:
    """A result's effect as a reader should take it: with its 95% interval, as a bound
    ("≥"/"≤") when values are censored, or alone where no interval applies."""
    if not math.isfinite(r.get("effect", float("nan"))):
        return "–"
    if math.isfinite(r.get("ci_low", float("nan"))):
        return f"{r['effect']:+.4g} [{r['ci_low']:+.4g}, {r['ci_high']:+.4g}]"
    bound = r.get("bound") if r.get("bound") in ("≥", "≤") else ""
    return f"{bound}{r['effect']:+.4g}"


def holm(pvalues) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count in the family)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    idx = [i for i in np.argsort(p, kind="stable") if np.isfinite(p[i])]
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def apply_holm(results: list[dict]) -> None:
    """Adjust the p-values of a family of verdicts in place (`p_holm`); a "supported"
    verdict that is no longer significant after adjustment becomes "inconclusive"."""
    for r, ph in zip(results, holm([r.get("p", np.nan) for r in results])):
        r["p_holm"] = ph
        r["family_size"] = sum(np.isfinite(x.get("p", np.nan)) for x in results)
        if r.get("verdict") == "supported" and not (ph < ALPHA):
            r["verdict"] = "inconclusive"
            r["reason"] = f"significant alone (p = {r['p']:.2g}) but not after Holm's adjustment (p_Holm = {ph:.2g})"
