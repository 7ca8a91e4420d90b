"""Figures, made from a study frame only (bnlab.analysis.frames) and the verdicts computed from it
(bnlab.analysis.verdicts), with the runs and settings bnlab.analysis.selection picks: no
training, no network, no selection of its own.

Each function takes the frame (one row per run, with its `curves`) and writes one figure;
`plot_study` makes every figure that applies to a study (or to a folder of runs launched ad
hoc). One style for all: the same colour for the same arm, mean lines with 95% confidence
bands over seeds, diverged and did-not-learn runs marked. Headless (Agg); PNG by default,
SVG or PDF on request.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bnlab.analysis.kinds import KINDS  # noqa: E402
from bnlab.analysis.selection import (arm_runs, at_best_of, best_settings, decided_runs,  # noqa: E402
                                      fixed_settings, seeds_text, tuning_runs)
from bnlab.analysis.spec import StudySpec, is_num  # noqa: E402
from bnlab.analysis.frames import FINISHED, swept_columns  # noqa: E402
from bnlab.analysis.measures import act_in_series, grad_ics_layers, last_layer  # noqa: E402
from bnlab.analysis.stats import effect_text, seed_stats  # noqa: E402
from bnlab.views.style import LOG_SCALE, STYLE, arm_name, colour, label  # noqa: E402


def closes_figures(draw: Callable) -> Callable:
    """Every figure function closes what it opened, whatever happens inside (a figure left open
    by an early return, an error, or a test that captures `save`, piles up in pyplot: "More than
    20 figures have been opened"). A closed figure stays readable; pyplot only forgets it."""
    @functools.wraps(draw)
    def drawing(*args, **kwargs):
        before = set(plt.get_fignums())
        try:
            return draw(*args, **kwargs)
        finally:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
    return drawing


def save(fig, path: Path) -> Path:
    """Every figure is written here (tests patch it to look at what was drawn)."""
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _setting_text(setting: dict) -> str:
    return ", ".join(f"{k.removeprefix('cfg.').split('.')[-1]}={v:g}" if isinstance(v, float)
                     else f"{k.removeprefix('cfg.').split('.')[-1]}={v}" for k, v in setting.items())


def _curve_matrix(runs: pd.DataFrame, x_key: str, y_key: str):
    """Runs' curves aligned on their common x (the same eval/log steps in one study)."""
    series = [pd.Series(c.get(y_key, []), index=c.get(x_key, []), dtype=float)
              for c in runs["curves"] if c.get(y_key)]
    if not series:
        return None
    return pd.concat(series, axis=1).sort_index()


FEW_SEEDS = 2  # at most this many seeds: draw each seed, not an interval (a t-interval on 2 is 12.7 SEMs wide)


LOG_BAND = "log axes: geometric mean, band from the lowest to the highest seed"


def _band(ax, x, mat: pd.DataFrame, arm, label):
    """Mean over seeds and its 95% t-interval; with few seeds, the seeds themselves. On a log
    axis (set the scale first) the geometric mean and the seeds' range: a t-interval there
    reaches below zero and the band plunges to the floor (LOG_BAND says so in the caption)."""
    from scipy import stats

    log = ax.get_yscale() == "log"
    if log:
        mat = mat.where(mat > 0)
    mean = np.exp(np.log(mat).mean(axis=1)) if log else mat.mean(axis=1)
    line, = ax.plot(x, mean, color=colour(arm), lw=1.6, label=f"{label} (n={mat.shape[1]})")
    if mat.shape[1] <= FEW_SEEDS:
        for col in mat.columns:
            ax.plot(x, mat[col], color=colour(arm), lw=0.7, alpha=0.45)
        return line
    if log:
        low, high = mat.min(axis=1), mat.max(axis=1)
    else:
        n = mat.notna().sum(axis=1)
        sem = mat.std(axis=1, ddof=1) / np.sqrt(n)
        half = (sem * stats.t.ppf(0.975, np.maximum(n - 1, 1))).fillna(0)
        low, high = mean - half, mean + half
    ax.fill_between(x, low, high, color=colour(arm), alpha=0.18, lw=0)
    return line


def _fit_accuracy_axis(ax, values, room_below: float = 0.05) -> None:
    """Accuracy limits from the data shown (with `room_below` of the span left for markers), within
    [0, 1]: a fixed bottom at 0.76-0.9 and a top at 1.0 left a short sweep's plot nearly empty."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, 0.01)
    ax.set_ylim(max(0.0, lo - (0.05 + room_below) * span), min(1.0, hi + 0.05 * span))


def _shown_after_start(ax) -> list[float]:
    """The y values of the lines drawn on `ax` after their first point (the untrained net at
    chance, which would squash the rest)."""
    return [float(y) for ln in ax.lines for y in np.asarray(ln.get_ydata(), float)[1:]]


def _title(spec: StudySpec) -> str:
    """A figure's name for its study: an ad-hoc folder's by what it swept, not "default"."""
    if not spec.adhoc:
        return spec.name
    swept = " × ".join(label(k) for k in [spec.arm_key, *spec.tune])
    return f"ad-hoc sweep of {swept}" + (f" ({spec.name})" if spec.name != "default" else "")


@closes_figures
def plot_convergence(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png",
                     fixed: dict | None = None) -> list[Path]:
    """Isolation plot of training: each arm at its own best setting (or, in a study that fixes
    its settings in advance, at the `fixed` one), validation accuracy and training loss
    against steps and against training seconds (mean and 95% CI over seeds)."""
    fin, best, which = decided_runs(runs, spec)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    for ax in axes[1]:
        ax.set_yscale("log")
    for arm in spec.arms:
        setting = {**best.get(arm, {}), **(fixed or {})}
        sel = arm_runs(fin, spec, arm, setting)
        if sel.empty:
            continue
        label = f"{arm_name(arm)}" + (f" ({_setting_text(setting)})" if setting else "")
        for row, (prefix, y) in enumerate((("eval", "val/acc"), ("train", "train/loss"))):
            mat = _curve_matrix(sel, f"{prefix}:step", f"{prefix}:{y}")
            tmat = _curve_matrix(sel, f"{prefix}:step", f"{prefix}:time_s")
            if mat is None:
                continue
            _band(axes[row, 0], mat.index, mat, arm, label)
            _band(axes[row, 1], tmat.mean(axis=1).loc[mat.index], mat, arm, label)
    for col, xl in enumerate(("training step", "training time (s, evaluation excluded)")):
        axes[1, col].set_xlabel(xl)
    axes[0, 0].set_ylabel("validation accuracy")
    axes[1, 0].set_ylabel("training loss (interval mean)")
    targets = fin["cfg.data.target_val_acc"].dropna().unique() if "cfg.data.target_val_acc" in fin else []
    for ax in axes[0]:
        _fit_accuracy_axis(ax, _shown_after_start(axes[0, 0]) + [float(t) for t in targets[:1]])
    if len(targets) == 1:  # what steps_to_target counts: the first evaluation at or above it
        for ax in axes[0]:
            ax.axhline(float(targets[0]), ls=":", color="#555555", lw=1,
                       label=f"target {float(targets[0]):g} (steps to target)")
    axes[0, 0].legend(loc="lower right")
    chosen = ("each arm at its best setting (chosen on validation accuracy)" if spec.tune else
              f"each arm at {_setting_text(fixed)}" if fixed else "each arm")
    n_seeds = fin["cfg.seed"].nunique() if "cfg.seed" in fin else 0
    spread = "each seed thin" if n_seeds <= FEW_SEEDS else f"95% CI over seeds ({LOG_BAND})"
    fig.suptitle(f"{_title(spec)}: {chosen}, {which}, mean and {spread}")
    return [save(fig, out / f"convergence{_suffix(fixed)}.{fmt}")]


def _suffix(fixed: dict | None) -> str:
    """A figure's file name part for its fixed setting: "_lr0.5" ("" for none)."""
    return "".join(f"_{k.split('.')[-1]}{_plain_value(v)}" for k, v in (fixed or {}).items())


def _plain_value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@closes_figures
def plot_metric_vs(runs: pd.DataFrame, spec: StudySpec, key: str, metric: str, out: Path,
                   fmt: str = "png", logx: bool = True) -> list[Path]:
    """`metric` against a swept key per arm (mean with 95% CI over seeds); diverged runs
    are drawn as crosses at the bottom with their count."""
    col = f"cfg.{key}"
    fig, ax = plt.subplots(figsize=(6.4, 4))
    # the divergence markers sit at the bottom of the axes (in axes fraction), below the data
    marker_y, shown = 0.03, []
    # a study over two models (init_mnist: the 3-layer and the 10-layer net) draws each apart
    models = (sorted(runs["cfg.model.name"].dropna().astype(str).unique())
              if "cfg.model.name" in runs and spec.arm_key != "model.name" else [])
    parts = [(arm, m) for arm in spec.arms for m in models] if len(models) > 1 else [(arm, None) for arm in spec.arms]
    others = [k for k in spec.tune if k != key and f"cfg.{k}" in runs]
    for arm, model in parts:
        sel = tuning_runs(runs, spec)
        sel = sel[sel[spec.arm_col].astype(str) == arm]
        if model is not None:
            sel = sel[sel["cfg.model.name"].astype(str) == model]
        if others:  # each value of `key` at the other tuned keys' best (validation) for it
            sel = at_best_of(sel, spec, key, others)
        xs, means, lo, hi = [], [], [], []
        for x, g in sel.groupby(col, sort=True):
            fin = g[g.status.isin(FINISHED)]
            s = seed_stats(fin[metric].astype(float))
            xs.append(float(x)), means.append(s["mean"]), lo.append(s["ci_low"]), hi.append(s["ci_high"])
            for kind, marker, dy in (("diverged", "x", 0.0), ("did not learn", "v", 0.04)):
                k = int((g["outcome"] == kind).sum()) if "outcome" in g else 0
                if k:
                    y = marker_y + dy
                    ax.scatter([float(x)], [y], marker=marker, color=colour(arm), s=36, zorder=3,
                               transform=ax.get_xaxis_transform())
                    ax.annotate(f"{k}/{len(g)}", (float(x), y), xycoords=ax.get_xaxis_transform(),
                                textcoords="offset points",
                                xytext=(4, 4 - 12 * spec.arms.index(arm) if arm in spec.arms else 4),
                                fontsize=7, color=colour(arm))
        shown += [*means, *lo, *hi]
        style = "o-" if model is None or model == models[0] else "s--"
        ax.plot(xs, means, style, color=colour(arm), label=arm_name(arm) + (f", {model}" if model else ""),
                lw=1.6, ms=4)
        ax.fill_between(xs, lo, hi, color=colour(arm), alpha=0.18, lw=0)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(label(key))
    ax.set_ylabel(f"{label(metric)} (mean, 95% CI over seeds)")
    _fit_accuracy_axis(ax, shown, room_below=0.15)
    ax.scatter([], [], marker="x", color="k", label="diverged runs (count/total)")
    ax.scatter([], [], marker="v", color="k", label="runs that did not learn (count/total)")
    ax.legend(loc="lower left")
    ax.set_title(f"{_title(spec)}: {label(metric)} against {label(key)}"
                 + (f"\n(each value at its best {', '.join(label(k) for k in others)} on validation)" if others else ""))
    return [save(fig, out / f"{metric.replace('/', '_')}_vs_{key.split('.')[-1]}.{fmt}")]


@closes_figures
def plot_metric_by(runs: pd.DataFrame, spec: StudySpec, key: str, metric: str, out: Path,
                   fmt: str = "png") -> list[Path]:
    """`metric` against `key` (dropout rate), one line per arm and per value of the study's
    other non-numeric tuned keys (dropout placement), each point at its cell's best numeric
    tuned keys (learning rate) on validation: mean and 95% CI over the tuning seeds."""
    tuning = tuning_runs(runs, spec)
    groups = [k for k in spec.tune if k != key and not pd.api.types.is_numeric_dtype(tuning[f"cfg.{k}"])]
    numeric = [k for k in spec.tune if k != key and k not in groups]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    styles = ["o-", "s--", "^:", "d-."]
    for arm in spec.arms:
        sel = tuning[tuning[spec.arm_col].astype(str) == arm]
        for i, (gkey, g) in enumerate(sel.groupby([f"cfg.{k}" for k in groups], sort=True) if groups else [((), sel)]):
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            # the reference value (no dropout) has no placement of its own: drawn on every line
            ref = sel[np.isclose(sel[f"cfg.{key}"].astype(float), 0.0)] if key == "model.dropout" else sel.iloc[0:0]
            g = pd.concat([ref, g])
            g = g[~g.index.duplicated()]
            g = at_best_of(g, spec, key, numeric) if numeric else g
            xs, means, lo, hi = [], [], [], []
            for x, gx in g[g.status.isin(FINISHED)].groupby(f"cfg.{key}", sort=True):
                st = seed_stats(gx[metric].astype(float))
                xs.append(float(x)), means.append(st["mean"]), lo.append(st["ci_low"]), hi.append(st["ci_high"])
            name = arm_name(arm) + ("" if not groups else ", " + ", ".join(str(v) for v in gkey))
            ax.plot(xs, means, styles[i % len(styles)], color=colour(arm), label=name, lw=1.6, ms=4)
            ax.fill_between(xs, lo, hi, color=colour(arm), alpha=0.12, lw=0)
    ax.set_xlabel(label(key))
    ax.set_ylabel(f"{label(metric)} (mean, 95% CI over tuning seeds)")
    ax.legend(loc="best", fontsize=7)
    ax.set_title(f"{_title(spec)}: {label(metric)} against {label(key)}"
                 + (f"\n(each point at its best {', '.join(label(k) for k in numeric)} on validation)" if numeric else ""))
    return [save(fig, out / f"{metric.replace('/', '_')}_by_{key.split('.')[-1]}.{fmt}")]


@closes_figures
def plot_grid(runs: pd.DataFrame, spec: StudySpec, key: str, metric: str, out: Path,
              fmt: str = "png") -> list[Path]:
    """Heat map of mean `metric` over arm × a swept key (e.g. dropout × norm), tuning seeds."""
    fin = tuning_runs(runs[runs.status.isin(FINISHED)], spec)
    table = fin.pivot_table(index=spec.arm_col, columns=f"cfg.{key}", values=metric, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * table.shape[1], 1.2 + 0.7 * table.shape[0]))
    im = ax.imshow(table.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"{c:g}" for c in table.columns])
    ax.set_yticks(range(table.shape[0]), [arm_name(a) for a in table.index])
    ax.set_xlabel(label(key))
    ax.grid(False)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = table.values[i, j]
            light = im.norm(v) > 0.5  # dark text on the light end of the colour map
            ax.text(j, i, f"{v:.4f}", ha="center", va="center", color="k" if light else "w", fontsize=8)
    fig.colorbar(im, ax=ax, label=f"mean {label(metric)}")
    ax.set_title(f"{_title(spec)}: mean {label(metric)}")
    return [save(fig, out / f"grid_{key.split('.')[-1]}.{fmt}")]


