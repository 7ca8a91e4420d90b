"""The per-study pipeline end to end on synthetic stores: figures that hold the data, the
report (from runs, then from the committed CSV alone), bnlab-plot on a folder of runs
launched ad hoc, and bnlab-status's choices and edge warnings."""
import json

import numpy as np
import pandas as pd
import pytest

import bnlab.views.figures as plots
from bnlab.analysis.selection import fixed_settings
from bnlab.analysis.verdicts import claim_result
from bnlab.analysis.frames import frame_from_store
from bnlab.plot_command import main as plot_main
from bnlab.views.report import main as report_main
from bnlab.analysis.stats import effect_text
from bnlab.status import main as status_main
from bnlab.analysis.study import load_study
from bnlab.views.style import ARM_COLOURS

from synthetic import ACCURACY, make_store, spec, write_run


def assert_links_exist(page):
    """Every relative link of a Markdown page (figures and pages) names a file that exists."""
    import re
    text = page.read_text()
    links = [m for m in re.findall(r"\]\(([^)\s]+)\)", text) if not m.startswith(("http://", "https://"))]
    assert links, f"{page} links nothing"
    missing = [m for m in links if not (page.parent / m).exists()]
    assert not missing, f"{page}: dead links {missing}"


@pytest.fixture
def store(tmp_path):
    """The synthetic study of tests/synthetic.py: tuning seeds 0-4, confirmation seeds 100-104."""
    return make_store(tmp_path, rng_seed=1)


def test_figures_hold_the_data(store, tmp_path, monkeypatch):
    drawn = {}

    def capture(fig, path):
        drawn[path.name] = fig
        return path

    monkeypatch.setattr(plots, "save", capture)
    runs = frame_from_store(store)
    res = [claim_result(runs, spec(), ACCURACY)]
    import matplotlib.pyplot as plt
    open_before = plt.get_fignums()
    plots.plot_study(runs, spec(), res, tmp_path / "figs")
    # every figure is closed once drawn, even with `save` (which closes) replaced by a capture
    assert plt.get_fignums() == open_before and len(drawn) >= 5
    assert {"convergence.png", "best_test_acc_vs_lr.png", "act_input_percentiles.png",
            "claim_accuracy.png", "sensitivity.png"} <= set(drawn)
    # convergence: the BN line is the seed-mean of BN's confirmation runs at its chosen lr
    ax = drawn["convergence.png"].axes[0]
    bn_line = next(ln for ln in ax.lines if ln.get_label().startswith("BN"))
    sel = runs[(runs["cfg.model.norm"] == "batch") & (runs["cfg.seed"] >= 100)]
    expected = np.mean([c["eval:val/acc"] for c in sel["curves"]], axis=0)
    assert np.allclose(bn_line.get_ydata(), expected) and list(bn_line.get_xdata()) == [0, 500, 1000]
    # accuracy vs lr: the no-BN points are the per-lr means of the tuning seeds; the diverged lr is marked
    ax = drawn["best_test_acc_vs_lr.png"].axes[0]
    none_line = next(ln for ln in ax.lines if ln.get_label() == "no BN")
    fin = runs[(runs["cfg.model.norm"] == "none") & (runs.status == "completed") & (runs["cfg.seed"] < 100)]
    means = fin.groupby("cfg.optim.lr")["best/test/acc"].mean()
    assert list(none_line.get_xdata()[:2]) == [0.1, 0.5]
    assert np.allclose(none_line.get_ydata()[:2], means.values)
    assert any(t.get_text() == "5/5" for t in ax.texts), "diverged runs are counted on the plot"


def _as_mnist_mlp(store, tmp_path):
    """The synthetic store as mnist_mlp's run store under tmp_path/results/runs (35 runs at the
    study's budget), plus one quick check launched with another budget: not the study's evidence."""
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    store.rename(results / "runs" / "mnist_mlp")
    for p in (results / "runs" / "mnist_mlp").rglob("run.json"):
        d = json.loads(p.read_text())
        d["config"]["name"] = "mnist_mlp"
        d["config"]["trainer"].update(max_steps=10000, eval_every_early=100, early_steps=5000)  # the study's
        p.write_text(json.dumps(d))
    write_run(results / "runs", "mnist_mlp", "batch", 0.5, 9, 0.5, 0.5)
    return results


def test_status_and_plot_read_the_same_runs_and_say_which(store, tmp_path, capsys):
    """One loader for every command: bnlab-status and bnlab-plot print the same line (source,
    run count, what was left out) for a study's run store, and for the committed CSV when there is
    no store (bnlab-status on a fresh clone once failed with "no study")."""
    results = _as_mnist_mlp(store, tmp_path)
    status_main(["mnist_mlp", "--runs-root", str(results / "runs")])
    from_status = capsys.readouterr().out.splitlines()[0]
    plot_main(["mnist_mlp", "--results", str(results)])
    from_plot = capsys.readouterr().out.splitlines()[0]
    assert from_status == from_plot
    assert from_status.startswith("mnist_mlp: 35 runs") and "run store" in from_status and "1 left out" in from_status
    status_main(["quickstart", "--runs-root", str(tmp_path / "no-runs-here")])
    said = capsys.readouterr().out
    assert said.splitlines()[0].startswith("quickstart: 4 runs") and "committed CSV" in said.splitlines()[0]
    assert "quickstart: 4 runs, 2 seed(s)" in said


