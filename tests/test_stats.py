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
    b = [0.970, 0.971, 0.969, 0.972, 0.970]
    clear = compare(b, [x + 0.010 + d for x, d in zip(b, [0.001, -0.001, 0.0005, 0.0, -0.0005])], "higher", 0.002,
                    paired=True)
    weak = compare(b, [x + 0.004 + d for x, d in zip(b, [0.004, -0.003, 0.002, -0.002, 0.0])], "higher", 0.002,
                   paired=True)
    assert clear["verdict"] == "supported" and weak["verdict"] == "supported" and 0.01 < weak["p"] < 0.05
    family = [dict(weak), dict(clear), dict(weak, p=0.5)]
    apply_holm(family)
    assert family[0]["p_holm"] == pytest.approx(min(1, 2 * weak["p"]))
    assert family[0]["verdict"] == "inconclusive" and "Holm" in family[0]["reason"]
    assert family[1]["verdict"] == "supported" and family[0]["family_size"] == 3


def test_not_supported_needs_the_familys_bonferroni_interval():
    """Both directions under the family's control: an interval that lies below the smallest
    effect that matters at 95% but not at 1 - 0.05/m is inconclusive in a family of m."""
    from bnlab.analysis.stats import bonferroni_interval
    b = [0.970, 0.971, 0.969, 0.972, 0.970]
    t = [x - 0.0015 + d for x, d in zip(b, [0.0012, -0.0010, 0.0008, -0.0006, 0.0])]
    r = compare(b, t, "higher", 0.0, paired=True)
    assert r["ci_high"] < 0 and r["verdict"] == "not supported"      # alone: ruled out at 95%
    alone = [dict(r)]
    apply_holm(alone)
    assert alone[0]["verdict"] == "not supported"
    family = [dict(r)] + [dict(r, p=0.5) for _ in range(11)]           # a family of 12
    apply_holm(family)
    lo, hi = bonferroni_interval(family[0], 12)
    assert hi > r["ci_high"] and hi > 0, "the 99.6% interval is wider and reaches above 0"
    assert family[0]["verdict"] == "inconclusive"


def test_a_rank_test_with_five_seeds_is_undecidable_in_a_large_family_only():
    """5 vs 5 by ranks cannot go below p = 2/252 ≈ 0.0079: decidable in a family of 2 (first
    Holm threshold 0.025), undecidable in a family of 12 (0.0042), where 8 a side can pass."""
    five = compare([5.0] * 5, [6.0, 6.5, 6.0, 6.5, 6.0], "higher", 0.5)
    eight = compare([5.0] * 8, [6.0, 6.5, 6.0, 6.5, 6.0, 6.2, 6.1, 6.4], "higher", 0.5)
    for r in (five, eight):
        assert r["test"] == "permutation (ranks), no spread"
    assert five["p"] == pytest.approx(2 / 252) and eight["p"] == pytest.approx(2 / 12870)
    small = [dict(five), dict(five, p=0.001)]
    apply_holm(small)
    assert small[0]["verdict"] == "supported"
    filler = [dict(five, test="paired t", p=0.5) for _ in range(10)]
    large = [dict(five), dict(eight)] + [dict(x) for x in filler]
    apply_holm(large)
    assert large[0]["verdict"] == "inconclusive" and "undecidable in its family of 12" in large[0]["reason"]
    assert large[1]["verdict"] == "supported" and large[1]["p_holm"] == pytest.approx(12 * 2 / 12870)


def test_censored_bounds_decide_only_one_way_in_a_family():
    eight = compare([5.0] * 8, [6.0, 6.5, 6.0, 6.5, 6.0, 6.2, 6.1, 6.4], "higher", 0.5, censored_baseline=[1] * 8)
    family = [dict(eight)]
    apply_holm(family)
    # the no-BN values are lower bounds here, so a positive effect is only bounded from above
    assert family[0]["verdict"] == "inconclusive" and "one side" in family[0]["reason"]


def test_no_spread_is_judged_on_the_paired_differences():
    """An arm with no spread does not force ranks when the runs are paired: the t test is on
    the differences, which spread (init_deep's case)."""
    b = [0.1] * 5
    t = [0.90, 0.91, 0.92, 0.90, 0.93]
    assert compare(b, t, "higher", 0.1, paired=True)["test"] == "paired t"
    assert compare(b, t, "higher", 0.1)["test"].startswith("permutation")
    same_gap = compare([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0, 6.0], "higher", 0.5, paired=True)
    assert same_gap["test"] == "permutation (ranks), no spread"


def test_non_inferiority_against_a_margin():
    from bnlab.analysis.stats import noninferiority
    b = [0.950, 0.952, 0.951, 0.949, 0.953]
    close = [x - 0.0005 + d for x, d in zip(b, [0.0003, -0.0002, 0.0001, -0.0003, 0.0001])]
    worse = [x - 0.010 + d for x, d in zip(b, [0.0003, -0.0002, 0.0001, -0.0003, 0.0001])]
    r = noninferiority(b, close, 0.002, paired=True)
    assert r["verdict"] == "supported" and r["effect"] < 0 < r["effect"] + 0.002
    assert noninferiority(b, worse, 0.002, paired=True)["verdict"] == "not supported"
    fam = [r, noninferiority(b, worse, 0.002, paired=True)]
    apply_holm(fam)
    assert [x["verdict"] for x in fam] == ["supported", "not supported"]
    assert noninferiority(b, close, 0.002, censored_treatment=[1, 0, 0, 0, 0])["verdict"] == "inconclusive"


def test_seed_stats_interval():
    s = seed_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["n"] == 5 and s["mean"] == 3.0 and abs(s["ci_high"] - 3 - 2.776 * np.sqrt(2.5) / np.sqrt(5)) < 1e-3


def test_a_verdict_at_the_margin_is_not_worded_as_decided():
    """An interval that ends a hair below the smallest effect that matters is 'at the margin',
    not 'not supported'; a clear miss stays 'not supported'."""
    from scipy import stats as st
    from bnlab.analysis.stats import family_verdict

    t = st.t.ppf(0.975, 4)
    def result(hi):  # an interval from -0.001 up to hi (a family of one: the 95% interval)
        se = (hi + 0.001) / t
        return {"test": "paired t", "p": 0.3, "p_holm": 0.3, "effect": -0.001, "ci_low": -0.001 - t * se,
                "ci_high": hi, "min_effect": 0.002, "se": se, "df": 4, "n_baseline": 5, "n_treatment": 5}
    hair = family_verdict(result(0.002 - 1e-7), 1)
    assert hair["verdict"] == "inconclusive" and hair["reason"].startswith("at the margin")
    assert family_verdict(result(0.0015), 1)["verdict"] == "not supported"