@closes_figures
def plot_percentiles(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png",
                     setting: dict | None = None, max_units: int = 3) -> list[Path]:
    """Ioffe & Szegedy Fig. 1(b,c): the 15th, 50th and 85th percentiles of the input to a
    last-hidden-layer activation over training, without and with BN: one panel per probed
    unit (at most `max_units`), each percentile's median over the tuning seeds with the band
    between the seeds' lowest and highest (one line per seed when there are two or fewer)."""
    fin = tuning_runs(runs[runs.status.isin(FINISHED)], spec)
    setting = setting if setting is not None else {}
    per_arm = {arm: arm_runs(fin, spec, arm, setting).sort_values("cfg.seed") for arm in spec.arms}
    series_of = {arm: [act_in_series(c) for c in sel["curves"]] for arm, sel in per_arm.items()}
    any_series = next((s for ss in series_of.values() for s in ss if s), {})
    layer = last_layer(any_series)
    units = sorted({u for (ly, u) in any_series if ly == layer}, key=lambda u: int(u[1:]))[:max_units]
    if not units:
        return []
    fig, axes = plt.subplots(len(spec.arms), len(units), figsize=(3.6 * len(units), 3.0 * len(spec.arms)),
                             sharex=True, squeeze=False)
    drawn = set()
    for row, arm in enumerate(spec.arms):
        sel = per_arm[arm]
        for col, unit in enumerate(units):
            ax = axes[row, col]
            drawn.add(_percentile_panel(ax, sel, series_of[arm], layer, unit, arm))
            ax.set_title(f"{arm_name(arm)}, unit {unit[1:]} ({len(sel)} seed{'s' if len(sel) != 1 else ''}"
                         + (f", {_setting_text(setting)}" if setting else "") + ")", fontsize=8)
            if row == len(spec.arms) - 1:
                ax.set_xlabel("training step")
        axes[row, 0].set_ylabel("input to the activation\n(last hidden layer)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{_title(spec)}: activation-input percentiles over training (Ioffe & Szegedy Fig. 1b,c); "
                 f"{_drawn_words(drawn)}", fontsize=9)
    return [save(fig, out / f"act_input_percentiles.{fmt}")]