def test_report_from_runs_then_from_csv_alone(store, tmp_path, capsys):
    results = _as_mnist_mlp(store, tmp_path)
    report_main(["--results", str(results)])
    said = capsys.readouterr().out
    # one line per study naming its source; the run left out is said there, not on the page
    # (the page must regenerate byte for byte from the CSV, which does not hold it)
    line = next(ln for ln in said.splitlines() if ln.startswith("mnist_mlp: "))
    assert "35 runs" in line and "from the run store" in line and "1 left out" in line and "trainer.max_steps" in line
    report = (results / "REPORT.md").read_text()
    assert "| `mnist_mlp` | 35 |" in report and "[`mnist_mlp`](mnist_mlp/README.md)" in report
    assert_links_exist(results / "REPORT.md")
    page = results / "mnist_mlp" / "README.md"  # the study's own page holds its every row
    text = page.read_text()
    assert_links_exist(page)
    assert "Left out" not in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| 3. Accuracy is higher `accuracy`"))
    # mnist_mlp's accuracy is exploratory (the primary accuracy test is ioffe_fig1's): no verdict word
    assert "**exploratory**" in row and "**supported**" not in row and "paired t" in row
    assert "confirmation seeds: 100–104 (chosen on seeds 0–4)" in row
    assert "not run yet" in report  # the studies without runs say so
    assert "## Budgets and wall time" in report
    assert "Sensitivity of `accuracy`" in text
    csv = results / "mnist_mlp" / "runs.csv"
    assert csv.exists() and len(pd.read_csv(csv)) == 35
    assert "/secret/" not in csv.read_text() and str(tmp_path) not in csv.read_text()
    # numbers in the report agree with the CSV beside it
    s = load_study("mnist_mlp", results, runs_root=tmp_path / "no-runs-here")
    assert s["source"].startswith("committed CSV")
    acc = claim_result(s["runs"], s["spec"], next(c for c in s["spec"].claims if c["claim"] == "accuracy"))
    assert effect_text(acc) in row
    # regenerated from the CSVs alone (a fresh clone's `make report`), every file the report
    # wrote comes out byte for byte the same: the committed results are a fixed point
    def written():
        return {p.relative_to(results): p.read_bytes() for p in sorted(results.rglob("*"))
                if p.is_file() and "runs" not in p.relative_to(results).parts[:1]}
    before = written()
    assert {"REPORT.md", "mnist_mlp/README.md", "mnist_mlp/convergence.png"} <= {str(p) for p in before}
    for f in (results / "mnist_mlp").glob("*.png"):
        f.unlink()
    capsys.readouterr()
    report_main(["--results", str(results), "--runs-root", str(tmp_path / "no-runs-here")])
    assert "mnist_mlp: 35 runs from the committed CSV" in capsys.readouterr().out
    after = written()
    assert after.keys() == before.keys()
    assert [str(p) for p in after if after[p] != before[p]] == []


def test_plot_and_status_on_a_folder_of_runs_launched_ad_hoc(tmp_path, capsys):
    """bnlab-train -m model.norm=none,batch optim.lr=… seed=… with no study file: the folder
    is plotted with the arm key found from what was swept."""
    folder = tmp_path / "runs" / "default" / "multirun_x"
    for seed in range(3):
        for lr in (0.1, 1.0):
            for norm in ("none", "batch"):
                write_run(tmp_path, "default", norm, lr, seed, 0.9 + 0.01 * lr * (norm == "batch"), 0.9,
                          path=folder / f"{norm}-{lr}-{seed}")
    plot_main([str(folder), "--results", str(tmp_path / "results")])
    out = capsys.readouterr().out
    figures = folder / "figures"
    assert (figures / "convergence.png").exists() and (figures / "best_test_acc_vs_lr.png").exists()
    assert (figures / "runs.csv").exists() and "/secret/" not in (figures / "runs.csv").read_text()
    assert "12 runs" in out
    status_main([str(folder)])
    out = capsys.readouterr().out
    assert "12 runs, 3 seed(s); swept: seed, model.norm, optim.lr" in out
    assert "learned  did not learn  diverged" in out
    assert "chosen for model.norm=batch" in out and "top of its grid" in out


def test_plot_command_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        plot_main([str(tmp_path / "nothing-here")])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "neither a study" in err and "\n" not in err


def test_a_three_arm_study_in_the_report_and_figures(tmp_path, monkeypatch):
    """none, batch, noisy_batch: one verdict row per comparison (the equivalence with its
    margin), and every figure draws each arm in its own norm's colour."""
    from bnlab.analysis.spec import load_spec
    from bnlab.analysis.frames import budget
    from bnlab.views.report import write_report
    from bnlab.analysis.study import decide
    from synthetic import THREE_ARM_STUDY, make_three_arm_store

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "three.yaml").write_text(THREE_ARM_STUDY)
    s = load_spec("three", tmp_path / "experiments")
    runs = frame_from_store(make_three_arm_store(tmp_path))
    study = {"name": "three", "spec": s, "ran": True, "runs": runs, "source": "synthetic", "out": tmp_path / "figs",
             "left_out": {"stale": 0, "differing": {}}, "budget": budget(runs, s.arm_col)}
    decide([study])
    assert [r["family_size"] for r in study["results"]] == [2, 2]
    drawn = {}

    def capture(fig, path):
        drawn[path.name] = fig
        return path

    monkeypatch.setattr(plots, "save", capture)
    study["figures"] = plots.plot_study(runs, s, study["results"], tmp_path / "figs")
    assert {"claim_accuracy_batch_vs_none.png", "claim_accuracy_noisy_batch_vs_batch.png"} <= set(drawn)
    ax = drawn["convergence.png"].axes[0]
    lines = {ln.get_label().split(" (")[0]: ln.get_color() for ln in ax.lines if not ln.get_label().startswith("_")}
    assert {k: v for k, v in lines.items() if not k.startswith("target")} == {
        "no BN": ARM_COLOURS["none"], "BN": ARM_COLOURS["batch"],
        "noisy BN": ARM_COLOURS["noisy_batch"]}
    ax = drawn["best_test_acc_vs_lr.png"].axes[0]
    assert {ln.get_label() for ln in ax.lines} >= {"no BN", "BN", "noisy BN"}
    sens = drawn["sensitivity.png"]
    assert any("equivalence" in ax.get_title() for ax in sens.axes)
    path = tmp_path / "REPORT.md"
    write_report([study], path)
    text = (tmp_path / "figs" / "README.md").read_text()  # the study's page
    rows = [ln for ln in text.splitlines() if ln.startswith("| 3. Accuracy is higher")]
    assert len(rows) == 2
    assert "`accuracy_batch_vs_none`: BN vs no BN | **supported** (this study's own family, m = 2)" in rows[0]
    assert ("`accuracy_noisy_batch_vs_batch`: noisy BN ≈ BN (equivalence within ±0.005) | **supported** "
            "(this study's own family, m = 2)") in rows[1]
    assert "paired t, TOST" in rows[1] and "equivalent at" in rows[1]
    assert "**Claim `accuracy_noisy_batch_vs_batch`**, noisy BN ≈ BN" in text and "equivalence margin ±0.005" in text
    assert "| optim.lr | BN | noisy BN | effect [95% CI]" in text  # the sensitivity table names its arms


