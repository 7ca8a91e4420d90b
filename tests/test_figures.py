"""The look of the figures, where it can be asserted: accuracy axes fitted to the data shown,
bands on log axes that stay within the data, captions that promise only what is drawn and wrap
at word boundaries, words instead of raw keys, ad-hoc sweeps named by what they swept, and arm
colours that cannot be mistaken for one another."""
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

import bnlab.views.figures as plots
from bnlab.analysis.frames import frame_from_store
from bnlab.analysis.spec import adhoc_spec
from bnlab.views.style import ARM_COLOURS, OTHER_COLOURS, colour, label

from synthetic import make_store, spec, write_run


@pytest.fixture
def drawn(monkeypatch):
    """The figures drawn, by file name (save captured; the figure functions still close them)."""
    figures = {}

    def capture(fig, path):
        figures[path.name] = fig
        return path
    monkeypatch.setattr(plots, "save", capture)
    return figures


def _short_sweep(tmp_path, seeds=3):
    """An ad-hoc sweep of a short budget: accuracies 0.45-0.6, far below the 0.76-0.9 floors the
    figures once had."""
    folder = tmp_path / "runs" / "default" / "multirun_x"
    for seed in range(seeds):
        for norm, acc in (("none", 0.45), ("batch", 0.6)):
            write_run(tmp_path, "default", norm, 0.1, seed, acc + 0.01 * seed, acc, path=folder / f"{norm}-{seed}")
    runs = frame_from_store(folder)
    return runs, adhoc_spec(runs, "default")


def test_accuracy_axes_fit_the_data_shown_and_ad_hoc_sweeps_are_named_by_their_keys(tmp_path, drawn):
    runs, s = _short_sweep(tmp_path)
    plots.plot_convergence(runs, s, tmp_path)
    fig = drawn["convergence.png"]
    ax = fig.axes[0]
    shown = plots._shown_after_start(ax)
    low, high = ax.get_ylim()
    assert low <= min(shown) and high >= max(shown)
    assert (max(shown) - min(shown)) / (high - low) > 0.75, "the curves fill the axis"
    title = fig._suptitle.get_text()
    assert "default" not in title and title.startswith("ad-hoc sweep of normalization")


def test_a_band_on_a_log_axis_never_reaches_below_the_data(tmp_path):
    """Five seeds over three orders of magnitude: a t-interval's lower edge goes below zero (the
    band plunged to the floor); on a log axis the band is the seeds' range."""
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    mat = pd.DataFrame(np.array([[1e-3, 1e-2, 1e-1, 1.0, 10.0], [2e-3, 3e-2, 1e-1, 2.0, 5.0]]), index=[0, 1])
    plots._band(ax, mat.index, mat, "batch", "BN")
    band = np.concatenate([p.vertices for c in ax.collections for p in c.get_paths()])
    assert band[:, 1].min() >= mat.values.min() and band[:, 1].max() <= mat.values.max()
    assert np.allclose(ax.lines[0].get_ydata(), np.exp(np.log(mat).mean(axis=1)))  # geometric mean
    plt.close(fig)


def test_the_convergence_loss_band_stays_within_the_seeds(tmp_path, drawn):
    runs = frame_from_store(make_store(tmp_path, rng_seed=1))
    plots.plot_convergence(runs, spec(), tmp_path)
    fig = drawn["convergence.png"]
    loss_ax = fig.axes[2]
    assert loss_ax.get_yscale() == "log" and loss_ax.collections
    lowest = min(v for c in runs["curves"] for v in c.get("train:train/loss", []) if v and v > 0)
    band = np.concatenate([p.vertices for c in loss_ax.collections for p in c.get_paths()])
    assert band[:, 1].min() >= lowest - 1e-12
    assert "log axes: geometric mean" in fig._suptitle.get_text()