PERCENTILE_STYLES = {85: ("--", "85th"), 50: ("-", "50th (median)"), 15: ("-.", "15th")}


def _percentile_panel(ax, sel: pd.DataFrame, series: list[dict], layer: str, unit: str, arm) -> str:
    """One unit's 15th/50th/85th activation-input percentiles over training: the median over
    the runs in `sel` with a band from the lowest to the highest (each run drawn when two or
    fewer). Returns what it drew, in the words a caption uses."""
    drew = "nothing"
    for p, (ls, name) in PERCENTILE_STYLES.items():
        curves = [(np.asarray(c.get("eval:step", []), float), s.get((layer, unit), {}).get(float(p)))
                  for c, s in zip(sel["curves"], series)]
        curves = [(x, y) for x, y in curves if y is not None and len(y) == len(x) and len(x)]
        if not curves:
            continue
        if len(curves) <= 2:
            for k, (x, y) in enumerate(curves):
                ax.plot(x, y, ls, color=colour(arm), lw=1.2, alpha=1 if k == 0 else 0.55,
                        label=f"{name} percentile" if k == 0 else None)
            drew = "each seed drawn"
            continue
        n = min(len(x) for x, _ in curves)
        x = curves[0][0][:n]
        mat = np.vstack([y[:n] for _, y in curves])
        ax.plot(x, np.nanmedian(mat, axis=0), ls, color=colour(arm), lw=1.4, label=f"{name} percentile")
        ax.fill_between(x, np.nanmin(mat, axis=0), np.nanmax(mat, axis=0), color=colour(arm), alpha=0.12, lw=0)
        drew = "median over seeds, band lowest to highest seed"
    return drew


def _drawn_words(drawn: set) -> str:
    """One caption for panels drawn each way (_percentile_panel's words)."""
    drawn = sorted(drawn - {"nothing"})
    return "; ".join(drawn) if len(drawn) < 2 else " or ".join(drawn) + " (by panel)"