def test_ioffe_figure_1_is_drawn_from_the_runs_that_decided(store, tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    runs = frame_from_store(store)
    s = spec(figures=["ioffe_fig1"])
    claim = {**ACCURACY, "literature_values": {"none": 0.9735, "batch": 0.98}}
    plots.plot_study(runs, s, [claim_result(runs, s, claim)], tmp_path / "figs")
    a, b, c = drawn["fig1.png"].axes[:3]
    bn = next(ln for ln in a.lines if ln.get_label().startswith("BN"))
    sel = runs[(runs["cfg.model.norm"] == "batch") & (runs["cfg.seed"] >= 100)]
    assert np.allclose(bn.get_ydata(), np.mean([c_["eval:test/acc"] for c_ in sel["curves"]], axis=0))
    assert {t.get_label() for t in a.collections if t.get_label().startswith("paper")} == {"paper, no BN", "paper, BN"}
    assert b.get_title().startswith("(b) no BN") and c.get_title().startswith("(c) BN")
    assert len([ln for ln in c.lines if "percentile" in ln.get_label()]) == 3


def test_runs_made_before_a_key_existed_still_belong_to_their_study():
    """A study whose older runs lack a key that newer runs record (NaN in the frame) keeps
    them when the key is at its neutral value; a real difference still leaves a run out."""
    from bnlab.resolvers import REPO_ROOT
    from bnlab.analysis.frames import frame_from_csv
    from bnlab.analysis.study import current_runs

    runs = frame_from_csv(REPO_ROOT / "results" / "mnist_mlp" / "runs.csv")
    runs["cfg.probes.landscape.enabled"] = pd.Series([np.nan] * len(runs), dtype=object)  # older runs: no such key
    runs.loc[runs.index[:3], "cfg.probes.landscape.enabled"] = False  # newer runs: its neutral value
    kept, left_out = current_runs(runs, "mnist_mlp")
    assert len(kept) == len(runs) and left_out["stale"] == 0
    runs.loc[runs.index[0], "cfg.probes.landscape.enabled"] = True
    kept, left_out = current_runs(runs, "mnist_mlp")
    assert left_out["stale"] == 1 and "probes.landscape.enabled" in left_out["differing"]


def test_a_study_tuning_the_rate_per_cell_draws_each_cell_at_its_own_rate(tmp_path, monkeypatch):
    """Dropout x placement with the lr tuned per cell: the figure over dropout rates draws each
    point at its cell's best rate on validation (not a mean over rates nobody would choose),
    the no-dropout point on both placements' lines; the figure over rates takes, at each rate,
    the best dropout cell."""
    from synthetic import dropout_cell_runs

    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    runs = dropout_cell_runs()
    s = spec(tune=["model.dropout", "model.dropout_placement", "optim.lr"])
    plots.plot_metric_by(runs, s, "model.dropout", "best/test/acc", tmp_path)
    lines = {ln.get_label(): ln for ln in drawn["best_test_acc_by_dropout.png"].axes[0].lines}
    tuning = runs[runs["cfg.seed"] < 5]

    def mean_at(norm, p, place, lr):
        sel = tuning[(tuning["cfg.model.norm"] == norm) & (tuning["cfg.model.dropout"] == p)
                     & (tuning["cfg.model.dropout_placement"] == place) & (tuning["cfg.optim.lr"] == lr)]
        return sel["best/test/acc"].mean()

    after, before = lines["no BN, after_each_activation"], lines["no BN, before_classifier"]
    assert list(after.get_xdata()) == [0.0, 0.2] and list(before.get_xdata()) == [0.0, 0.2]
    # no BN: no dropout at lr 2, dropout 0.2 after each activation at lr 0.5, before the classifier at lr 2
    assert np.allclose(after.get_ydata(), [mean_at("none", 0.0, "after_each_activation", 2.0),
                                           mean_at("none", 0.2, "after_each_activation", 0.5)])
    assert np.allclose(before.get_ydata(), [mean_at("none", 0.0, "after_each_activation", 2.0),
                                            mean_at("none", 0.2, "before_classifier", 2.0)])
    plots.plot_metric_vs(runs, s, "optim.lr", "best/test/acc", tmp_path)
    ax = drawn["best_test_acc_vs_lr.png"].axes[0]
    bn = next(ln for ln in ax.lines if ln.get_label() == "BN")
    # BN at lr 0.5: its best cell there on validation is dropout 0.2 before the classifier (0.981)
    assert np.allclose(bn.get_ydata(), [mean_at("batch", 0.2, "before_classifier", 0.5),
                                        mean_at("batch", 0.2, "after_each_activation", 2.0)])
    assert "best dropout rate" in ax.get_title()


def test_a_report_read_under_a_profile_says_so_at_the_top(tmp_path):
    from bnlab.views.report import write_report
    from bnlab.analysis.study import analyse_all

    studies = analyse_all(tmp_path, tmp_path / "no-runs", profile="quick")
    assert {s["name"] for s in studies} >= {"ioffe_fig1", "dropout_mnist"} and "santurkar" not in {s["name"] for s in studies}
    write_report(studies, tmp_path / "REPORT.md", "quick")
    head = (tmp_path / "REPORT.md").read_text().splitlines()[:3]
    assert head[0].endswith("(budget profile `quick`)") and "not evidence" not in head[2]
    assert "A first look" in head[2] and "results/REPORT.md" in head[2]
    write_report(studies, tmp_path / "REPORT.md")
    assert "budget profile" not in (tmp_path / "REPORT.md").read_text().splitlines()[0]


def _santurkar_like_store(tmp_path):
    """Arms none and batch at two rates fixed in advance (0.1, 0.5), seeds 0-4, with the
    gradient-ICS probe on two layers and the landscape probe at every evaluation. BN's
    landscape is smoother (beta 1 vs 4) and its ICS no smaller (l2 2 vs 1, per layer); at
    lr 0.5 the no-BN runs stay at chance."""
    for seed in range(5):
        for lr in (0.1, 0.5):
            for norm in ("none", "batch"):
                stuck = norm == "none" and lr == 0.5
                beta = 1.0 if norm == "batch" else 4.0
                l2 = 2.0 if norm == "batch" else 1.0
                probes = {"probe/landscape/beta": [beta, beta * 2, beta * 3],
                          "probe/landscape/grad_range": [beta] * 3, "probe/landscape/loss_range": [0.1] * 3,
                          "probe/grad_ics/l1/l2": [l2] * 3, "probe/grad_ics/l2/l2": [3 * l2] * 3,
                          "probe/grad_ics/l1/cos": [0.9] * 3, "probe/grad_ics/l2/cos": [0.5] * 3,
                          "probe/grad_ics/l1/rel": [0.1] * 3, "probe/grad_ics/l2/rel": [0.1] * 3}
                write_run(tmp_path, "sant", norm, lr, seed, 0.1 if stuck else 0.6 + 0.05 * (norm == "batch"),
                          0.1 if stuck else 0.6 + 0.05 * (norm == "batch"), learned=not stuck, probes=probes,
                          verified=False)
    return tmp_path / "sant"


def test_a_study_with_rates_fixed_in_advance_draws_each_rate_apart(tmp_path, monkeypatch):
    """Santurkar et al.'s questions at lr 0.1 and lr 0.5 are separate: a study that fixes its
    rates in advance (nothing tuned) draws convergence, ICS and landscape figures per rate,
    never averaging the two; the frame holds the landscape measures and each layer's ICS,
    and a smoothness claim is judged on them."""
    from bnlab.analysis.frames import frame_from_store

    runs = frame_from_store(_santurkar_like_store(tmp_path))
    assert runs["landscape_beta"].round(6).isin([2.0, 8.0]).all(), "mean over the evaluations"
    one = runs[(runs["cfg.model.norm"] == "batch")].iloc[0]
    assert (one["grad_ics_l2_l1"], one["grad_ics_l2_l2"], one["grad_ics_l2"]) == (2.0, 6.0, 4.0)
    assert one["grad_ics_cos_l2"] == pytest.approx(0.5)
    s = spec(tune=[], claims=[], confirm_seeds=[])
    assert fixed_settings(runs, s) == [{"cfg.optim.lr": 0.1}, {"cfg.optim.lr": 0.5}]
    assert fixed_settings(runs, spec()) == [{}], "a tuned study draws each arm at its chosen setting"

    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    plots.plot_study(runs, s, [], tmp_path / "figs")
    for f in ("convergence_lr0.1.png", "convergence_lr0.5.png", "grad_ics_lr0.1.png", "landscape_lr0.1.png",
              "landscape_lr0.5.png"):
        assert f in drawn, sorted(drawn)
    # at lr 0.5 the no-BN curve is the stuck runs' alone (chance), not a mix with lr 0.1
    ax = drawn["convergence_lr0.5.png"].axes[0]
    none = next(ln for ln in ax.lines if ln.get_label().startswith("no BN"))
    assert np.allclose(none.get_ydata(), 0.1)
    beta_ax = drawn["landscape_lr0.1.png"].axes[2]
    means = {ln.get_label().split(" (")[0]: ln.get_ydata() for ln in beta_ax.lines}
    assert np.allclose(means["BN"], [1, 2, 3]) and np.allclose(means["no BN"], [4, 8, 12])

    claim = {"claim": "smoothness", "kind": "compare", "metric": "landscape_beta", "direction": "lower",
             "min_effect": 0.0, "only_learned": True, "matched": {"optim.lr": 0.1}}
    r = claim_result(runs, spec(tune=[], claims=[claim], confirm_seeds=[]), claim)
    assert r["effect"] == pytest.approx(6.0) and r["verdict"] == "supported"

    # runs on the JPEG-rebuilt CIFAR-10 copy record verified: false; the report marks their numbers
    from bnlab.analysis.frames import budget
    from bnlab.views.report import _unverified_mark

    b = budget(runs)
    assert b["unverified"] == 20 and _unverified_mark({"budget": b}) == " †"
    assert _unverified_mark({"budget": budget(frame_from_store(make_store(tmp_path / "mnist")))}) == ""

    # runs of another profile committed beside a study (a GPU slice) are listed, outside the verdicts
    from bnlab.analysis.frames import write_csv
    from bnlab.views.report import _slices_section

    write_csv(runs, tmp_path / "out" / "gpu_slice_runs.csv")
    lines = _slices_section({"name": "sant", "out": tmp_path / "out"})
    # and drawn beside the study's own runs, per fixed rate
    from bnlab.analysis.study import slices

    plots.plot_study(runs, s, [], tmp_path / "figs", slices=slices({"out": tmp_path / "out"}))
    ax = drawn["gpu_slice_vs_study_lr0.5.png"].axes[0]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 10 and all(ln.get_label().startswith(("no BN, gpu_slice", "BN, gpu_slice")) for ln in dashed)
    assert lines[0].startswith("**Runs of `gpu_slice`** (`sant/gpu_slice_runs.csv`: 20 runs on test-cpu")
    rows = [ln for ln in lines[2].splitlines()[2:]]
    assert len(rows) == 20 and sum("| did not learn |" in r for r in rows) == 5


def test_the_first_screen_has_every_primary_and_each_familys_rows_in_plain_words(tmp_path):
    """The report's first tables: the twelve primary hypotheses (a missing one says "not run
    yet"), then a family's rows, each with its verdict, the † of unverified data, the cited work
    linked, a plain sentence made from the numbers, and the study's page."""
    from bnlab.analysis.stats import apply_holm
    from bnlab.analysis.verdicts import study_verdicts
    from bnlab.analysis.frames import budget
    from bnlab.views.report import _family_section, _primary_table

    claim = {"claim": "smoothness", "id": "beta_smoothness", "family": "mechanism", "kind": "compare",
             "metric": "landscape_beta", "direction": "lower", "min_effect": 0.0, "matched": {"optim.lr": 0.1},
             "literature": "Santurkar et al. 2018 Fig. 4(c)"}
    runs = frame_from_store(_santurkar_like_store(tmp_path))
    s = spec(tune=[], claims=[claim], confirm_seeds=[])
    study = {"name": "sant", "ran": True, "spec": s, "results": study_verdicts(runs, s), "budget": budget(runs),
             "out": tmp_path / "sant"}
    apply_holm(study["results"])
    lines = _family_section([study], "mechanism", tmp_path)
    row = next(ln for ln in lines if ln.startswith("| `beta_smoothness`"))
    assert "BN vs no BN (landscape_beta, at learning rate 0.1)" in row and "**supported**" in row and "†" in row
    assert "Holds here: BN 2 against no BN 8 (effective β-smoothness, mean over seeds)" in row
    assert "[Santurkar et al. 2018](https://arxiv.org/abs/1805.11604) Fig. 4(c)" in row
    assert "[`sant`](sant/README.md)" in row
    assert _family_section([study], "cost", tmp_path)[0].endswith("no study has run a test of it yet.")
    primary = [ln for ln in _primary_table([study], tmp_path) if ln.startswith("| ") and "| **" in ln]
    assert len(primary) == 12 and all("**not run yet**" in ln for ln in primary)


def test_a_claim_with_published_numbers_puts_ours_beside_them(store):
    """A claim that gives the paper's numbers on its own metric (`literature_values`) gets each
    arm's mean beside them with ours minus theirs; an arm without a number, or a claim without
    any, gets nothing invented."""
    from bnlab.views.report import _beside_literature

    runs = frame_from_store(store)
    s = spec()
    source = "Ioffe & Szegedy 2015, Fig. 1(a)"
    r = claim_result(runs, s, {**ACCURACY, "literature_values": {"none": 0.9735, "batch": 0.98, "source": source}})
    text = _beside_literature(r)
    assert f"**Beside the literature** ({source})" in text
    for arm, name, theirs in (("none", "no BN", 0.9735), ("batch", "BN", 0.98)):
        ours = r["baseline_mean"] if arm == r["baseline"] else r["treatment_mean"]
        assert f"{name} " in text and f"against {theirs:g} (ours − theirs {ours - theirs:+.4f})" in text
    only_bn = _beside_literature({**r, "literature_values": {"batch": 0.98}})
    assert "no BN" not in only_bn and "against 0.98" in only_bn and "source not given" in only_bn
    assert _beside_literature({**r, "literature_values": {}}) == ""


def test_the_report_says_whether_ics_goes_with_the_accuracy_benefit():
    """Each arm's ICS reduction (its claim's effect) beside its paired test-accuracy gain over
    the baseline, on that claim's seeds and settings; per measure, one plain answer: goes with
    it, only in part, not, or cannot be told."""
    from bnlab.analysis.verdicts import ics_with_accuracy
    from bnlab.views.report import _ics_and_accuracy

    gains = {"none": 0.0, "batch": 0.006, "noisy_batch": 0.006, "layer": 0.0}
    rows = [{"cfg.model.norm": arm, "cfg.seed": seed, "cfg.optim.lr": lr, "status": "completed",
             "best/test/acc": 0.97 + gains[arm] + 0.001 * (seed % 3) + (0.0004 if arm != "none" and seed % 2 else 0)
             - (0.05 if lr != 1.0 else 0)}
            for arm in gains for seed in range(100, 105) for lr in (1.0, 2.0)]

    def ics(arm, metric, effect, half=0.01):
        return {"claim": "ics", "metric": metric, "baseline": "none", "treatment": arm, "effect": effect,
                "ci_low": effect - half, "ci_high": effect + half, "seeds": [100, 101, 102, 103, 104],
                "chosen": {arm: {"cfg.optim.lr": 1.0}, "none": {"cfg.optim.lr": 1.0}}}

    results = [ics("batch", "act_in_drift", 0.04), ics("noisy_batch", "act_in_drift", -0.03),
               ics("layer", "act_in_drift", 0.0),
               ics("batch", "grad_ics_l2", 0.03), ics("noisy_batch", "grad_ics_l2", 0.03), ics("layer", "grad_ics_l2", 0.06),
               ics("batch", "grad_ics_cos", 0.2), ics("noisy_batch", "grad_ics_cos", 0.2)]
    s = {"spec": spec(arms=list(gains)), "runs": pd.DataFrame(rows), "results": results}
    s["ics_accuracy"] = ics_with_accuracy(s["runs"], s["spec"], results)  # computed by analysis, worded by the report
    text = "\n".join(_ics_and_accuracy(s))
    # BN's per-seed gains are 0.006, 0.0064, 0.006, 0.0064, 0.006 (the lr 2.0 runs are not its setting)
    assert "| BN | +0.0062 [+0.0059, +0.0064] | +0.04 [+0.03, +0.05] | +0.03 [+0.02, +0.04] | +0.2 [+0.19, +0.21] |" in text
    assert "| layer norm | +0.0002 [-0.0001, +0.0004] | +0 [-0.01, +0.01] | +0.06 [+0.05, +0.07] | – |" in text
    assert "(`act_in_drift`), ICS **does not go with the accuracy benefit**: BN: less ICS, higher accuracy; " \
           "noisy BN: more ICS, higher accuracy" in text
    assert "(`grad_ics_l2`), ICS **goes with the accuracy benefit only in part**" in text
    assert "one without the other: layer norm)" in text
    assert "(`grad_ics_cos`), ICS **goes with the accuracy benefit**:" in text
    # a study without ICS claims gets no such section
    assert ics_with_accuracy(s["runs"], s["spec"], [r for r in results if r["metric"] == "nothing"]) == []
    assert _ics_and_accuracy({**s, "ics_accuracy": []}) == []


def test_a_worst_case_claim_shows_each_arms_range_over_the_settings():
    """Beside the worst case, each arm's worst and best setting (mean over seeds), ties counted,
    keys that vary only because older runs lack them left out."""
    from bnlab.analysis.verdicts import range_over_settings
    from bnlab.views.report import _range_over_settings

    rows = []
    for seed in range(5):
        for std in (0.01, 0.1, 1.0):
            rows.append({"cfg.model.norm": "batch", "cfg.seed": seed, "cfg.init.std": std, "status": "completed",
                         "best/test/acc": 0.97 - 0.02 * (std == 1.0), "cfg.model.ln.eps": 1e-5 if seed else np.nan})
            rows.append({"cfg.model.norm": "none", "cfg.seed": seed, "cfg.init.std": std, "status": "completed",
                         "best/test/acc": 0.96 if std == 0.1 else 0.11, "cfg.model.ln.eps": 1e-5 if seed else np.nan})
    claim = {"claim": "init", "kind": "worst_case", "over": "init.std", "metric": "best/test/acc",
             "direction": "higher", "min_effect": 0.01}
    s = {"spec": spec(tune=["init.std"], claims=[claim], confirm_seeds=[]), "runs": pd.DataFrame(rows)}
    r = claim_result(s["runs"], s["spec"], claim)
    s["ranges"] = {r["id"]: range_over_settings(s["runs"], s["spec"], r)}  # computed by analysis, worded by the report
    assert _range_over_settings(r, s) == (
        " **Range over the settings** (mean over seeds, worst to best): no BN from 0.110 (init.std=0.01 and 1 other "
        "setting) to 0.960 (init.std=0.1); BN from 0.950 (init.std=1.0) to 0.970 (init.std=0.01 and 1 other setting).")
    assert range_over_settings(s["runs"], s["spec"], {**r, "kind": "compare"}) == []


def test_the_speed_survival_curve_counts_the_runs_that_reached_the_target(store, tmp_path, monkeypatch):
    """reached_target.png: per arm, the fraction of the deciding runs at or above the target by
    each step — it ends at the fraction that ever got there, read from the frame's own
    steps_to column, and rises first at the fastest run's step."""
    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    runs = frame_from_store(store)
    claim = {"claim": "speed", "kind": "compare", "metric": "steps_to_val_0.97", "direction": "lower",
             "min_effect": 0.0}
    r = claim_result(runs, spec(), claim)
    plots.plot_reached_target(runs, spec(), [r], tmp_path)
    ax = drawn["reached_target.png"].axes[0]
    for arm, name in (("none", "no BN"), ("batch", "BN")):
        line = next(ln for ln in ax.lines if ln.get_label().split(" (")[0].split(",")[0] == name)
        setting = r["chosen"][arm]
        sel = runs[(runs["cfg.model.norm"] == arm) & runs["cfg.seed"].isin(r["seeds"])]
        for k, v in setting.items():
            sel = sel[sel[k] == v]
        steps = pd.to_numeric(sel["steps_to_val_0.97"], errors="coerce")
        assert line.get_ydata()[-1] == pytest.approx(steps.notna().mean())
        if steps.notna().any():
            first = next(x for x, y in zip(line.get_xdata(), line.get_ydata()) if y > 0)
            assert first == steps.min()


def test_the_report_formats_and_never_computes():
    """bnlab.views.report words what bnlab.analysis hands it: it calls no statistic (means,
    groupings, intervals, tests) and imports from analysis.stats only the rules' text and the
    effect's formatter."""
    import ast
    import inspect
    import bnlab.views.report as report

    tree = ast.parse(inspect.getsource(report))
    computing = {"mean", "median", "std", "var", "groupby", "sum", "quantile", "seed_stats", "compare",
                 "equivalence", "noninferiority", "apply_holm", "holm", "claim_result", "study_verdicts",
                 "setting_table", "best_settings", "arm_runs", "where", "finished"}
    calls = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None)
             for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not calls & computing, calls & computing
    from_stats = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "bnlab.analysis.stats"
                  for a in n.names}
    assert from_stats <= {"ALPHA", "EQUIVALENCE_RULE", "NONINFERIORITY_RULE", "VERDICT_RULE", "effect_text"}


