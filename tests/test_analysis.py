"""Verdicts on data whose answer is known, per-arm selection on validation data, the CSV
round trip, figures holding the data they should, and the report."""
import json

import numpy as np
import pandas as pd
import pytest

import bnlab.plots as plots
from bnlab.analysis import (StudySpec, act_in_drift, best_settings, claim_result, frame_from_csv,
                            frame_from_store, per_seed_values, seed_stats, welch, write_csv)
from bnlab.report import main as report_main
from bnlab.report import study_results
from bnlab.store import RunWriter, fingerprint

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- the verdict rule

def test_clear_effect_is_supported():
    b, t = 0.970 + 0.001 * RNG.standard_normal(5), 0.980 + 0.001 * RNG.standard_normal(5)
    r = welch(b, t, "higher", min_effect=0.002)
    assert r["verdict"] == "supported" and r["ci_low"] > 0 and r["p"] < 0.001
    assert abs(r["effect"] - (t.mean() - b.mean())) < 1e-12 and r["hedges_g"] > 3


def test_no_effect_is_not_supported():
    b, t = 0.975 + 0.0005 * RNG.standard_normal(8), 0.975 + 0.0005 * RNG.standard_normal(8)
    r = welch(b, t, "higher", min_effect=0.002)
    assert r["verdict"] == "not supported" and r["ci_high"] < 0.002


def test_effect_in_the_opposite_direction_is_not_supported():
    b, t = 0.98 + 0.001 * RNG.standard_normal(5), 0.97 + 0.001 * RNG.standard_normal(5)
    r = welch(b, t, "higher", min_effect=0.002)
    assert r["verdict"] == "not supported" and r["effect"] < 0 and "opposite" in r["reason"]


def test_lower_is_better_metrics_are_signed():
    b, t = 3000 + 50 * RNG.standard_normal(5), 1500 + 50 * RNG.standard_normal(5)
    r = welch(b, t, "lower", min_effect=250)
    assert r["verdict"] == "supported" and r["effect"] > 1000


def test_too_few_seeds_is_inconclusive_even_with_a_big_effect():
    r = welch([0.90, 0.91, 0.905], [0.98, 0.981, 0.979], "higher", min_effect=0.002)
    assert r["verdict"] == "inconclusive" and "seeds" in r["reason"] and r["effect"] > 0.07


def test_noisy_data_is_inconclusive():
    b = [0.95, 0.99, 0.93, 0.97, 0.96]
    t = [0.97, 0.95, 0.99, 0.98, 0.94]
    assert welch(b, t, "higher", min_effect=0.002)["verdict"] == "inconclusive"


def test_seed_stats_interval():
    s = seed_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["n"] == 5 and s["mean"] == 3.0 and abs(s["ci_high"] - 3 - 2.776 * np.sqrt(2.5) / np.sqrt(5)) < 1e-3


# ---------------------------------------------------------------- synthetic run stores

def _write_run(root, name, norm, lr, seed, val, test, status="completed", steps_to_target=None,
               probe_drift=0.0, dropout=0.0, std=0.1):
    config = {"name": name, "seed": seed, "data": {"name": "mnist", "train_subset": None},
              "model": {"name": "mlp", "norm": norm, "dropout": dropout},
              "optim": {"lr": lr, "batch_size": 60}, "init": {"std": std},
              "trainer": {"max_steps": 1000}}
    fp = fingerprint(config)
    w = RunWriter(root / name / f"{norm}-{lr}-{dropout}-{std}-{seed}")
    w.start({"config": config, "fingerprint": fp, "env": {"device": "cpu", "device_name": "test-cpu",
                                                          "torch": "x", "torch_threads": 1}})
    for i, step in enumerate((0, 500, 1000)):
        frac = step / 1000
        rec = {"step": step, "samples": step * 60, "time_s": step * 0.001, "lr": lr,
               "val/acc": 0.1 + (val - 0.1) * frac, "test/acc": 0.1 + (test - 0.1) * frac}
        for u in ("u0", "u1"):
            mid = probe_drift * i
            rec.update({f"probe/act_in/{u}/p15": mid - 1, f"probe/act_in/{u}/p50": mid,
                        f"probe/act_in/{u}/p85": mid + 1})
        if step:
            rec["train/loss"] = 2.3 * (1 - frac) + 0.05
        w.log(rec)
    w.finish({"status": status, "steps": 1000, "fingerprint": fp, "val/acc": val, "test/acc": test,
              "best/val/acc": val, "best/test/acc": test, "steps_to_target": steps_to_target,
              "step_time_ms": 1.0 if norm == "none" else 1.3})


def _spec(**kw):
    base = dict(name="synth", description="synthetic", claims=[], tune=["optim.lr"], max_steps=1000)
    return StudySpec(**{**base, **kw})


