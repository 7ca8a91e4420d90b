"""Figures, made from a study frame only (bnlab.analysis): no training, no network.

Each function takes the frame (one row per run, with its `curves`) and writes one figure;
`plot_study` makes every figure that applies to a study. One style for all: the same
colour for the same arm, mean lines with ±1 std (over seeds) bands, diverged runs marked.
Headless (Agg); PNG by default, SVG or PDF on request.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bnlab.analysis import (FINISHED, StudySpec, arm_runs, best_settings, seed_stats,  # noqa: E402
                            swept_columns)

STYLE = {"figure.dpi": 110, "savefig.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "font.size": 9,
         "legend.frameon": False, "legend.fontsize": 8}
ARM_COLOURS = {"none": "#d62728", "batch": "#1f77b4"}
ARM_NAMES = {"none": "no BN", "batch": "BN"}


def colour(arm) -> str:
    return ARM_COLOURS.get(str(arm), "#7f7f7f")


def arm_name(arm) -> str:
    return ARM_NAMES.get(str(arm), str(arm))


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


def _band(ax, x, mat: pd.DataFrame, arm, label):
    mean = mat.mean(axis=1)
    std = mat.std(axis=1, ddof=1).fillna(0)
    line, = ax.plot(x, mean, color=colour(arm), lw=1.6, label=f"{label} (n={mat.shape[1]})")
    ax.fill_between(x, mean - std, mean + std, color=colour(arm), alpha=0.18, lw=0)
    return line


def plot_convergence(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png") -> list[Path]:
    """Isolation plot of training: each arm at its own best setting, validation accuracy and
    training loss against steps and against training seconds (mean ± 1 std over seeds)."""
    fin = runs[runs.status.isin(FINISHED)]
    best = best_settings(fin, spec)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    for arm in (spec.baseline, spec.treatment):
        setting = best.get(arm, {})
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
    for ax in axes[1]:
        ax.set_yscale("log")
    lo = np.nanpercentile([v for c in fin["curves"] for v in c.get("eval:val/acc", [])[1:] if v is not None] or [0], 5)
    for ax in axes[0]:
        ax.set_ylim(max(0.0, lo - 0.02), 1.0)
    axes[0, 0].legend(loc="lower right")
    chosen = "each arm at its best setting (chosen on validation accuracy)" if spec.tune else "each arm"
    fig.suptitle(f"{spec.name}: {chosen}, mean ± 1 std over seeds")
    return [save(fig, out / f"convergence.{fmt}")]


def plot_metric_vs(runs: pd.DataFrame, spec: StudySpec, key: str, metric: str, out: Path,
                   fmt: str = "png", logx: bool = True) -> list[Path]:
    """`metric` against a swept key per arm (mean with 95% CI over seeds); diverged runs
    are drawn as crosses at the bottom with their count."""
    col = f"cfg.{key}"
    fig, ax = plt.subplots(figsize=(6.4, 4))
    fin_all = runs[runs.status.isin(FINISHED)]
    means_all = fin_all.groupby([spec.arm_col, col])[metric].mean() if len(fin_all) else pd.Series(dtype=float)
    # zoom on the data, leaving room below for the divergence markers
    bottom = max(0.0, float(np.nanmin(means_all)) - 0.05) if len(means_all) else 0.0
    bottom = min(bottom, 0.9)
    marker_y = bottom + 0.02 * (1 - bottom)
    for arm in (spec.baseline, spec.treatment):
        sel = runs[runs[spec.arm_col].astype(str) == arm]
        xs, means, lo, hi = [], [], [], []
        for x, g in sel.groupby(col, sort=True):
            fin = g[g.status.isin(FINISHED)]
            s = seed_stats(fin[metric].astype(float))
            xs.append(float(x)), means.append(s["mean"]), lo.append(s["ci_low"]), hi.append(s["ci_high"])
            div = int((g.status == "diverged").sum())
            if div:
                ax.scatter([float(x)], [marker_y], marker="x", color=colour(arm), s=40, zorder=3)
                ax.annotate(f"{div}/{len(g)}", (float(x), marker_y), textcoords="offset points",
                            xytext=(4, 6 if arm == spec.treatment else -10), fontsize=7, color=colour(arm))
        ax.plot(xs, means, "o-", color=colour(arm), label=arm_name(arm), lw=1.6, ms=4)
        ax.fill_between(xs, lo, hi, color=colour(arm), alpha=0.18, lw=0)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} (mean, 95% CI over seeds)")
    ax.set_ylim(bottom, 1.0)
    ax.scatter([], [], marker="x", color="k", label="diverged runs (count/total)")
    ax.legend(loc="lower left")
    ax.set_title(f"{spec.name}: {metric} against {key}")
    return [save(fig, out / f"{metric.replace('/', '_')}_vs_{key.split('.')[-1]}.{fmt}")]


def plot_grid(runs: pd.DataFrame, spec: StudySpec, key: str, metric: str, out: Path,
              fmt: str = "png") -> list[Path]:
    """Heat map of mean `metric` over arm × a swept key (e.g. dropout × norm)."""
    fin = runs[runs.status.isin(FINISHED)]
    table = fin.pivot_table(index=spec.arm_col, columns=f"cfg.{key}", values=metric, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * table.shape[1], 1.2 + 0.7 * table.shape[0]))
    im = ax.imshow(table.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"{c:g}" for c in table.columns])
    ax.set_yticks(range(table.shape[0]), [arm_name(a) for a in table.index])
    ax.set_xlabel(key)
    ax.grid(False)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = table.values[i, j]
            light = im.norm(v) > 0.5  # dark text on the light end of the colour map
            ax.text(j, i, f"{v:.4f}", ha="center", va="center", color="k" if light else "w", fontsize=8)
    fig.colorbar(im, ax=ax, label=f"mean {metric}")
    ax.set_title(f"{spec.name}: mean {metric}")
    return [save(fig, out / f"grid_{key.split('.')[-1]}.{fmt}")]


def plot_percentiles(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png",
                     setting: dict | None = None, unit: str = "u0") -> list[Path]:
    """Ioffe & Szegedy Fig. 1(b,c): the 15th, 50th and 85th percentiles of the input to one
    last-hidden-layer activation over training, without and with BN (lowest seed)."""
    fin = runs[runs.status.isin(FINISHED)]
    setting = setting if setting is not None else {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for ax, arm in zip(axes, (spec.baseline, spec.treatment)):
        sel = arm_runs(fin, spec, arm, setting).sort_values("cfg.seed")
        if sel.empty:
            continue
        c = sel.iloc[0]["curves"]
        steps = c.get("eval:step", [])
        for p, ls in ((15, "--"), (50, "-"), (85, "--")):
            ax.plot(steps, c.get(f"eval:probe/act_in/{unit}/p{p}", []), ls, color=colour(arm), lw=1.4,
                    label=f"{p}th percentile")
        ax.set_title(f"{arm_name(arm)} (seed {sel.iloc[0]['cfg.seed']}"
                     + (f", {_setting_text(setting)}" if setting else "") + ")")
        ax.set_xlabel("training step")
    axes[0].set_ylabel(f"input to activation, unit {unit[1:]}")
    axes[0].legend()
    fig.suptitle(f"{spec.name}: activation-input percentiles over training (Ioffe & Szegedy Fig. 1b,c)")
    return [save(fig, out / f"act_input_percentiles.{fmt}")]


def plot_grad_ics(runs: pd.DataFrame, spec: StudySpec, out: Path, fmt: str = "png",
                  setting: dict | None = None) -> list[Path]:
    """Santurkar et al.'s ICS over training: per layer, the relative change ||G-G'||/||G||
    and the cosine of a layer's gradient when the earlier layers take their step
    (mean ± 1 std over seeds), without and with BN."""
    fin = runs[runs.status.isin(FINISHED)]
    layers = sorted({k.split("/")[2] for c in fin["curves"] for k in c if k.startswith("eval:probe/grad_ics/")})
    fig, axes = plt.subplots(2, len(layers), figsize=(3.4 * len(layers), 5.6), sharex=True, squeeze=False)
    for arm in (spec.baseline, spec.treatment):
        arm_sel = arm_runs(fin, spec, arm, setting or {})
        for j, layer in enumerate(layers):
            for i, measure in enumerate(("rel", "cos")):
                mat = _curve_matrix(arm_sel, "eval:step", f"eval:probe/grad_ics/{layer}/{measure}")
                if mat is not None:
                    _band(axes[i, j], mat.index, mat, arm, arm_name(arm))
            last = j == len(layers) - 1
            axes[0, j].set_title(f"affine layer {layer[1:]}" + (" (classifier)" if last else ""))
            axes[1, j].set_xlabel("training step")
    axes[0, 0].set_ylabel("||G − G′|| / ||G||")
    axes[1, 0].set_ylabel("cos(G, G′)")
    axes[0, 0].legend()
    fig.suptitle(f"{spec.name}: gradient change after the earlier layers' update (Santurkar et al. 2018)"
                 + (f", {_setting_text(setting)}" if setting else ""))
    return [save(fig, out / f"grad_ics.{fmt}")]


def plot_claim(result: dict, spec: StudySpec, out: Path, fmt: str = "png") -> list[Path]:
    """The per-seed values behind one claim's verdict: each arm's points, mean and 95% CI."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    for i, (arm, vals) in enumerate(((spec.baseline, result["baseline_values"]),
                                     (spec.treatment, result["treatment_values"]))):
        vals = np.asarray(vals, dtype=float)
        jitter = np.linspace(-0.08, 0.08, len(vals)) if len(vals) > 1 else np.zeros(len(vals))
        ax.scatter(i + jitter, vals, color=colour(arm), s=18, alpha=0.7, zorder=3)
        s = seed_stats(vals)
        ax.errorbar([i + 0.25], [s["mean"]], yerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]],
                    fmt="s", color=colour(arm), capsize=4, ms=5)
    ax.set_xticks([0, 1], [arm_name(spec.baseline), arm_name(spec.treatment)])
    ax.set_xlim(-0.5, 1.6)
    ax.set_ylabel(f"{result['metric']} ({result['kind']})")
    ax.set_title(f"claim '{result.get('id', result['claim'])}': {result['verdict']}\n"
                 f"effect {result['effect']:+.4g} [{result['ci_low']:+.4g}, {result['ci_high']:+.4g}], "
                 f"p={result['p']:.2g}", fontsize=8)
    return [save(fig, out / f"claim_{result.get('id', result['claim'])}.{fmt}")]