def test_the_figure_registry_decides_from_what_a_study_tunes_not_from_key_names(store, tmp_path, monkeypatch):
    """A study that tunes a key no figure names (here the momentum, standing in for the rate)
    gets its accuracy-against-that-key figure; the same runs with nothing tuned get none."""
    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    runs = frame_from_store(store).rename(columns={"cfg.optim.lr": "cfg.optim.momentum"})
    names = [f.name for f in plots.FIGURES]
    assert len(names) == len(set(names)), "each figure is listed once"
    plots.plot_study(runs, spec(tune=["optim.momentum"]), [], tmp_path)
    assert "best_test_acc_vs_momentum.png" in drawn
    drawn.clear()
    plots.plot_study(runs, spec(tune=[]), [], tmp_path)
    assert not any(n.startswith("best_test_acc_vs_") for n in drawn)


def test_the_activation_statistics_figure_draws_each_arms_layer_mean_over_training(store, tmp_path, monkeypatch):
    """act_stats.png: applies where the runs logged the activation-statistics probe; each arm's
    line is the mean over seeds of the mean over hidden layers, at every evaluation."""
    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    runs = frame_from_store(store)
    plots.plot_study(runs, spec(), [], tmp_path)
    assert "act_stats.png" not in drawn  # no such probe logged: no figure
    for c, arm in zip(runs["curves"], runs["cfg.model.norm"]):
        n = len(c["eval:step"])
        base = 0.1 if arm == "batch" else 0.3
        c["eval:probe/act_stats/b0/train/corr_abs"] = [base] * n
        c["eval:probe/act_stats/b1/train/corr_abs"] = [base + 0.2] * n
    plots.plot_study(runs, spec(), [], tmp_path)
    ax = drawn["act_stats.png"].axes[2]
    lines = {ln.get_label().split(" (n=")[0]: ln for ln in ax.lines if "(n=" in ln.get_label()}
    assert np.allclose(lines["BN"].get_ydata(), 0.2) and np.allclose(lines["no BN"].get_ydata(), 0.4)


