"""Verdicts on synthetic run stores whose answers are known: selection on validation data
from tuning seeds, decisions on confirmation seeds, paired and censored cases, sensitivity
at matched settings, edge flags, outcomes, and the CSV round trip."""
import json

import numpy as np
from omegaconf import OmegaConf
import pandas as pd
import pytest

from bnlab.analysis.kinds import per_seed_values
from bnlab.analysis.selection import best_settings, edge_flags, setting_table
from bnlab.analysis.spec import Comparison
from bnlab.analysis.verdicts import claim_result
from bnlab.analysis.frames import frame_from_csv, frame_from_store, write_csv
from bnlab.analysis.measures import act_in_drift

from synthetic import ACCURACY, THREE_ARM_CLAIM, dropout_cell_runs, make_store, spec, write_run

RNG = np.random.default_rng(0)


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path)


def test_setting_chosen_on_validation_of_tuning_seeds_and_decided_on_confirmation_seeds(store):
    runs = frame_from_store(store)
    assert len(runs) == 35
    assert best_settings(runs, spec()) == {"batch": {"cfg.optim.lr": 0.5}, "none": {"cfg.optim.lr": 0.5}}
    r = claim_result(runs, spec(), ACCURACY)
    assert r["seeds"] == [100, 101, 102, 103, 104] and r["decided_by"] == "confirmation seeds"
    assert r["chosen_on"] == [0, 1, 2, 3, 4]
    assert r["effect"] == pytest.approx(0.004, abs=0.0005), "the confirmation seeds' effect, not the tuning seeds' 0.010"
    assert r["test"] == "paired t" and r["verdict"] == "supported"


def test_without_confirmation_runs_the_headline_is_provisional(store):
    runs = frame_from_store(store)
    tuning_only = runs[runs["cfg.seed"] < 100]
    r = claim_result(tuning_only, spec(), ACCURACY)
    assert r["decided_by"] == "tuning seeds (provisional)" and r["verdict"] == "inconclusive"
    assert "confirmation" in r["reason"] and r["effect"] == pytest.approx(0.010, abs=0.002)


def test_unpaired_runs_are_analysed_with_welch(tmp_path):
    for seed in range(100, 105):
        e = 0.01 * RNG.standard_normal()
        write_run(tmp_path, "old", "batch", 0.5, seed, 0.977 + e, 0.974 + e, paired=False)
        write_run(tmp_path, "old", "none", 0.5, seed, 0.973 + e, 0.970 + e, paired=False)
    r = claim_result(frame_from_store(tmp_path / "old"), spec(tune=[]), ACCURACY)
    assert r["test"] == "Welch t" and r["verdict"] == "inconclusive"


def test_steps_to_target_never_reached_is_censored_at_the_budget(store):
    runs = frame_from_store(store)
    claim = {"claim": "speed", "kind": "compare", "metric": "steps_to_target", "direction": "lower",
             "min_effect": 100, "matched": {"optim.lr": 0.1}}
    pv = per_seed_values(runs[runs["cfg.optim.lr"] == 0.1], spec(), claim)
    assert pv["values"]["none"].tolist() == [1000.0] * 5 and pv["censored"]["none"].tolist() == [1.0] * 5


def test_sensitivity_says_where_a_verdict_holds_and_where_it_reverses(tmp_path):
    for seed in range(5):
        e = 0.001 * RNG.standard_normal()
        write_run(tmp_path, "sens", "batch", 0.5, seed, 0.98 + e, 0.98 + e)
        write_run(tmp_path, "sens", "none", 0.5, seed, 0.97 + e, 0.97 + e)
        write_run(tmp_path, "sens", "batch", 8.0, seed, 0.95 + e, 0.95 + e)
        write_run(tmp_path, "sens", "none", 8.0, seed, 0.96 + e, 0.96 + e)
    runs = frame_from_store(tmp_path / "sens")
    r = claim_result(runs, spec(), ACCURACY)
    by_lr = {s["setting"]["cfg.optim.lr"]: s for s in r["sensitivity"]}
    assert by_lr[0.5]["verdict"] == "supported" and by_lr[8.0]["verdict"] == "not supported"
    assert all("p_holm" in s for s in r["sensitivity"])
    assert r["sensitivity_summary"] == "holds at lr 0.5; reversed at lr 8"
    # no-BN's choice is lr 0.5, the bottom of its grid; BN's too: both flagged
    flags = edge_flags(runs, spec(), best_settings(runs, spec()))
    assert set(flags) == {"batch", "none"} and "bottom of its grid" in flags["none"][0]