@closes_figures
def plot_ioffe_fig1(runs: pd.DataFrame, spec: StudySpec, results: list[dict], out: Path,
                    fmt: str = "png") -> list[Path]:
    """Ioffe & Szegedy's Figure 1 from our runs: (a) test accuracy against training steps, each
    arm at its chosen rate on the runs that decided the verdict (mean and 95% band over seeds),
    with the paper's values at the last step; (b, c) the 15th/50th/85th percentiles of the
    input to one last-hidden-layer sigmoid (unit 0) over training, without and with BN."""
    fin, best, which = decided_runs(runs, spec)
    baseline, treatment = spec.baseline, spec.treatment
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    lit = next((r.get("literature_values") for r in results if r.get("literature_values")), {}) or {}
    last = 0.0
    for arm in (baseline, treatment):
        sel = arm_runs(fin, spec, arm, best.get(arm, {}))
        mat = _curve_matrix(sel, "eval:step", "eval:test/acc")
        if mat is None:
            continue
        last = max(last, float(mat.index.max()))
        _band(axes[0], mat.index, mat, arm, f"{arm_name(arm)} ({_setting_text(best.get(arm, {}))})")
        series = [act_in_series(c) for c in sel["curves"]]
        layer = last_layer(next((x for x in series if x), {}))
        ax = axes[1 if arm == baseline else 2]
        drew = _percentile_panel(ax, sel, series, layer, "u0", arm)
        ax.set_title(f"({'b' if arm == baseline else 'c'}) {arm_name(arm)}: input to a last-hidden-layer "
                     f"sigmoid\n(unit 0; {len(sel)} seeds, {drew})", fontsize=8)
        ax.set_xlabel("training step")
    for arm in (baseline, treatment):
        if lit.get(arm) is not None:
            axes[0].scatter([last], [float(lit[arm])], marker="D", s=34, facecolor="white",
                            edgecolor=colour(arm), linewidth=1.4, zorder=4, label=f"paper, {arm_name(arm)}")
    _fit_accuracy_axis(axes[0], _shown_after_start(axes[0]) + [float(lit[a]) for a in (baseline, treatment)
                                                                if lit.get(a) is not None])
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title(f"(a) test accuracy ({which})", fontsize=8)
    axes[0].legend(loc="lower right", fontsize=7)
    axes[1].legend(loc="best", fontsize=7)
    lo = min(ax.get_ylim()[0] for ax in axes[1:])
    hi = max(ax.get_ylim()[1] for ax in axes[1:])
    for ax in axes[1:]:
        ax.set_ylim(lo, hi)
    fig.suptitle(f"{_title(spec)}: Ioffe & Szegedy (2015) Figure 1 from our runs", fontsize=9)
    fig.tight_layout()
    return [save(fig, out / f"fig1.{fmt}")]


MAX_ICS_LAYERS = 4


def ics_layers(layers: list[int], most: int = MAX_ICS_LAYERS) -> list[int]:
    """A few weight layers across depth (the first probed, the last, evenly between), as
    Santurkar et al.'s Fig. 3 shows a few layers of their VGG; all of them when few."""
    if len(layers) <= most:
        return layers
    picks = np.linspace(0, len(layers) - 1, most).round().astype(int)
    return [layers[i] for i in sorted(set(picks))]


@closes_figures
def plot_grad_ics(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png",
                  setting: dict | None = None, fixed: dict | None = None) -> list[Path]:
    """Santurkar et al.'s ICS over training, for a few weight layers across depth: ||G - G'||
    (their measure), the relative change and the cosine of a layer's gradient when the
    earlier layers take the optimizer's step on the same minibatch (mean and 95% CI over
    seeds), each arm at `setting` (and the study's `fixed` one)."""
    fin = tuning_runs(runs[runs.status.isin(FINISHED)], spec)
    every = sorted({i for c in fin["curves"] for i in grad_ics_layers(c)})
    layers = ics_layers(every)
    setting = {**(setting or {}), **(fixed or {})}
    measures = (("l2", "||G − G′||  (their measure)"), ("rel", "||G − G′|| / ||G||"), ("cos", "cos(G, G′)"))
    fig, axes = plt.subplots(len(measures), len(layers), figsize=(3.4 * len(layers), 8), sharex=True, squeeze=False)
    for ax in axes[0]:
        ax.set_yscale("log")
    for arm in spec.arms:
        arm_sel = arm_runs(fin, spec, arm, setting)
        for j, layer in enumerate(layers):
            for i, (measure, _) in enumerate(measures):
                mat = _curve_matrix(arm_sel, "eval:step", f"eval:probe/grad_ics/l{layer}/{measure}")
                if mat is not None:
                    _band(axes[i, j], mat.index, mat, arm, arm_name(arm))
            last = layer == every[-1]
            axes[0, j].set_title(f"weight layer {layer + 1} of {every[-1] + 1}" + (" (classifier)" if last else ""))
            axes[-1, j].set_xlabel("training step")
    for i, (_, text) in enumerate(measures):
        axes[i, 0].set_ylabel(text)
    axes[0, 0].legend()
    fig.suptitle(f"{_title(spec)}: gradient change after the earlier layers' update (Santurkar et al. 2018, Def. 2.1)"
                 + (f", {_setting_text(setting)}" if setting else "") + f"\nmean and 95% CI over seeds; {LOG_BAND}")
    return [save(fig, out / f"grad_ics{_suffix(fixed)}.{fmt}")]


LANDSCAPE_PANELS = (("loss_range", "loss range along −g\n(max − min of L(W − ηg))"),
                    ("grad_range", "gradient predictiveness\n(range of ||∇L(W − ηg) − ∇L(W)||)"),
                    ("beta", "effective β-smoothness\n(max ||∇L(W − ηg) − ∇L(W)|| / ||ηg||)"))