def test_the_whitening_figure_shows_each_arms_mean_correlation_matrix(store, tmp_path, monkeypatch):
    """act_corr.png: per arm and layer, the mean over the deciding runs of the logged matrix."""
    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    runs = frame_from_store(store)
    for c, arm in zip(runs["curves"], runs["cfg.model.norm"]):
        n = len(c["eval:step"])
        r = 0.1 if arm == "batch" else 0.6
        for a, b in ((0, 1), (0, 2), (1, 2)):
            c[f"eval:probe/act_corr/b0/u{a}_u{b}"] = [None] * (n - 1) + [r]
    plots.plot_study(runs, spec(), [], tmp_path)
    fig = drawn["act_corr.png"]
    images = {ax.get_title().split(",")[0]: ax.images[0].get_array() for ax in fig.axes if ax.images}
    assert np.allclose(images["BN"], [[1, 0.1, 0.1], [0.1, 1, 0.1], [0.1, 0.1, 1]])
    assert np.allclose(images["no BN"][0, 1], 0.6)


def test_zero_mean_and_unit_variance_are_checked_per_mode_for_the_arms_that_normalize(store):
    """normalization_check: per arm that logged a normalized value, its |mean| and variance in
    train and eval mode at the setting and on the seeds of the study's compare verdict; an arm
    without a normalized value (no BN) has no row; the report words it as a check."""
    from bnlab.analysis.verdicts import normalization_check
    from bnlab.views.report import _normalization_check

    runs = frame_from_store(store)
    bn = runs["cfg.model.norm"] == "batch"
    for mode, var in (("train", 1.0), ("eval", 1.3)):
        runs[f"act_{mode}_norm_var"] = np.where(bn, var + 0.001 * (runs["cfg.seed"] % 3), np.nan)
        runs[f"act_{mode}_norm_mean_abs"] = np.where(bn, 0.0 if mode == "train" else 0.2, np.nan)
    r = claim_result(runs, spec(), ACCURACY)
    rows = normalization_check(runs, spec(), [r])
    assert [x["arm"] for x in rows] == ["batch"] and rows[0]["seeds"] == r["seeds"]
    assert rows[0]["train_norm_var"]["mean"] == pytest.approx(1.0, abs=0.003)
    assert rows[0]["eval_norm_mean_abs"]["mean"] == pytest.approx(0.2)
    text = "\n".join(_normalization_check({"normalization": rows}))
    assert "a check of what the normalization does, not a hypothesis" in text and "| BN | 100–104 |" in text