def test_outcomes_are_counted_and_did_not_learn_is_not_usable(tmp_path):
    for seed in range(5):
        for lr in (0.1, 1.0, 10.0):
            write_run(tmp_path, "lr", "batch", lr, seed, 0.95, 0.95)
            bad = lr == 10.0
            # at lr 10 no-BN completes but stays at chance: it did not learn
            write_run(tmp_path, "lr", "none", lr, seed, 0.1 if bad else 0.95, 0.1 if bad else 0.95,
                      learned=not bad)
    runs = frame_from_store(tmp_path / "lr")
    assert (runs["outcome"] == "did not learn").sum() == 5 and (runs["status"] == "completed").all()
    table = setting_table(runs, spec(tune=["optim.lr"]), "best/val/acc")
    assert table["did not learn"].sum() == 5 and table["learned"].sum() == 25
    claim = {"claim": "lr", "kind": "max_usable", "over": "optim.lr", "threshold": 0.9, "direction": "higher",
             "min_effect": 0.5}
    r = claim_result(runs, spec(), claim)
    assert r["baseline_values"] == [0.0] * 5, "lr 10 stayed at chance: 1.0 is the largest usable"
    assert r["treatment_values"] == [pytest.approx(np.log2(10))] * 5 and r["treatment_censored"] == [1.0] * 5
    assert r["bound"] == "≥" and r["test"].startswith("permutation") and r["verdict"] == "supported"


def test_probe_measures_skip_settings_where_an_arm_did_not_learn(tmp_path):
    """ICS of a net stuck at chance is tiny and meaningless: with only_learned such a setting
    is 'not comparable', not a reversal."""
    for seed in range(5):
        for lr in (0.5, 16.0):
            write_run(tmp_path, "ics", "batch", lr, seed, 0.97, 0.97, probe_drift=0.0)
            stuck = lr == 16.0
            write_run(tmp_path, "ics", "none", lr, seed, 0.1 if stuck else 0.96, 0.1 if stuck else 0.96,
                      probe_drift=0.0 if stuck else 0.5, learned=not stuck)
    runs = frame_from_store(tmp_path / "ics")
    claim = {"claim": "ics", "kind": "compare", "metric": "act_in_drift", "direction": "lower", "min_effect": 0.01,
             "matched": {"optim.lr": 0.5}, "only_learned": True}
    r = claim_result(runs, spec(), claim)
    by_lr = {s["setting"]["cfg.optim.lr"]: s for s in r["sensitivity"]}
    assert by_lr[16.0]["verdict"] == "not comparable" and by_lr[0.5]["verdict"] == "supported"
    assert r["sensitivity_summary"] == "holds at lr 0.5; not comparable (an arm did not learn) at lr 16"
    without = claim_result(runs, spec(), {**claim, "only_learned": False})
    assert {s["setting"]["cfg.optim.lr"]: s for s in without["sensitivity"]}[16.0]["verdict"] != "not comparable"