@pytest.mark.parametrize("seeds, band", [(2, False), (3, True)])
def test_the_percentile_caption_promises_a_band_only_where_one_is_drawn(tmp_path, drawn, seeds, band):
    runs, s = _short_sweep(tmp_path, seeds)
    plots.plot_percentiles(runs, s, tmp_path)
    fig = drawn["act_input_percentiles.png"]
    has_band = any(ax.collections for ax in fig.axes)
    assert has_band == band
    assert ("band" in fig._suptitle.get_text()) == band
    assert ("each seed drawn" in fig._suptitle.get_text()) == (not band)


def test_captions_wrap_at_word_boundaries_and_keep_every_word():
    text = ("Ioffe & Szegedy 2015 Fig. 1(a), 50k steps: BN ≈0.98 vs no BN ≈0.97–0.977; a public single-seed "
            "reproduction (SGD lr 0.5, σ 0.1): 98.00% vs 97.69%. Garbin et al. 2020 (MNIST MLP): BN 98.64% vs "
            "98.79%, slightly worse.")
    wrapped = plots.caption(text)
    assert wrapped.split() == text.split(), "no word cut, none lost"
    assert all(len(ln) <= plots.CAPTION_WIDTH for ln in wrapped.splitlines()) and len(wrapped.splitlines()) > 1


def test_every_measure_and_claim_metric_has_words():
    """One label table (bnlab.views.style.label) covers every column the measures derive and
    every metric, tuned key and arm key the study files name: no raw key on an axis."""
    from bnlab.analysis.frames import frame_from_csv
    from bnlab.analysis.spec import list_studies, load_spec
    from bnlab.resolvers import REPO_ROOT

    keys = set()
    for name in ("mnist_mlp", "activations_mnist", "santurkar"):
        csv = REPO_ROOT / "results" / name / "runs.csv"
        own = set(pd.read_csv(csv, nrows=0).columns)
        keys |= set(frame_from_csv(csv).columns) - own - {"curves", "path", "outcome"}
    for name in list_studies():
        s = load_spec(name)
        keys |= {s.arm_key, *s.tune}
        for c in s.claims:
            keys |= {str(c.get(k)) for k in ("metric", "measured", "over") if c.get(k)} | set(c.get("matched") or {})
    assert len(keys) > 30
    raw = sorted(k for k in keys if label(k) == k.removeprefix("cfg."))
    assert not raw, f"keys shown raw: {raw}"
    assert label("steps_to_val_0.97") == "steps to 97% validation accuracy"


def _delta_e94(a, b):
    """CIE94 colour difference (graphic arts), made symmetric by taking the smaller of both ways."""
    def lab(c):
        rgb = np.array(to_rgb(c))
        rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
        xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
        f = np.cbrt(xyz / np.array([0.95047, 1.0, 1.08883]))
        return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])

    def one_way(x, y):
        (l1, a1, b1), (l2, a2, b2) = lab(x), lab(y)
        c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
        dh2 = max((a1 - a2) ** 2 + (b1 - b2) ** 2 - (c1 - c2) ** 2, 0.0)
        return np.sqrt((l1 - l2) ** 2 + ((c1 - c2) / (1 + 0.045 * c1)) ** 2 + dh2 / (1 + 0.015 * c1) ** 2)
    return min(one_way(a, b), one_way(b, a))


def test_no_two_arm_colours_are_near_each_other_and_no_bn_keeps_its_red():
    assert ARM_COLOURS["none"] == "#d62728"
    palette = [*ARM_COLOURS.values(), *OTHER_COLOURS]
    assert len(set(palette)) == len(palette)
    close = [(a, b, round(_delta_e94(a, b))) for a, b in itertools.combinations(palette, 2) if _delta_e94(a, b) < 20]
    assert not close, f"colours too close (ΔE94 < 20): {close}"
    # an arm that is not a registered norm (a new norm's name, a learning rate) gets one of them
    for arm in ("my_new_norm", "whitening", "0.1", "2.0"):
        assert colour(arm) in OTHER_COLOURS and _delta_e94(colour(arm), ARM_COLOURS["none"]) >= 20