def test_the_demo_ends_with_what_its_runs_found_in_plain_sentences(tmp_path, capsys):
    """`make demo` ends with bnlab-plot quickstart: after its figures, one sentence per question
    (accuracy, steps to the target, cost of a step) from the verdict code and the report's plain-
    sentence generator, on the committed quickstart runs; the numbers are the runs' own means."""
    import shutil
    from bnlab.resolvers import REPO_ROOT

    shutil.copytree(REPO_ROOT / "results" / "quickstart", tmp_path / "results" / "quickstart")
    plot_main(["quickstart", "--results", str(tmp_path / "results"), "--runs-root", str(tmp_path / "no-runs")])
    out = capsys.readouterr().out
    runs = pd.read_csv(tmp_path / "results" / "quickstart" / "runs.csv")
    found = out.split("What these 4 runs found")[1].strip().splitlines()[1:]
    assert len(found) == 3 and all(ln.startswith("- ") and ln.endswith(".") for ln in found), found
    means = runs.groupby("cfg.model.norm")["best/test/acc"].mean()
    assert f"BN {means['batch']:.4g} against no BN {means['none']:.4g} (best test accuracy" in found[0]
    steps = runs.groupby("cfg.model.norm")["steps_to_target"].mean()
    assert f"BN {steps['batch']:.4g} against no BN {steps['none']:.4g} (steps to the target" in found[1]
    assert "ms per training step" in found[2]
    assert all("fewer than 5 seeds" in ln for ln in found), "2 seeds a side decide nothing, and it says so"