def test_worst_case_and_gain_kinds():
    rows = []
    for seed in range(5):
        for std in (0.01, 1.0):
            rows.append({"cfg.model.norm": "batch", "cfg.seed": seed, "cfg.init.std": std, "status": "completed",
                         "best/test/acc": 0.97 + 0.001 * seed, "best/val/acc": 0.97, "paired": 1})
            rows.append({"cfg.model.norm": "none", "cfg.seed": seed, "cfg.init.std": std, "status": "completed",
                         "best/test/acc": 0.97 if std == 0.01 else 0.11 + 0.001 * seed ** 2, "best/val/acc": 0.5,
                         "paired": 1})
    runs = pd.DataFrame(rows)
    runs["outcome"] = "learned"
    r = claim_result(runs, spec(tune=["init.std"]),
                     {"claim": "init", "kind": "worst_case", "over": "init.std", "metric": "best/test/acc",
                      "direction": "higher", "min_effect": 0.01})
    assert r["baseline_values"] == pytest.approx([0.11, 0.111, 0.114, 0.119, 0.126]) and r["verdict"] == "supported"
    assert r["decided_by"].startswith("grid seeds") and r["sensitivity"] == []

    rows = []
    for seed in [*range(5), *range(100, 105)]:
        for p in (0.0, 0.1, 0.3):
            rows.append({"cfg.model.norm": "batch", "cfg.seed": seed, "cfg.model.dropout": p, "status": "completed",
                         "best/test/acc": 0.98 - 0.002 * (p > 0) + 0.0001 * seed % 7,
                         "best/val/acc": 0.98 - p / 100, "paired": 1})
            rows.append({"cfg.model.norm": "none", "cfg.seed": seed, "cfg.model.dropout": p, "status": "completed",
                         "best/test/acc": 0.97 + 0.005 * (p == 0.1) + 0.0001 * seed % 7,
                         "best/val/acc": 0.97 + 0.01 * (p == 0.1), "paired": 1})
    runs = pd.DataFrame(rows)
    runs["outcome"] = "learned"
    r = claim_result(runs, spec(tune=["model.dropout"]),
                     {"claim": "dropout", "kind": "gain", "over": "model.dropout", "reference": 0.0,
                      "metric": "best/test/acc", "direction": "lower", "min_effect": 0.002})
    assert r["chosen"]["none"]["cfg.model.dropout"] == 0.1 and r["seeds"] == [100, 101, 102, 103, 104]
    assert r["baseline_values"] == pytest.approx([0.005] * 5) and r["treatment_values"] == pytest.approx([-0.002] * 5)
    assert r["verdict"] == "supported" and r["test"] == "permutation (ranks), no spread"
    assert [s["setting"]["cfg.model.dropout"] for s in r["sensitivity"]] == [0.1, 0.3]
    # bnlab-study's phase 2 runs each arm's chosen rate (never the reference) and the reference
    from bnlab.study_command import confirmation_jobs
    gain_spec = spec(tune=["model.dropout"], claims=[{"claim": "dropout", "kind": "gain", "over": "model.dropout",
                                                     "reference": 0.0, "metric": "best/test/acc"}])
    jobs = confirmation_jobs(runs[runs["cfg.seed"] < 100], gain_spec)
    assert jobs == [["model.norm=none", "model.dropout=0.0,0.1", "seed=100,101,102,103,104"],
                    ["model.norm=batch", "model.dropout=0.0,0.1", "seed=100,101,102,103,104"]]


_PLACEMENT_CLAIMS = [
    {"claim": "dropout", "id": "after", "kind": "gain", "over": "model.dropout", "reference": 0.0,
     "where": {"model.dropout_placement": "after_each_activation"}, "metric": "best/test/acc",
     "direction": "lower", "min_effect": 0.002},
    {"claim": "dropout", "id": "before", "kind": "gain", "over": "model.dropout", "reference": 0.0,
     "where": {"model.dropout_placement": "before_classifier"},
     "reference_where": {"model.dropout_placement": "after_each_activation"}, "metric": "best/test/acc",
     "direction": "lower", "min_effect": 0.002},
]


