"""Figures, made from the run store only (no training, no network).

Every figure is a function `(runs, curves, out_dir) -> [paths]` over two DataFrames:
`runs` (one row per run, bnlab.store.load_runs) and `curves` (one row per logged step per
run, with a `path` column naming the run). Headless: matplotlib's Agg backend.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bnlab.store import read_metrics  # noqa: E402

STYLE = {"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 10, "legend.frameon": False}
# the same arm gets the same colour in every figure
ARM_COLOURS = {"none": "#d62728", "batch": "#1f77b4"}
FINISHED = ("completed", "diverged")


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for path in runs["path"]:
        df = read_metrics(path)
        if not df.empty:
            frames.append(df.assign(path=path))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def arm_label(row: pd.Series, arm_keys: list[str]) -> str:
    return ", ".join(f"{k.removeprefix('cfg.').split('.')[-1]}={row[k]}" for k in arm_keys)


def _band(ax, x, y_runs: pd.DataFrame, colour, label):
    """Mean over runs with a ±1 std band (columns: runs, rows: x)."""
    mean, std = y_runs.mean(axis=1), y_runs.std(axis=1, ddof=1).fillna(0)
    ax.plot(x, mean, color=colour, label=f"{label} (n={y_runs.shape[1]})", lw=1.6)
    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, lw=0)


def plot_convergence(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: Path, arm_keys: list[str],
                     metric: str = "val/acc", fmt: str = "png") -> list[Path]:
    """`metric` per arm, mean ± std over seeds, against steps and against training seconds."""
    runs = runs[runs.status.isin(FINISHED)]
    evals = curves.dropna(subset=[metric])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    palette = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for key, arm in runs.groupby(arm_keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        label = arm_label(arm.iloc[0], arm_keys)
        colour = ARM_COLOURS.get(str(key[-1])) if len(key) == 1 else None
        colour = colour or next(palette)
        sub = evals[evals.path.isin(arm.path)]
        by_step = sub.pivot_table(index="step", columns="path", values=metric)
        times = sub.pivot_table(index="step", columns="path", values="time_s").mean(axis=1)
        _band(axes[0], by_step.index, by_step, colour, label)
        _band(axes[1], times.loc[by_step.index], by_step, colour, label)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training time (s, evaluation excluded)")
    axes[0].set_ylabel(metric)
    lo = evals[metric].quantile(0.1) if len(evals) else 0
    axes[0].set_ylim(max(lo, 0), 1.0 if metric.endswith("acc") else None)
    axes[0].legend(loc="lower right")
    fig.suptitle(f"{metric}: mean ± 1 std over seeds")
    fig.tight_layout()
    out = out_dir / f"convergence_{metric.replace('/', '_')}.{fmt}"
    fig.savefig(out)
    plt.close(fig)
    return [out]


def plot_study(runs: pd.DataFrame, out_dir: Path, arm_keys: list[str], fmt: str = "png") -> list[Path]:
    """Every figure that applies to a study's runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = load_curves(runs)
    with plt.rc_context(STYLE):
        paths = []
        for metric in ("val/acc", "train/loss"):
            if not curves.empty and metric in curves:
                paths += plot_convergence(runs, curves, out_dir, arm_keys, metric, fmt)
    return paths