def test_a_results_folder_that_does_not_exist_or_holds_no_runs_is_refused_in_one_line(tmp_path, capsys):
    """`bnlab-report --results /nonexistent` once wrote an empty report there and exited 0."""
    missing = tmp_path / "nonexistent"
    for command in (lambda: report_main(["--results", str(missing)]),
                    lambda: plot_main(["quickstart", "--results", str(missing)])):
        with pytest.raises(SystemExit) as stop:
            command()
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"--results: {missing} is not a folder" in err
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as stop:
        report_main(["--results", str(empty)])
    assert stop.value.code == 2 and "no study has runs" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


def test_a_study_reads_another_studys_arm_beside_its_own_by_the_same_rule(tmp_path):
    """analysis.beside (placement_mnist borrows mnist_mlp's no-BN arm): the borrowed arm is
    read exactly as the study's own — its setting chosen by the claim's rule on its own study's
    tuning seeds, then mean [95% CI] over that study's confirmation seeds; a target never reached
    is counted at the budget and said to be a bound; and the study file's key is checked."""
    from bnlab.analysis.beside import arms_beside
    from bnlab.analysis.spec import _beside
    from bnlab.errors import ConfigError
    from bnlab.views.report import beside_sentence
    from synthetic import make_three_arm_store

    other = frame_from_store(make_store(tmp_path / "a", rng_seed=3))
    own = frame_from_store(make_three_arm_store(tmp_path / "b"))
    own = own[own["cfg.model.norm"] != "none"]
    speed = {"claim": "speed", "kind": "compare", "metric": "steps_to_target", "direction": "lower",
             "min_effect": 50, "select_on": "steps_to_target", "select_direction": "lower"}
    mine = spec(name="mine", arms=["batch", "noisy_batch"], baseline="batch", treatment="noisy_batch",
                claims=[dict(ACCURACY, id="acc"), dict(speed, id="fast")],
                beside=[{"study": "theirs", "arm": "none", "label": "no BN, borrowed"}])
    studies = {"mine": {"spec": mine, "runs": own, "ran": True},
               "theirs": {"spec": spec(name="theirs"), "runs": other, "ran": True}}
    rows = arms_beside(studies["mine"], studies)
    acc = {r["arm"]: r for r in rows if r["claim_id"] == "acc"}
    assert list(acc) == ["none", "batch", "noisy_batch"] and acc["none"]["label"] == "no BN, borrowed"
    # no BN's best lr on validation is 0.5 (lr 0.1 has the better *test* accuracy: not chosen)
    expect = other[(other["cfg.model.norm"] == "none") & (other["cfg.seed"] >= 100)]["best/test/acc"]
    assert acc["none"]["setting"] == {"optim.lr": 0.5} and acc["none"]["seeds"] == [100, 101, 102, 103, 104]
    assert acc["none"]["mean"] == pytest.approx(expect.mean()) and acc["none"]["ci_low"] < expect.mean() < acc["none"]["ci_high"]
    assert acc["none"]["study"] == "theirs" and acc["batch"]["study"] == "mine" and not acc["none"]["differs"]
    # speed: no BN's confirmation runs never logged the target: counted at the 1,000-step budget, a bound
    fast = {r["arm"]: r for r in rows if r["claim_id"] == "fast"}
    assert fast["none"]["censored"] == 5 and fast["none"]["mean"] == 1000
    line = beside_sentence({"spec": mine, "beside": rows})
    assert "no BN, borrowed (`theirs`) ≥ 1000 (5 of 5 never got there" in line
    # a borrowed study on another budget says so
    studies["theirs"]["spec"] = spec(name="theirs", max_steps=500)
    assert all(r["differs"] == "steps 500" for r in arms_beside(studies["mine"], studies) if r["study"] == "theirs")
    with pytest.raises(ConfigError, match=r"analysis.beside\[0\].study.*allowed"):
        _beside([{"study": "no_such_study", "arm": "none"}])
    with pytest.raises(ConfigError, match=r"analysis.beside\[0\]"):
        _beside([{"arm": "none"}])


def test_a_speed_ratio_below_one_is_said_as_more_steps():
    """A treatment that took more steps reads "1.21× more steps", not "0.824× fewer steps"
    (the demo's sentence once did); a bound turns round with it."""
    from bnlab.views.report import _ratio

    def said(value, bound=None):
        return _ratio({"ratio": {"kind": "fewer steps", "value": value, "low": float("nan"), "high": float("nan"),
                                 "bound": bound}})

    assert said(0.824) == "1.21× more steps"
    assert said(5.52, "≥") == "≥ 5.52× fewer steps"
    assert said(0.5, "≥") == "≤ 2× more steps"  # at least 0.5× fewer: at most 2× more
    assert said(0.5, "≤") == "≥ 2× more steps"