def test_a_gain_tunes_the_learning_rate_per_cell_and_placements_share_the_reference():
    """The dropout study's design: lr tuned within every (norm, dropout, placement) cell; the
    gain of each arm is its chosen dropout at its own best rate minus no dropout at *its* best
    rate; the before-classifier claim takes its reference from the no-dropout runs (which have
    no placement of their own); phase 2 runs exactly the chosen cells, nothing crossed."""
    from bnlab.study_command import confirmation_jobs

    runs = dropout_cell_runs()
    s = spec(tune=["model.dropout", "model.dropout_placement", "optim.lr"], claims=_PLACEMENT_CLAIMS)
    after, before = (claim_result(runs, s, c) for c in _PLACEMENT_CLAIMS)
    assert after["chosen"]["none"] == {"cfg.model.dropout": 0.2, "cfg.model.dropout_placement": "after_each_activation",
                                       "cfg.optim.lr": 0.5, "reference": {
                                           "cfg.model.dropout": 0.0, "cfg.model.dropout_placement": "after_each_activation",
                                           "cfg.optim.lr": 2.0}}
    assert np.mean(after["baseline_values"]) == pytest.approx(0.005, abs=0.0006)   # 0.975 (lr 0.5) - 0.970 (lr 2)
    assert np.mean(after["treatment_values"]) == pytest.approx(-0.002, abs=0.0006)  # 0.978 (lr 2) - 0.980 (lr 0.5)
    assert after["seeds"] == [100, 101, 102, 103, 104] and after["verdict"] == "supported"
    assert before["chosen"]["batch"]["cfg.optim.lr"] == 0.5 and before["chosen"]["none"]["cfg.optim.lr"] == 2.0
    assert before["chosen"]["none"]["reference"]["cfg.optim.lr"] == 2.0
    assert np.mean(before["baseline_values"]) == pytest.approx(0.002, abs=0.0006)
    # lr 0.5 and 2.0 are the whole grid: every choice is at an edge, and is flagged
    assert any("optim.lr" in t for t in after["edges"]["none"])
    # the sensitivity rows: each dropout value at its own tuned rate (here the only one, 0.2)
    assert [r["setting"] for r in after["sensitivity"]] == [{"cfg.model.dropout": 0.2}]

    jobs = confirmation_jobs(runs[runs["cfg.seed"] < 100], s)
    seeds = "seed=100,101,102,103,104"
    assert jobs == [
        ["model.norm=none", "model.dropout=0.2", "model.dropout_placement=after_each_activation", "optim.lr=0.5", seeds],
        ["model.norm=none", "model.dropout=0.0", "model.dropout_placement=after_each_activation", "optim.lr=2.0", seeds],
        ["model.norm=none", "model.dropout=0.2", "model.dropout_placement=before_classifier", "optim.lr=2.0", seeds],
        ["model.norm=batch", "model.dropout=0.2", "model.dropout_placement=after_each_activation", "optim.lr=2.0", seeds],
        ["model.norm=batch", "model.dropout=0.0", "model.dropout_placement=after_each_activation", "optim.lr=0.5", seeds],
        ["model.norm=batch", "model.dropout=0.2", "model.dropout_placement=before_classifier", "optim.lr=0.5", seeds],
    ]


def test_a_gain_claim_is_checked_when_the_study_is_loaded(tmp_path):
    from bnlab.errors import ConfigError
    from bnlab.analysis.spec import load_spec

    base = {"name": "g", "analysis": {"tune": ["model.dropout"], "claims": [
        {"claim": "dropout", "kind": "gain", "over": "model.dropout", "reference": 0.0, "metric": "best/test/acc"}]}}
    for change, key in ((lambda c: c.update(over="optim.lr"), "over"),
                        (lambda c: c.update(reference="none"), "reference"),
                        (lambda c: c.update(reference_where="before_classifier"), "reference_where"),
                        (lambda c: c.update(kind="compare", reference_where={"a": 1}), "reference_where")):
        raw = json.loads(json.dumps(base))
        change(raw["analysis"]["claims"][0])
        (tmp_path / "g.yaml").write_text(OmegaConf.to_yaml(raw))
        with pytest.raises(ConfigError) as e:
            load_spec("g", tmp_path)
        assert e.value.key == f"analysis.claims[dropout].{key}" and "\n" not in str(e.value)