@closes_figures
def plot_landscape(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png",
                   setting: dict | None = None, fixed: dict | None = None) -> list[Path]:
    """Santurkar et al.'s Fig. 4 from our runs: along the gradient from the current weights,
    the loss range, the gradient predictiveness and the effective β-smoothness over training
    (mean and 95% CI over seeds), each arm at `setting` (and the study's `fixed` one).
    Lower is smoother on all three."""
    fin = tuning_runs(runs[runs.status.isin(FINISHED)], spec)
    setting = {**(setting or {}), **(fixed or {})}
    fig, axes = plt.subplots(1, len(LANDSCAPE_PANELS), figsize=(4.2 * len(LANDSCAPE_PANELS), 3.8), squeeze=False)
    for ax in axes[0]:
        ax.set_yscale("log")
    for arm in spec.arms:
        sel = arm_runs(fin, spec, arm, setting)
        for ax, (m, _) in zip(axes[0], LANDSCAPE_PANELS):
            mat = _curve_matrix(sel, "eval:step", f"eval:probe/landscape/{m}")
            if mat is not None:
                _band(ax, mat.index, mat, arm, arm_name(arm))
    for ax, (_, text) in zip(axes[0], LANDSCAPE_PANELS):
        ax.set_ylabel(text)
        ax.set_xlabel("training step")
    axes[0, 0].legend()
    fig.suptitle(f"{_title(spec)}: the loss landscape along the gradient (Santurkar et al. 2018, Fig. 4)"
                 + (f", {_setting_text(setting)}" if setting else "") + f"\n{LOG_BAND}")
    fig.tight_layout()
    return [save(fig, out / f"landscape{_suffix(fixed)}.{fmt}")]


@closes_figures
def plot_claim(result: dict, spec: StudySpec, out: Path, fmt: str = "png") -> list[Path]:
    """The per-seed values behind one claim's verdict: each arm's points (censored values,
    which are bounds, as triangles), mean and 95% CI, and the test that decided."""
    baseline, treatment = result.get("baseline", spec.baseline), result.get("treatment", spec.treatment)
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    for i, (arm, vals, cens) in enumerate(((baseline, result["baseline_values"], result["baseline_censored"]),
                                           (treatment, result["treatment_values"], result["treatment_censored"]))):
        vals, cens = np.asarray(vals, dtype=float), np.asarray(cens, dtype=float)
        jitter = np.linspace(-0.08, 0.08, len(vals)) if len(vals) > 1 else np.zeros(len(vals))
        for c, marker in ((0, "o"), (1, "^"), (-1, "v")):
            m = cens == c
            if m.any():
                ax.scatter(i + jitter[m], vals[m], color=colour(arm), s=20 if c == 0 else 34, alpha=0.75,
                           zorder=3, marker=marker)
        s = seed_stats(vals)
        if s["n"] > 1:
            ax.errorbar([i + 0.25], [s["mean"]], yerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]],
                        fmt="s", color=colour(arm), capsize=4, ms=5)
    if any(np.asarray(result["baseline_censored"] + result["treatment_censored"]) != 0):
        ax.scatter([], [], marker="^", color="k", label="censored: at least this")
        ax.scatter([], [], marker="v", color="k", label="censored: at most this")
        ax.legend(loc="best", fontsize=7)
    ax.set_xticks([0, 1], [arm_name(baseline), arm_name(treatment)])
    ax.set_xlim(-0.5, 1.6)
    kind = KINDS.get(result["kind"])
    ylabel = (kind.axis_label if kind else "{m} (" + result["kind"] + ")").format(m=label(result["metric"]))
    ax.set_ylabel(f"{ylabel}, per seed")
    _mark_literature(fig, ax, result, spec)
    p_holm = result.get("p_holm", np.nan)
    what = (f"{arm_name(treatment)} ≈ {arm_name(baseline)} within ±{result['margin']:g}"
            if result.get("test_kind") == "equivalence" else f"{arm_name(treatment)} vs {arm_name(baseline)}")
    ax.set_title(f"claim '{result.get('id', result['claim'])}' ({what}): {result['verdict']}\n"
                 f"effect {effect_text(result)}, {result.get('test', '')}, p={result['p']:.2g}"
                 + (f", p_Holm={p_holm:.2g}" if np.isfinite(p_holm) else "")
                 + f"\n{result.get('decided_by', '')}: seeds {seeds_text(result.get('seeds', []))}", fontsize=7)
    return [save(fig, out / f"claim_{result.get('id', result['claim'])}.{fmt}")]


def speed_results(results: list[dict]) -> list[dict]:
    """The verdicts that read steps to a validation accuracy (the speed claims)."""
    return [r for r in results if str(r.get("metric", "")).startswith("steps_to_val_") and r.get("seeds")]


