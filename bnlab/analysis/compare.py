"""Runs side by side, for a reader without a W&B account: `bnlab-status <study> --compare`.

One row per setting of the swept keys (the config keys that vary across the runs, the seed
left out), and per row: how many runs, how many completed, diverged and failed, and the mean
over seeds with its 95% interval (bnlab.analysis.stats.seed_stats: the t-interval of the
mean over the finished runs) of the final and best validation and test accuracy, the steps
and the time per step. `wandb leet` shows runs one by one; this is the table it lacks.
"""
from __future__ import annotations

import math

import pandas as pd

from bnlab.analysis.frames import FINISHED, swept_columns
from bnlab.analysis.stats import seed_stats

# (column in the study frame, its heading): final and best accuracies, steps, cost per step
COMPARED = (("val/acc", "final val/acc"), ("best/val/acc", "best val/acc"),
            ("test/acc", "final test/acc"), ("best/test/acc", "best test/acc"),
            ("steps", "steps"), ("step_time_ms", "ms/step"))
# run counts by status; `incomplete` is anything else (still training, killed, damaged)
COUNTED = ("completed", "diverged", "failed")


def group_keys(runs: pd.DataFrame) -> list[str]:
    """The swept keys a comparison groups by: every swept config column except the seed."""
    return [c for c in swept_columns(runs) if c != "cfg.seed"]


def _number(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


def interval_text(values) -> str:
    """`mean [low, high]` over seeds; the mean alone for one seed; `-` for none."""
    s = seed_stats(values)
    if s["n"] == 0:
        return "-"
    if s["n"] == 1:
        return _number(s["mean"])
    return f"{_number(s['mean'])} [{_number(s['ci_low'])}, {_number(s['ci_high'])}]"


def _hashable(value):
    return str(value) if isinstance(value, (list, dict)) else value


def compare_table(runs: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """One row per setting of `by` (default: group_keys): runs, n (finished runs, over which
    the means are taken), completed / diverged / failed / incomplete counts and how many of
    the completed runs did not learn, then `mean [95%
    interval]` of each COMPARED metric over the finished runs. Superseded runs (retrained
    with force=true) are left out: each config counts once."""
    runs = runs[runs["status"] != "superseded"].copy()
    by = group_keys(runs) if by is None else by
    for c in by:
        runs[c] = runs[c].map(_hashable)
    rows = []
    groups = runs.groupby(by, dropna=False, sort=True) if by else [((), runs)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip([c.removeprefix("cfg.") for c in by], key))
        finished = g[g["status"].isin(FINISHED)]
        row.update(runs=len(g), n=len(finished), **{s: int((g["status"] == s).sum()) for s in COUNTED})
        row["incomplete"] = len(g) - sum(row[s] for s in COUNTED)
        # completed without learning (stuck at chance): a result of its own (frames.outcome)
        row["not learned"] = int((g["outcome"] == "did not learn").sum()) if "outcome" in g else 0
        for col, heading in COMPARED:
            values = pd.to_numeric(finished[col], errors="coerce") if col in finished else []
            row[heading] = interval_text(list(values))
        rows.append(row)
    return pd.DataFrame(rows)


def compare_text(runs: pd.DataFrame) -> str:
    """The comparison as plain text: a heading naming the grouping, then the table."""
    by = group_keys(runs)
    seeds = runs["cfg.seed"].nunique() if "cfg.seed" in runs else 1
    head = (f"{len(runs)} runs, {seeds} seed(s), grouped by "
            f"{', '.join(c.removeprefix('cfg.') for c in by) or 'nothing (no key varies)'}; "
            f"mean [95% interval] over the finished runs (n) of each group")
    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_colwidth", 40):
        return head + "\n" + compare_table(runs, by).to_string(index=False)