def test_drift_covers_location_and_spread_on_the_regular_grid():
    steps = [0, 100, 200, 500, 1000]
    c = {"eval:step": steps}
    # the median moves 1 per regular evaluation (width 2); finer early evaluations do not count
    p50 = [0.0, 0.3, 0.1, 1.0, 2.0]
    for b in ("b0",):
        c[f"eval:probe/act_in/{b}/u0/p50"] = p50
        c[f"eval:probe/act_in/{b}/u0/p15"] = [x - 1 for x in p50]
        c[f"eval:probe/act_in/{b}/u0/p85"] = [x + 1 for x in p50]
    assert act_in_drift(c, every=500) == pytest.approx(1.0 / 2)  # early evaluations ignored
    # a distribution that only widens (median fixed) has drifted too: spread counts
    spread = {"eval:step": [0, 500, 1000], "eval:probe/act_in/b0/u0/p50": [0.0, 0.0, 0.0],
              "eval:probe/act_in/b0/u0/p15": [-1.0, -2.0, -3.0], "eval:probe/act_in/b0/u0/p85": [1.0, 2.0, 3.0]}
    assert act_in_drift(spread, every=500) == pytest.approx((1 / 4 + 0 + 1 / 4) / 3)  # width mean 4
    assert act_in_drift({}) is None


def test_csv_round_trip_same_verdicts_and_no_machine_paths(store, tmp_path):
    runs = frame_from_store(store)
    write_csv(runs, tmp_path / "out" / "runs.csv")
    text = (tmp_path / "out" / "runs.csv").read_text()
    assert "/secret/" not in text and str(tmp_path) not in text and "eval:step" not in text, "curves apart"
    curves = (tmp_path / "out" / "runs.curves.jsonl.gz").read_bytes()
    write_csv(runs, tmp_path / "out" / "runs.csv")
    assert (tmp_path / "out" / "runs.curves.jsonl.gz").read_bytes() == curves, "the same bytes for the same runs"
    again = frame_from_csv(tmp_path / "out" / "runs.csv")
    a, b = claim_result(runs, spec(), ACCURACY), claim_result(again, spec(), ACCURACY)
    assert a["verdict"] == b["verdict"] and a["test"] == b["test"] == "paired t"
    assert a["effect"] == pytest.approx(b["effect"], rel=1e-4)
    assert again["curves"].iloc[0]["eval:step"] == [0, 500, 1000]


def test_a_run_that_diverged_before_its_first_evaluation_scores_the_untrained_net():
    from bnlab.analysis.frames import derive

    runs = pd.DataFrame([{"status": "diverged", "best/val/acc": np.nan, "best/test/acc": np.nan,
                          "curves": {"eval:step": [0, 100], "eval:val/acc": [0.098, 0.1], "eval:test/acc": [0.101, 0.1]}}])
    out = derive(runs)
    assert out.loc[0, "best/val/acc"] == 0.098 and out.loc[0, "best/test/acc"] == 0.101
    assert out.loc[0, "outcome"] == "diverged"


# ------------------------------------------------------------------ studies with more than two arms

def test_three_arm_study_gets_one_verdict_per_comparison_including_an_equivalence(tmp_path):
    from bnlab.analysis.spec import load_spec
    from bnlab.analysis.verdicts import study_verdicts
    from synthetic import THREE_ARM_STUDY, make_three_arm_store

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "three.yaml").write_text(THREE_ARM_STUDY)
    s = load_spec("three", tmp_path / "experiments")
    assert s.arms == ["none", "batch", "noisy_batch"]
    runs = frame_from_store(make_three_arm_store(tmp_path))
    assert best_settings(runs, s) == {a: {"cfg.optim.lr": 0.5} for a in ("batch", "noisy_batch", "none")}
    results = {r["id"]: r for r in study_verdicts(runs, s)}
    assert set(results) == {"accuracy_batch_vs_none", "accuracy_noisy_batch_vs_batch"}
    bn = results["accuracy_batch_vs_none"]
    assert (bn["baseline"], bn["treatment"], bn["test_kind"]) == ("none", "batch", "superiority")
    assert bn["verdict"] == "supported" and bn["effect"] == pytest.approx(0.010, abs=0.001)
    assert bn["decided_by"] == "confirmation seeds" and bn["test"] == "paired t"
    noisy = results["accuracy_noisy_batch_vs_batch"]
    assert (noisy["baseline"], noisy["treatment"], noisy["test_kind"]) == ("batch", "noisy_batch", "equivalence")
    assert noisy["verdict"] == "supported", noisy["reason"]
    assert noisy["effect"] == pytest.approx(-0.0005, abs=0.0005)
    assert -0.005 < noisy["ci_low"] and noisy["ci_high"] < 0.005 and noisy["test"] == "paired t, TOST"
    assert noisy["comparison"] == "noisy_batch ≈ batch (±0.005)" and noisy["claim_id"] == "accuracy"
    # each comparison's sensitivity at every lr the pair shares; no BN diverged at lr 2 only
    assert [x["setting"]["cfg.optim.lr"] for x in noisy["sensitivity"]] == [0.1, 0.5, 2.0]
    assert noisy["sensitivity_summary"].startswith("equivalent at")
    # an equivalence the data rule out: BN is not within ±0.005 of no BN
    no = claim_result(runs, s.for_comparison(Comparison("none", "batch", "equivalence", 0.005)),
                      {**THREE_ARM_CLAIM, "test": "equivalence", "margin": 0.005})
    assert no["verdict"] == "not supported" and "more than the margin" in no["reason"]