@closes_figures
def plot_reached_target(runs: pd.DataFrame, spec: StudySpec, results: list[dict], out: Path,
                        fmt: str = "png") -> list[Path]:
    """Beside each speed verdict, the fraction of its runs that have reached the target by each
    step (a survival curve, one step line per arm, on the runs and settings that decided it): a
    run that never reaches the target simply never rises, whatever the budget was."""
    from bnlab.analysis.measures import steps_to

    rows = speed_results(results)
    if not rows:
        return []
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.6), squeeze=False)
    for ax, r in zip(axes[0], rows):
        target = r.get("target_value") or float(r["metric"].removeprefix("steps_to_val_"))
        for arm in (r["baseline"], r["treatment"]):
            setting = {k: v for k, v in (r["chosen"].get(arm) or {}).items() if k.startswith("cfg.")}
            sel = arm_runs(runs, spec, arm, setting)
            sel = sel[sel["cfg.seed"].isin(r["seeds"])]
            if sel.empty:
                continue
            budget = float(pd.to_numeric(sel["cfg.trainer.max_steps"], errors="coerce").max()) \
                if "cfg.trainer.max_steps" in sel else np.nan
            reached = np.array([np.inf if x is None else float(x) for x in steps_to(sel, target)])
            xs = np.unique(np.concatenate([[0.0], reached[np.isfinite(reached)],
                                           [budget if np.isfinite(budget) else reached[np.isfinite(reached)].max(initial=0)]]))
            ys = [(reached <= x).mean() for x in xs]
            never = int((~np.isfinite(reached)).sum())
            ax.step(xs, ys, where="post", color=colour(arm), lw=1.6,
                    label=f"{arm_name(arm)}{', ' + _setting_text(setting) if setting else ''} "
                          f"({len(sel)} runs{f', {never} never' if never else ''})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"fraction of runs at ≥ {100 * target:.4g}% val. acc.")
        ax.set_title(f"'{r.get('id', r['claim'])}': {r['verdict']}\n{r.get('decided_by', '')}, "
                     f"seeds {seeds_text(r['seeds'])}", fontsize=7)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return [save(fig, out / f"reached_target.{fmt}")]


def _mark_literature(fig, ax, result: dict, spec: StudySpec) -> None:
    """The literature beside our per-seed values: each arm's published number as a
    diamond on the same axis, when the study gives one on this scale (`literature_values`);
    otherwise the reference in words under the figure, saying it has no number on this axis."""
    values = result.get("literature_values") or {}
    source = values.get("source") or result.get("literature", "")
    marked = False
    for i, arm in enumerate((result.get("baseline", spec.baseline), result.get("treatment", spec.treatment))):
        if arm in values and values[arm] is not None:
            ax.scatter([i - 0.25], [float(values[arm])], marker="D", s=30, facecolor="white",
                       edgecolor=colour(arm), linewidth=1.4, zorder=4)
            marked = True
    if marked:
        ax.scatter([], [], marker="D", facecolor="white", edgecolor="k", label="literature")
        ax.legend(loc="best", fontsize=7)
        fig.text(0.01, -0.02, caption(f"◇ literature: {source}"), fontsize=6, va="top")
    elif source:
        fig.text(0.01, -0.02, caption(f"Literature (no number on this axis): {source}"), fontsize=6, va="top")


CAPTION_WIDTH = 90  # characters per line of a caption under a figure (6 pt)


def caption(text: str, width: int = CAPTION_WIDTH) -> str:
    """A caption wrapped at word boundaries, whole: cutting it at a character count once ended a
    caption mid-word."""
    import textwrap

    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


@closes_figures
def plot_sensitivity(results: list[dict], spec: StudySpec, out: Path, fmt: str = "png") -> list[Path]:
    """Each claim's effect (treatment − baseline, + = as claimed) with its 95% interval at
    every matched setting, against the smallest effect that matters (an equivalence: against
    its ±margin): where the verdict holds, where it reverses. One panel per claim and comparison."""
    rows = [r for r in results if r.get("sensitivity")]
    if not rows:
        return []
    ncols = min(4, len(rows))  # many claims × comparisons wrap onto more rows
    nrows = -(-len(rows) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, rows):
        sens = r["sensitivity"]
        key = next(iter(sens[0]["setting"]))
        xs = np.array([float(s["setting"][key]) for s in sens])
        eff = np.array([s["effect"] for s in sens], dtype=float)
        lo = np.array([s["ci_low"] for s in sens], dtype=float)
        hi = np.array([s["ci_high"] for s in sens], dtype=float)
        colours = ["#2ca02c" if s["verdict"] == "supported" else "#d62728" if s["verdict"] == "not supported"
                   else "#7f7f7f" for s in sens]
        ok = np.isfinite(lo)
        ax.errorbar(xs[ok], eff[ok], yerr=[eff[ok] - lo[ok], hi[ok] - eff[ok]], fmt="none", ecolor="#999", capsize=3)
        ax.scatter(xs, eff, c=colours, zorder=3, s=22)
        ax.axhline(0, color="k", lw=0.8)
        if r.get("test_kind") == "equivalence":
            for m in (-r["margin"], r["margin"]):
                ax.axhline(m, color="k", lw=0.8, ls="--", label="equivalence margin" if m > 0 else None)
            ax.legend(loc="best", fontsize=7)
        elif r.get("min_effect"):
            ax.axhline(r["min_effect"], color="k", lw=0.8, ls=":", label="smallest effect that matters")
            ax.legend(loc="best", fontsize=7)
        if (xs > 0).all() and len(xs) > 2 and xs.max() / xs.min() > 20:
            ax.set_xscale("log")
            ax.set_xticks(xs, [f"{x:g}" for x in xs], fontsize=7)
            ax.minorticks_off()
        ax.set_xlabel(label(key))
        pair = (f"{arm_name(r.get('treatment', spec.treatment))} − {arm_name(r.get('baseline', spec.baseline))}"
                + (" (equivalence)" if r.get("test_kind") == "equivalence" else ""))
        ax.set_title(f"{r['id']}\n{label(r['metric'])}\n{pair}", fontsize=7)
    for row in axes:
        row[0].set_ylabel("effect, treatment − baseline\n(+ = as claimed), tuning seeds")
    fig.tight_layout()
    fig.suptitle(f"{_title(spec)}: each claim at every shared setting "
                 "(green supported, red not supported, grey inconclusive; Holm within a claim)", fontsize=8, y=1.03)
    return [save(fig, out / f"sensitivity.{fmt}")]


@closes_figures
def plot_slice_curves(runs: pd.DataFrame, slice_runs: pd.DataFrame, label: str, spec: StudySpec, out: Path,
                      fmt: str = "png", fixed: dict | None = None) -> list[Path]:
    """The study's runs beside runs of another budget committed with it (a GPU slice at the
    papers' width and steps): test accuracy against steps, each arm (mean and 95% CI over the
    study's seeds; the slice's runs dashed, one line each), at the `fixed` setting. Whether a
    difference from the paper is the budget (the slice's curve at the study's last step) or the
    width (the two curves at the same step) is read off it."""
    fin = tuning_runs(runs[runs.status.isin(FINISHED)], spec)
    fixed = fixed or {}
    for col in swept_columns(slice_runs):  # a key the study holds at one value: the slice's runs there
        if col not in (spec.arm_col, "cfg.seed") and col not in fixed and col in fin and fin[col].nunique() == 1:
            slice_runs = slice_runs[np.isclose(slice_runs[col].astype(float), float(fin[col].iloc[0]))
                                    if is_num(fin[col].iloc[0]) else slice_runs[col].astype(str) == str(fin[col].iloc[0])]
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    last = float(fin["cfg.trainer.max_steps"].max()) if "cfg.trainer.max_steps" in fin else None
    drawn = False
    for arm in spec.arms:
        mat = _curve_matrix(arm_runs(fin, spec, arm, fixed), "eval:step", "eval:test/acc")
        if mat is not None:
            _band(ax, mat.index, mat, arm, f"{arm_name(arm)}, this study")
        for _, row in arm_runs(slice_runs, spec, arm, fixed).iterrows():
            c = row["curves"]
            if c.get("eval:test/acc"):
                ax.plot(c["eval:step"], c["eval:test/acc"], ls="--", lw=1.1, color=colour(arm),
                        label=f"{arm_name(arm)}, {label} ({row.get('outcome', row['status'])})")
                drawn = True
    if not drawn:
        plt.close(fig)
        return []
    if last:
        ax.axvline(last, color="#555555", ls=":", lw=1, label=f"this study's budget ({last:,.0f} steps)")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.set_title(f"{_title(spec)}: this study's runs and `{label}`" + (f", {_setting_text(fixed)}" if fixed else ""))
    return [save(fig, out / f"{label}_vs_study{_suffix(fixed)}.{fmt}")]


# the activation statistics drawn over training (bnlab.activation_stats), in train mode, and
# what a reader compares them with
ACT_PANELS = (("pre_skew_abs", "|skewness| of the pre-activation", 0.0),
              ("pre_kurt_abs", "|excess kurtosis| of the pre-activation", 0.0),
              ("corr_abs", "mean |correlation| between units", 0.0),
              ("norm_var", "variance of the normalized value", 1.0))


@closes_figures
def plot_act_stats(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png",
                   fixed: dict | None = None) -> list[Path]:
    """The seed's descriptions over training: per statistic, each arm at its chosen setting,
    the mean over hidden layers at every evaluation (mean and 95% CI over seeds), with the value
    a Gaussian, decorrelated or standardized unit would have as a dotted line."""
    fin, best, which = decided_runs(runs, spec)
    fig, axes = plt.subplots(1, len(ACT_PANELS), figsize=(4.2 * len(ACT_PANELS), 3.6), squeeze=False)
    drawn = False
    for ax, (stat, what, reference) in zip(axes[0], ACT_PANELS):
        for arm in spec.arms:
            setting = {**best.get(arm, {}), **(fixed or {})}
            sel = arm_runs(fin, spec, arm, setting)
            keys = sorted({k for c in sel["curves"] for k in c
                           if k.startswith("eval:probe/act_stats/") and k.endswith(f"/train/{stat}")})
            if sel.empty or not keys:
                continue
            per_run = []
            for c in sel["curves"]:
                layers = [np.asarray([np.nan if x is None else x for x in c.get(k, [])], float) for k in keys]
                layers = [x for x in layers if len(x)]
                if layers:
                    n = min(len(x) for x in layers)
                    per_run.append(pd.Series(np.nanmean([x[:n] for x in layers], axis=0),
                                             index=np.asarray(c["eval:step"][:n], float)))
            if per_run:
                _band(ax, pd.concat(per_run, axis=1).index, pd.concat(per_run, axis=1), arm, arm_name(arm))
                drawn = True
        ax.axhline(reference, ls=":", color="#555555", lw=1)
        ax.set_title(what, fontsize=8)
        ax.set_xlabel("training step")
    if not drawn:
        plt.close(fig)
        return []
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{_title(spec)}: what BN does to the activations (train mode, mean over hidden layers), {which}",
                 fontsize=9)
    fig.tight_layout()
    return [save(fig, out / f"act_stats{_suffix(fixed)}.{fmt}")]