def plot_study(runs: pd.DataFrame, spec: StudySpec, results: list[dict], out: Path,
               fmt: str = "png") -> list[Path]:
    """Every figure that applies to the study's runs."""
    out.mkdir(parents=True, exist_ok=True)
    swept = {c.removeprefix("cfg.") for c in swept_columns(runs)}
    paths: list[Path] = []
    with plt.rc_context(STYLE):
        paths += plot_convergence(runs, spec, out, fmt)
        if "optim.lr" in swept:
            paths += plot_metric_vs(runs, spec, "optim.lr", "best/test/acc", out, fmt)
        if "init.std" in swept:
            paths += plot_metric_vs(runs, spec, "init.std", "best/test/acc", out, fmt)
        if "model.dropout" in swept:
            paths += plot_grid(runs, spec, "model.dropout", "best/test/acc", out, fmt)
        has_probe = any(k.startswith("eval:probe/") for c in runs["curves"] for k in c)
        if has_probe:
            matched = next((r["chosen"].get(spec.baseline) for r in results if r["claim"] == "ics"), None)
            paths += plot_percentiles(runs, spec, out, fmt, matched or best_settings(runs, spec).get(spec.baseline, {}))
        if any(k.startswith("eval:probe/grad_ics/") for c in runs["curves"] for k in c):
            matched = next((r["chosen"].get(spec.baseline) for r in results if r.get("id") == "ics_gradient"), None)
            paths += plot_grad_ics(runs, spec, out, fmt, matched or best_settings(runs, spec).get(spec.baseline, {}))
        for r in results:
            if np.isfinite(r.get("effect", np.nan)):
                paths += plot_claim(r, spec, out, fmt)
    return paths