def test_comparisons_in_a_study_file_are_checked_with_one_line_errors(tmp_path):
    from bnlab.analysis.spec import load_spec
    from bnlab.errors import ConfigError
    from synthetic import THREE_ARM_STUDY

    d = tmp_path / "experiments"
    d.mkdir()
    cases = {
        "      equivalence_margin: 0.005\n": ("", r"analysis.claims\[accuracy\].equivalence_margin: got None; "
                                                r"the equivalence of noisy_batch and batch needs a margin > 0"),
        "test: equivalence}": ("test: same}", r"analysis.comparisons\[1\].test: got 'same'; allowed: superiority, equivalence"),
        "- {baseline: none, treatment: batch}": ("- {baseline: none}", r"analysis.comparisons\[0\]: .*needs baseline: and treatment:"),
    }
    for old, (new, message) in cases.items():
        (d / "bad.yaml").write_text(THREE_ARM_STUDY.replace("name: three", "name: bad").replace(old, new))
        with pytest.raises(ConfigError, match=message):
            load_spec("bad", d)


def test_equivalence_statistics():
    from bnlab.analysis.stats import equivalence

    base = [0.980, 0.975, 0.985, 0.978, 0.982]
    close = [b - 0.0005 + d for b, d in zip(base, (0.0002, -0.0001, 0.0001, -0.0002, 0.0))]
    r = equivalence(base, close, 0.005, paired=True)
    assert r["verdict"] == "supported" and r["p"] < 0.001 and r["test"] == "paired t, TOST"
    far = [b + 0.02 + d for b, d in zip(base, (0.0002, -0.0001, 0.0001, -0.0002, 0.0))]
    assert equivalence(base, far, 0.005, paired=True)["verdict"] == "not supported"
    # unpaired and noisy: the interval reaches past the margin, so nothing is shown either way
    noisy = [0.975, 0.990, 0.970, 0.988, 0.979]
    r = equivalence(base, noisy, 0.005)
    assert r["verdict"] == "inconclusive" and r["test"] == "Welch t, TOST" and r["ci_low"] < -0.005
    # bounds cannot show closeness; four seeds are too few
    assert equivalence(base, close, 0.005, censored_treatment=[1, 0, 0, 0, 0])["verdict"] == "inconclusive"
    assert equivalence(base[:4], close[:4], 0.005, paired=True)["verdict"] == "inconclusive"
    # no spread in the paired differences: the difference is known exactly
    r = equivalence(base, [b + 0.001 for b in base], 0.005, paired=True)
    assert r["verdict"] == "supported" and r["ci_low"] == r["ci_high"] == pytest.approx(0.001)