@pytest.fixture
def store(tmp_path):
    """BN better by 0.01 at its best lr; no-BN's best lr on *validation* is 0.5 although
    lr 0.1 has the best *test* accuracy (selection must use validation)."""
    for seed in range(5):
        e = 0.001 * RNG.standard_normal()
        _write_run(tmp_path, "synth", "batch", 0.5, seed, 0.981 + e, 0.980 + e, steps_to_target=300, probe_drift=0.0)
        _write_run(tmp_path, "synth", "batch", 2.0, seed, 0.975 + e, 0.974 + e, steps_to_target=400)
        _write_run(tmp_path, "synth", "none", 0.5, seed, 0.972 + e, 0.970 + e, steps_to_target=900, probe_drift=0.5)
        _write_run(tmp_path, "synth", "none", 0.1, seed, 0.960 + e, 0.985 + e, steps_to_target=None)
        _write_run(tmp_path, "synth", "none", 2.0, seed, 0.10, 0.098, status="diverged")
    return tmp_path


def test_best_setting_is_chosen_on_validation_not_test(store):
    runs = frame_from_store(store / "synth")
    assert len(runs) == 25
    assert best_settings(runs, _spec()) == {"batch": {"cfg.optim.lr": 0.5}, "none": {"cfg.optim.lr": 0.5}}
    r = claim_result(runs, _spec(), {"claim": "accuracy", "kind": "compare", "metric": "best/test/acc",
                                     "direction": "higher", "min_effect": 0.002})
    assert r["verdict"] == "supported" and abs(r["effect"] - 0.010) < 0.003


def test_steps_to_target_censors_runs_that_never_reach_it(store):
    runs = frame_from_store(store / "synth")
    pv = per_seed_values(runs, _spec(), {"claim": "speed", "kind": "compare", "metric": "steps_to_target",
                                         "matched": {"optim.lr": 0.1}})
    assert pv["values"]["none"].tolist() == [1000.0] * 5 and pv["chosen"]["none censored"] == 5
    r = claim_result(runs, _spec(), {"claim": "speed", "kind": "compare", "metric": "steps_to_target",
                                     "direction": "lower", "min_effect": 100})
    assert r["verdict"] == "supported" and r["effect"] == pytest.approx(600)


def test_drift_metric_from_percentile_curves(store):
    runs = frame_from_store(store / "synth")
    flat = runs[(runs["cfg.model.norm"] == "batch")]["act_in_drift"]
    moving = runs[(runs["cfg.model.norm"] == "none") & (runs["cfg.optim.lr"] == 0.5)]["act_in_drift"]
    assert (flat == 0).all() and np.allclose(moving, 0.25)  # median moves 0.5 per eval, width 2
    assert act_in_drift({}) is None


def test_max_usable_worst_case_and_gain_kinds():
    rows = []
    for seed in range(5):
        for lr in (0.1, 1.0, 10.0):
            rows.append({"cfg.model.norm": "batch", "cfg.seed": seed, "cfg.optim.lr": lr, "status": "completed",
                         "best/val/acc": 0.95})
            ok = lr < 5
            rows.append({"cfg.model.norm": "none", "cfg.seed": seed, "cfg.optim.lr": lr,
                         "status": "completed" if ok else "diverged", "best/val/acc": 0.95 if ok else 0.1})
    runs = pd.DataFrame(rows)
    spec = _spec()
    r = claim_result(runs, spec, {"claim": "lr", "kind": "max_usable", "over": "optim.lr", "threshold": 0.9,
                                  "direction": "higher", "min_effect": 0.5})
    assert r["treatment_values"] == [np.log2(10.0)] * 5 and r["baseline_values"] == [0.0] * 5
    assert r["verdict"] == "supported"

    rows = []
    for seed in range(5):
        for std in (0.01, 1.0):
            rows.append({"cfg.model.norm": "batch", "cfg.seed": seed, "cfg.init.std": std, "status": "completed",
                         "best/test/acc": 0.97, "best/val/acc": 0.97})
            rows.append({"cfg.model.norm": "none", "cfg.seed": seed, "cfg.init.std": std, "status": "completed",
                         "best/test/acc": 0.97 if std == 0.01 else 0.11 + 0.001 * seed, "best/val/acc": 0.5})
    r = claim_result(pd.DataFrame(rows), _spec(tune=["init.std"]),
                     {"claim": "init", "kind": "worst_case", "over": "init.std", "metric": "best/test/acc",
                      "direction": "higher", "min_effect": 0.01})
    assert r["baseline_values"] == pytest.approx([0.11, 0.111, 0.112, 0.113, 0.114]) and r["verdict"] == "supported"

    rows = []
    for seed in range(5):
        for p in (0.0, 0.3):
            rows.append({"cfg.model.norm": "batch", "cfg.seed": seed, "cfg.model.dropout": p, "status": "completed",
                         "best/test/acc": 0.98 - 0.002 * (p > 0) + 0.0001 * seed, "best/val/acc": 0.98 - p / 100})
            rows.append({"cfg.model.norm": "none", "cfg.seed": seed, "cfg.model.dropout": p, "status": "completed",
                         "best/test/acc": 0.97 + 0.005 * (p > 0) + 0.0001 * seed, "best/val/acc": 0.97})
    r = claim_result(pd.DataFrame(rows), _spec(tune=["model.dropout"]),
                     {"claim": "dropout", "kind": "gain", "over": "model.dropout", "reference": 0.0,
                      "metric": "best/test/acc", "direction": "lower", "min_effect": 0.002})
    assert r["baseline_values"] == pytest.approx([0.005] * 5) and r["treatment_values"] == pytest.approx([-0.002] * 5)
    assert r["verdict"] == "supported"