def _corr_matrices(curves: dict) -> dict[int, np.ndarray]:
    """{layer: k x k correlation matrix} from a run's probe/act_corr keys (the last value logged)."""
    cells: dict[int, dict[tuple[int, int], float]] = {}
    for key, values in curves.items():
        if key.startswith("eval:probe/act_corr/b"):
            layer, pair = key.removeprefix("eval:probe/act_corr/b").split("/")
            a, b = (int(u.removeprefix("u")) for u in pair.split("_"))
            last = next((v for v in reversed(values) if v is not None), np.nan)
            cells.setdefault(int(layer), {})[(a, b)] = last
    out = {}
    for layer, pairs in cells.items():
        k = max(max(a, b) for a, b in pairs) + 1
        m = np.eye(k)
        for (a, b), v in pairs.items():
            m[a, b] = m[b, a] = v
        out[layer] = m
    return out


@closes_figures
def plot_act_corr(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png",
                  fixed: dict | None = None) -> list[Path]:
    """Whitening, seen: per arm (rows) and hidden layer (columns), the correlation matrix of the
    layer's first units' pre-activations at the end of training, mean over the deciding runs;
    a whitened layer is the identity (off-diagonal 0)."""
    fin, best, which = decided_runs(runs, spec)
    per_arm = {}
    for arm in spec.arms:
        sel = arm_runs(fin, spec, arm, {**best.get(arm, {}), **(fixed or {})})
        mats = [_corr_matrices(c) for c in sel["curves"]]
        mats = [m for m in mats if m]
        if mats:
            per_arm[arm] = ({layer: np.nanmean([m[layer] for m in mats if layer in m], axis=0)
                             for layer in sorted({l for m in mats for l in m})}, len(mats))
    if not per_arm:
        return []
    layers = sorted({l for m, _ in per_arm.values() for l in m})
    fig, axes = plt.subplots(len(per_arm), len(layers), figsize=(3.1 * len(layers), 3.0 * len(per_arm)), squeeze=False)
    image = None
    for row, (arm, (mats, n)) in enumerate(per_arm.items()):
        for col, layer in enumerate(layers):
            ax = axes[row, col]
            if layer not in mats:
                ax.axis("off")
                continue
            m = mats[layer]
            off = np.abs(m[~np.eye(len(m), dtype=bool)])
            image = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_title(f"{arm_name(arm)}, hidden layer {layer + 1}\nmean |r| off the diagonal {np.nanmean(off):.2f} "
                         f"(n={n})", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="correlation")
    fig.suptitle(f"{_title(spec)}: correlation of the first {len(next(iter(next(iter(per_arm.values()))[0].values())))} "
                 f"units' pre-activations at the end of training, {which}", fontsize=8)
    return [save(fig, out / f"act_corr{_suffix(fixed)}.{fmt}")]


@dataclass
class StudyView:
    """What the figure registry reads to decide which figures apply: the study's frame, spec and
    verdicts, and what it sweeps, tunes and names in its claims."""

    runs: pd.DataFrame
    spec: StudySpec
    results: list[dict]
    out: Path
    fmt: str
    slices: dict
    swept: set = field(default_factory=set)
    """The config keys the runs vary (seed included), without the cfg. prefix."""
    panels: list = field(default_factory=list)
    """The fixed settings the per-arm figures are drawn at, one figure each (selection.fixed_settings)."""
    best: dict = field(default_factory=dict)
    """Each arm's chosen setting (selection.best_settings)."""

    def numeric(self, key: str) -> bool:
        return key in self.swept and pd.api.types.is_numeric_dtype(self.runs[f"cfg.{key}"])

    def gain_keys(self) -> list[str]:
        """The keys a gain claim reads per value (`over`: each value at the other keys' best)."""
        return list(dict.fromkeys(c.over for c in self.spec.claims if c.kind == "gain" and c.over))

    def axis_keys(self) -> list[str]:
        """The numeric keys a study reads its arms against: those it tunes (an ad-hoc folder
        tunes everything it swept), then those its claims sweep over or fix (`over`, `matched`);
        never the arm key or the seed; a gain claim's key has figures of its own."""
        named = [k for c in self.spec.claims for k in ([c.over] if c.over else []) + list(c.matched or {})]
        keys = [k for k in dict.fromkeys([*self.spec.tune, *named])
                if k not in (self.spec.arm_key, "seed") and self.numeric(k)]
        return [k for k in keys if k not in self.gain_keys()]

    def has_curves(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for c in self.runs["curves"] for k in c)