def test_steps_and_seconds_to_each_accuracy_come_from_the_curve_and_a_claim_can_pick_the_fastest_rate(tmp_path):
    from bnlab.analysis.measures import to_accuracy

    curves = {"eval:step": [0, 100, 200, 300], "eval:val/acc": [0.1, 0.94, 0.96, 0.975],
              "eval:time_s": [0.0, 0.5, 1.0, 1.5]}
    assert to_accuracy(curves, 0.95) == (200.0, 1.0) and to_accuracy(curves, 0.97) == (300.0, 1.5)
    assert to_accuracy(curves, 0.98) == (None, None)
    for seed in range(5):
        for norm in ("none", "batch"):
            write_run(tmp_path, "fast", norm, 0.5, seed, 0.98, 0.98)
            write_run(tmp_path, "fast", norm, 2.0, seed, 0.96, 0.96)
    runs = frame_from_store(tmp_path / "fast")
    # the synthetic curves reach 0.1 + (val - 0.1) * step / 1000 at steps 0, 500, 1000
    assert set(runs["steps_to_val_0.95"].dropna()) == {1000.0} and runs["steps_to_val_0.98"].isna().sum() == 10
    # on the highest validation accuracy lr 0.5 wins; "fastest" picks the fewest steps, and a
    # setting whose runs never got there counts at the budget (it is not fastest for lack of data)
    lr = runs["cfg.optim.lr"]
    runs["steps_x"] = np.where(lr == 2.0, 200.0, 300.0)
    runs.loc[(runs["cfg.model.norm"] == "batch") & (lr == 2.0), "steps_x"] = np.nan
    claim = {"claim": "speed", "metric": "steps_x", "select_on": "steps_x", "select_direction": "lower"}
    s = spec(confirm_seeds=[])
    assert best_settings(runs, s) == {"batch": {"cfg.optim.lr": 0.5}, "none": {"cfg.optim.lr": 0.5}}
    assert best_settings(runs, s, claim) == {"batch": {"cfg.optim.lr": 0.5}, "none": {"cfg.optim.lr": 2.0}}
    # ties on the claim's metric (every rate censored at the budget, or the same evaluation)
    # go to the study's selection, the highest validation accuracy: not to the first rate
    runs.loc[(runs["cfg.model.norm"] == "none") & (lr == 2.0), "best/val/acc"] = 0.99
    for tied in (np.nan, 300.0):
        runs["steps_y"] = tied
        claim_y = {**claim, "metric": "steps_y", "select_on": "steps_y"}
        assert best_settings(runs, s, claim_y) == {"batch": {"cfg.optim.lr": 0.5}, "none": {"cfg.optim.lr": 2.0}}
    # seconds to a target no run reached: each run's own training time is only a bound, and
    # must not rank the rates (lr 0.5's runs happen to be quicker here)
    runs["time_to_val_0.99_s"] = np.nan
    runs["train_time_s"] = np.where(lr == 0.5, 10.0, 12.0)
    secs = {**claim, "metric": "time_to_val_0.99_s", "select_on": "time_to_val_0.99_s"}
    assert best_settings(runs, s, secs) == {"batch": {"cfg.optim.lr": 0.5}, "none": {"cfg.optim.lr": 2.0}}


def test_a_claim_about_some_runs_only_and_a_study_with_an_extra_grid(store):
    from bnlab.analysis.selection import where
    from bnlab.analysis.spec import load_spec

    runs = frame_from_store(store)
    assert len(where(runs, {"where": {"model.name": "mlp"}})) == len(runs)
    assert where(runs, {"where": {"model.name": "deep_mlp"}}).empty
    r = claim_result(runs, spec(), {**ACCURACY, "where": {"model.name": "deep_mlp"}})
    assert r["verdict"] == "inconclusive" and r["seeds"] == []
    init = load_spec("init_mnist")
    assert init.sweeps == [["init=xavier,kaiming,default", "init.std=null"]]
    assert [c.get("where") for c in init.claims] == [{"model.name": "mlp"}, {"model.name": "deep_mlp"}]


def test_sensitivity_rows_are_named_by_what_varies():
    from bnlab.analysis.verdicts import summarize_sensitivity

    row = {"verdict": "inconclusive", "p": 0.5, "effect": 0.001}
    rows = [{**row, "setting": {"cfg.model.dropout": 0.0, "cfg.model.dropout_placement": "after_each_activation",
                                "cfg.optim.lr": lr}} for lr in (0.5, 1.0)]
    assert summarize_sensitivity(rows, spec()) == "inconclusive at lr 0.5, lr 1"
    rows = [{**row, "setting": {"cfg.model.dropout_placement": p}} for p in ("after_each_activation", "before_classifier")]
    assert summarize_sensitivity(rows, spec()) == \
        "inconclusive at dropout_placement=after_each_activation, dropout_placement=before_classifier"


