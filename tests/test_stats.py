"""The statistics behind verdicts, on numbers whose answer is known: which test fits the
data (paired, Welch, ranks for censored or degenerate values), the verdict rule, Holm."""
import numpy as np
import pytest

from bnlab.analysis.stats import apply_holm, compare, holm, rank_permutation_p, seed_stats

RNG = np.random.default_rng(0)


def test_clear_effect_is_supported_welch():
    b, t = 0.970 + 0.001 * RNG.standard_normal(5), 0.980 + 0.001 * RNG.standard_normal(5)
    r = compare(b, t, "higher", min_effect=0.002)
    assert r["test"] == "Welch t" and r["verdict"] == "supported" and r["ci_low"] > 0 and r["p"] < 0.001
    assert abs(r["effect"] - (t.mean() - b.mean())) < 1e-12 and r["effect_size"] > 3


def test_no_effect_is_not_supported():
    b, t = 0.975 + 0.0005 * RNG.standard_normal(8), 0.975 + 0.0005 * RNG.standard_normal(8)
    r = compare(b, t, "higher", min_effect=0.002)
    assert r["verdict"] == "not supported" and r["ci_high"] < 0.002


def test_effect_in_the_opposite_direction_is_not_supported():
    b, t = 0.98 + 0.001 * RNG.standard_normal(5), 0.97 + 0.001 * RNG.standard_normal(5)
    r = compare(b, t, "higher", min_effect=0.002)
    assert r["verdict"] == "not supported" and r["effect"] < 0 and "opposite" in r["reason"]


def test_lower_is_better_metrics_are_signed():
    b, t = 3000 + 50 * RNG.standard_normal(5), 1500 + 50 * RNG.standard_normal(5)
    r = compare(b, t, "lower", min_effect=250)
    assert r["verdict"] == "supported" and r["effect"] > 1000


def test_too_few_seeds_is_inconclusive_even_with_a_big_effect():
    r = compare([0.90, 0.91, 0.905], [0.98, 0.981, 0.979], "higher", min_effect=0.002)
    assert r["verdict"] == "inconclusive" and "seeds" in r["reason"] and r["effect"] > 0.07


def test_paired_differences_see_through_seed_to_seed_noise():
    """Seeds differ a lot (0.01), but within a seed BN is always 0.003 better: the paired
    test finds it, Welch across independent-looking arms cannot."""
    seed_effect = 0.01 * RNG.standard_normal(6)
    b = 0.970 + seed_effect
    t = b + 0.003 + 0.0002 * RNG.standard_normal(6)
    paired = compare(b, t, "higher", 0.002, paired=True)
    welch = compare(b, t, "higher", 0.002, paired=False)
    assert paired["test"] == "paired t" and paired["verdict"] == "supported"
    assert paired["ci_high"] - paired["ci_low"] < 0.001
    assert welch["test"] == "Welch t" and welch["verdict"] == "inconclusive"
    assert paired["effect"] == pytest.approx(welch["effect"])


def test_censored_values_are_bounds_tested_by_ranks():
    """BN's usable limit is at the grid's top in every seed: its values are lower bounds.
    No t interval; an exact rank test; the effect is shown as '≥'."""
    b = [1.0, 2.0, 1.0, 2.0, 1.0]
    t = [5.0] * 5
    r = compare(b, t, "higher", 0.5, censored_treatment=[1] * 5)
    assert r["test"].startswith("permutation") and r["bound"] == "≥"
    assert np.isnan(r["ci_low"]) and r["p"] == pytest.approx(2 / 252)
    assert r["verdict"] == "supported"
    # censoring in the baseline pulls the other way: an upper bound, which cannot support
    r = compare([5.0] * 5, [6.0, 6.5, 6.0, 6.5, 6.0], "higher", 0.5, censored_baseline=[1] * 5)
    assert r["bound"] == "≤" and r["verdict"] == "inconclusive"


def test_values_without_spread_go_to_ranks_never_p_zero():
    r = compare([0.1] * 5, [0.9, 0.91, 0.92, 0.9, 0.93], "higher", 0.1)
    assert r["test"] == "permutation (ranks), no spread" and r["verdict"] == "supported"
    constant = compare([1.0] * 5, [4.0] * 5, "higher", 0.5)
    assert constant["effect"] == 3.0 and constant["p"] == pytest.approx(2 / 252), "5 a side: never p = 0"
    assert np.isnan(constant["ci_low"]) and constant["verdict"] == "supported"
    same = compare([3.0] * 5, [3.0] * 5, "higher", 0.5)
    assert same["effect"] == 0 and same["p"] == 1.0 and same["verdict"] == "inconclusive"


def test_rank_permutation_p_is_exact():
    assert rank_permutation_p(np.array([6.0, 7, 8]), np.array([1.0, 2, 3])) == pytest.approx(2 / 20)
    assert rank_permutation_p(np.array([1.0, 2]), np.array([1.0, 2])) == pytest.approx(1.0)


def test_holm_adjusts_and_downgrades():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, np.nan])[1]) and holm([0.01, np.nan])[0] == pytest.approx(0.01)
    family = [{"p": 0.028, "verdict": "supported"}] + [{"p": 0.001, "verdict": "supported"} for _ in range(8)]
    apply_holm(family)
    assert family[0]["p_holm"] == pytest.approx(0.028) and family[0]["verdict"] == "supported"
    family = [{"p": 0.028, "verdict": "supported"}] + [{"p": 0.3, "verdict": "inconclusive"} for _ in range(8)]
    apply_holm(family)
    assert family[0]["p_holm"] == pytest.approx(0.252) and family[0]["verdict"] == "inconclusive"
    assert "Holm" in family[0]["reason"]


def test_seed_stats_interval():
    s = seed_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["n"] == 5 and s["mean"] == 3.0 and abs(s["ci_high"] - 3 - 2.776 * np.sqrt(2.5) / np.sqrt(5)) < 1e-3