def _convergence(v: StudyView) -> list[Path]:
    return [p for fixed in v.panels for p in plot_convergence(v.runs, v.spec, v.out, v.fmt, fixed)]


def _metric_vs_axes(v: StudyView) -> list[Path]:
    return [p for key in v.axis_keys()
            for p in plot_metric_vs(v.runs, v.spec, key, "best/test/acc", v.out, v.fmt, logx=key in LOG_SCALE)]


def _gain_keys(v: StudyView) -> list[Path]:
    """A gain claim's key: each value at the study's other tuned keys' best (plot_metric_by), or
    the plain grid when the study tunes nothing else."""
    paths = []
    for key in (k for k in v.gain_keys() if k in v.swept and k != v.spec.arm_key):
        if len(v.spec.tune) > 1 and key in v.spec.tune:
            for metric in ("best/test/acc", "best/gap"):
                if metric in v.runs and v.runs[metric].notna().any():
                    paths += plot_metric_by(v.runs, v.spec, key, metric, v.out, v.fmt)
        else:
            paths += plot_grid(v.runs, v.spec, key, "best/test/acc", v.out, v.fmt)
    return paths


def _percentiles(v: StudyView) -> list[Path]:
    if not v.has_curves("eval:probe/act_in/"):
        return []
    return plot_percentiles(v.runs, v.spec, v.out, v.fmt, {**v.best.get(v.spec.baseline, {}), **v.panels[0]})


def _per_panel_probes(v: StudyView) -> list[Path]:
    paths = []
    for fixed in v.panels:
        if v.has_curves("eval:probe/grad_ics/"):
            paths += plot_grad_ics(v.runs, v.spec, v.out, v.fmt, v.best.get(v.spec.baseline, {}), fixed)
        if v.has_curves("eval:probe/landscape/"):
            paths += plot_landscape(v.runs, v.spec, v.out, v.fmt, v.best.get(v.spec.baseline, {}), fixed)
    return paths


def _slices(v: StudyView) -> list[Path]:
    return [p for label_, slice_runs in v.slices.items() for fixed in v.panels
            for p in plot_slice_curves(v.runs, slice_runs, label_, v.spec, v.out, v.fmt, fixed)]


def _fig1(v: StudyView) -> list[Path]:
    return plot_ioffe_fig1(v.runs, v.spec, v.results, v.out, v.fmt) if "ioffe_fig1" in v.spec.figures else []


def _claims(v: StudyView) -> list[Path]:
    return [p for r in v.results if np.isfinite(r.get("effect", np.nan)) for p in plot_claim(r, v.spec, v.out, v.fmt)]


@dataclass(frozen=True)
class Figure:
    """One entry of the figure registry: a figure (or a family of figures) and the rule that
    says, from what the study sweeps, tunes, logs and claims, whether it applies."""

    name: str
    draw: Callable[[StudyView], list[Path]]
    """StudyView -> the figures it drew ([] where it does not apply)."""


# every figure a study can get, in the order its page lists them; a new figure is one entry
FIGURES: tuple[Figure, ...] = (
    Figure("convergence", _convergence),
    Figure("metric against each axis key", _metric_vs_axes),
    Figure("a gain claim's key", _gain_keys),
    Figure("activation-input percentiles", _percentiles),
    Figure("correlation matrices (whitening)",
           lambda v: [p for fixed in v.panels for p in plot_act_corr(v.runs, v.spec, v.out, v.fmt, fixed)]
           if v.has_curves("eval:probe/act_corr/") else []),
    Figure("activation statistics over training",
           lambda v: [p for fixed in v.panels for p in plot_act_stats(v.runs, v.spec, v.out, v.fmt, fixed)]
           if v.has_curves("eval:probe/act_stats/") else []),
    Figure("gradient ICS and landscape", _per_panel_probes),
    Figure("runs of other budgets beside the study", _slices),
    Figure("Ioffe & Szegedy Fig. 1", _fig1),
    Figure("each claim's per-seed values", _claims),
    Figure("reached the target (speed)", lambda v: plot_reached_target(v.runs, v.spec, v.results, v.out, v.fmt)),
    Figure("sensitivity", lambda v: plot_sensitivity(v.results, v.spec, v.out, v.fmt)),
)


@closes_figures
def plot_study(runs: pd.DataFrame, spec: StudySpec, results: list[dict], out: Path,
               fmt: str = "png", slices: dict | None = None) -> list[Path]:
    """Every figure of the registry that applies to the study's runs (or to a folder of runs
    launched ad hoc), and, for each of `slices` ({label: frame} of runs of another budget), the
    two side by side."""
    out.mkdir(parents=True, exist_ok=True)
    view = StudyView(runs, spec, results, out, fmt, slices or {},
                     swept={c.removeprefix("cfg.") for c in swept_columns(runs)},
                     panels=fixed_settings(runs, spec), best=best_settings(runs, spec))
    paths: list[Path] = []
    with plt.rc_context(STYLE):
        for figure in FIGURES:
            paths += figure.draw(view)
    return paths


def draw(study: dict, fmt: str = "png") -> list[Path]:
    """Every figure of a loaded and decided study (bnlab.analysis.study), into its folder."""
    from bnlab.analysis.study import slices

    study["figures"] = plot_study(study["runs"], study["spec"], study.get("results", []), study["out"], fmt,
                                  slices=slices(study))
    # a claim's figure whose claim is gone (renamed, or its row merged into another) would stay
    # linked from nowhere and contradict the page: removed
    drawn = {Path(f).name for f in study["figures"]}
    for f in Path(study["out"]).glob(f"claim_*.{fmt}"):
        if f.name not in drawn:
            f.unlink()
    return study["figures"]