def _gain_runs(none_gains: list[float], batch_gains: list[float]) -> pd.DataFrame:
    """Dropout 0 and 0.1 per arm and seed (tuning 0-4, confirmation 100-104); on the
    confirmation seeds each arm's dropout 0.1 beats its dropout 0 by the given gains."""
    rows = []
    for i, seed in enumerate([*range(5), *range(100, 105)]):
        for arm, gains in (("none", none_gains), ("batch", batch_gains)):
            base = 0.97 + 0.001 * (i % 5)
            for p in (0.0, 0.1):
                rows.append({"cfg.model.norm": arm, "cfg.seed": seed, "cfg.model.dropout": p, "status": "completed",
                             "best/test/acc": base + (gains[i % 5] if p else 0.0),
                             "best/val/acc": 0.97 + 0.01 * (p == 0.1), "paired": 1, "outcome": "learned"})
    return pd.DataFrame(rows)


def test_a_gain_claims_precondition_is_measured_and_said_either_way():
    """`precondition: baseline_benefits`: "BN reduces the need for dropout" presumes the no-BN
    arm needs it. Its gain's 95% interval above 0 lets the verdict stand, and the reason says so
    with the interval; an interval that reaches 0 makes the verdict inconclusive, whatever BN does."""
    claim = {"claim": "dropout", "kind": "gain", "over": "model.dropout", "reference": 0.0,
             "metric": "best/test/acc", "direction": "lower", "min_effect": 0.002,
             "precondition": "baseline_benefits"}
    s = spec(tune=["model.dropout"])
    needed = claim_result(_gain_runs([0.006, 0.004, 0.005, 0.007, 0.005], [0.0, 0.001, -0.001, 0.0, 0.0005]), s, claim)
    assert needed["verdict"] == "supported"
    assert needed["precondition"] == ("the precondition holds: the no-BN arm gains from model.dropout "
                                      "(+0.0054 [+0.003984, +0.006816])")

    not_needed = claim_result(_gain_runs([0.002, -0.002, 0.001, -0.001, 0.0], [-0.004, -0.006, -0.005, -0.004, -0.006]),
                              s, claim)
    assert not_needed["verdict"] == "inconclusive"
    assert not_needed["reason"].startswith("the precondition fails: the no-BN arm gains nothing measurable")
    assert "from model.dropout here (+0 [-0.00" in not_needed["reason"]
    without = claim_result(_gain_runs([0.002, -0.002, 0.001, -0.001, 0.0], [-0.004, -0.006, -0.005, -0.004, -0.006]),
                           s, {k: v for k, v in claim.items() if k != "precondition"})
    assert without["verdict"] == "supported", "without the precondition the same runs would support the claim"


def test_the_training_loss_and_activation_statistics_are_read_off_the_curves():
    """RUN_MEASURES: the lowest logged training loss and the first step at or below 0.1; the
    activation-statistics probe at the last evaluation, mean over layers; nothing where the
    probe did not log."""
    from bnlab.analysis.measures import add_measures

    curves = {"train:step": [100, 200, 300, 400], "train:train/loss": [0.9, 0.2, 0.08, 0.11],
              "eval:step": [0, 500], "eval:probe/act_stats/b0/train/corr_abs": [0.5, 0.3],
              "eval:probe/act_stats/b1/train/corr_abs": [0.4, 0.1]}
    runs = add_measures(pd.DataFrame({"curves": [curves, {"train:step": [100], "train:train/loss": [2.0]}],
                                      "status": ["completed", "completed"]}))
    assert runs["best/train/loss"].tolist() == [0.08, 2.0]
    assert runs["steps_to_train_loss_0.1"].tolist()[0] == 300.0 and pd.isna(runs["steps_to_train_loss_0.1"][1])
    assert runs["act_train_corr_abs"][0] == pytest.approx(0.2) and pd.isna(runs["act_train_corr_abs"][1])
    assert pd.isna(runs["act_eval_corr_abs"][0])  # not logged in eval mode here