def test_csv_round_trip_gives_the_same_verdicts(store, tmp_path):
    runs = frame_from_store(store / "synth")
    write_csv(runs, tmp_path / "out" / "runs.csv")
    again = frame_from_csv(tmp_path / "out" / "runs.csv")
    claim = {"claim": "accuracy", "kind": "compare", "metric": "best/test/acc", "direction": "higher",
             "min_effect": 0.002}
    a, b = claim_result(runs, _spec(), claim), claim_result(again, _spec(), claim)
    assert a["verdict"] == b["verdict"] and a["effect"] == pytest.approx(b["effect"], rel=1e-4)
    assert again["curves"].iloc[0]["eval:step"] == [0, 500, 1000]


def test_figures_hold_the_data(store, tmp_path, monkeypatch):
    drawn = {}

    def capture(fig, path):
        drawn[path.name] = fig
        return path

    monkeypatch.setattr(plots, "save", capture)
    runs = frame_from_store(store / "synth")
    spec = _spec()
    res = [claim_result(runs, spec, {"claim": "accuracy", "kind": "compare", "metric": "best/test/acc",
                                     "direction": "higher", "min_effect": 0.002})]
    plots.plot_study(runs, spec, res, tmp_path / "figs")
    assert {"convergence.png", "best_test_acc_vs_lr.png", "act_input_percentiles.png",
            "claim_accuracy.png"} <= set(drawn)
    # convergence: the BN line is the seed-mean of BN's lr-0.5 val/acc curves
    ax = drawn["convergence.png"].axes[0]
    bn_line = next(ln for ln in ax.lines if ln.get_label().startswith("BN"))
    sel = runs[(runs["cfg.model.norm"] == "batch") & (runs["cfg.optim.lr"] == 0.5)]
    expected = np.mean([c["eval:val/acc"] for c in sel["curves"]], axis=0)
    assert np.allclose(bn_line.get_ydata(), expected) and list(bn_line.get_xdata()) == [0, 500, 1000]
    # accuracy vs lr: the no-BN points are the per-lr means; the diverged lr is marked
    ax = drawn["best_test_acc_vs_lr.png"].axes[0]
    none_line = next(ln for ln in ax.lines if ln.get_label() == "no BN")
    fin = runs[(runs["cfg.model.norm"] == "none") & (runs.status == "completed")]
    means = fin.groupby("cfg.optim.lr")["best/test/acc"].mean()
    assert list(none_line.get_xdata()[:2]) == [0.1, 0.5]
    assert np.allclose(none_line.get_ydata()[:2], means.values)
    assert any(t.get_text() == "5/5" for t in ax.texts), "diverged runs are counted on the plot"


def test_report_from_runs_then_from_csv_alone(store, tmp_path, monkeypatch):
    # Synthetic runs named like the real mnist_mlp study, in a private results folder.
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    (store / "synth").rename(results / "runs" / "mnist_mlp")
    for p in (results / "runs" / "mnist_mlp").rglob("run.json"):
        d = json.loads(p.read_text())
        d["config"]["name"] = "mnist_mlp"
        d["config"]["trainer"]["max_steps"] = 10000  # the study's budget
        p.write_text(json.dumps(d))
    # a quick check launched with another budget is not part of the study's evidence
    _write_run(results / "runs", "mnist_mlp", "batch", 0.5, 9, 0.5, 0.5)
    report_main(["--results", str(results)])
    text = (results / "REPORT.md").read_text()
    assert "Left out: 1 run(s)" in text and "trainer.max_steps" in text
    assert "| 3. Accuracy is higher | **supported** |" in text
    assert "not run yet" in text  # the studies without runs say so
    for link in [ln.split("](")[1].rstrip(")") for ln in text.splitlines() if ln.startswith("![")]:
        assert (results / link).exists(), link
    csv = results / "mnist_mlp" / "runs.csv"
    assert csv.exists() and len(pd.read_csv(csv)) == 25
    # numbers in the report agree with the CSV beside it
    s = study_results("mnist_mlp", results, runs_root=tmp_path / "no-runs-here")
    assert s["source"].startswith("committed CSV")
    acc = next(r for r in s["results"] if r["claim"] == "accuracy")
    assert f"{acc['effect']:+.4g} [{acc['ci_low']:+.4g}, {acc['ci_high']:+.4g}]" in text
    # and the figures regenerate from the CSV alone
    for f in (results / "mnist_mlp").glob("*.png"):
        f.unlink()
    report_main(["--results", str(results), "--runs-root", str(tmp_path / "no-runs-here")])
    assert (results / "mnist_mlp" / "convergence.png").exists()
    assert (results / "REPORT.md").read_text().split("## Verdicts")[1].split("**How")[0] == \
        text.split("## Verdicts")[1].split("**How")[0]
