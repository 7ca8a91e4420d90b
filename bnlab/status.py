"""bnlab-status: a study's runs in the terminal, for users without a W&B account.

    bnlab-status quickstart               # by study name, under results/runs/
    bnlab-status results/runs/quickstart  # or by folder (a study or one sweep of it)
    bnlab-status quickstart --runs        # also one line per run
    bnlab-status quickstart --compare     # settings side by side: mean [95% interval] over seeds

Reads a study's runs as bnlab-plot and bnlab-report do (bnlab.analysis.study.load_study: the
run store, else the committed CSV) and says which in one line. Shows each sweep's "k of N done" with an ETA, then the runs aggregated over seeds: for
every combination of swept values, how many runs completed / diverged / are incomplete
and the mean ± std of the final metrics.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bnlab.analysis.kinds import needs_confirmation
from bnlab.analysis.selection import best_settings, edge_flags
from bnlab.analysis.spec import spec_for_runs
from bnlab.analysis.frames import FINISHED, OUTCOMES, outcome, swept_columns
from bnlab.errors import ConfigError
from bnlab.resolvers import REPO_ROOT
from bnlab.analysis.study import RESULTS, load_study
from bnlab.sweep import SWEEP_FILE, progress_line, sweep_progress

METRICS = ("test/acc", "val/acc", "best/val/acc", "steps_to_target", "step_time_ms")

def aggregate(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per setting of `by`: run counts by outcome (learned, did not learn, diverged,
    failed, incomplete) and mean ± std of the metrics over finished (completed or diverged) runs."""
    runs = runs.copy()
    for c in by:
        runs[c] = runs[c].map(lambda v: v if not isinstance(v, list) else str(v))
    rows = []
    groups = runs.groupby(by, dropna=False, sort=True) if by else [((), runs)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip([c.removeprefix("cfg.") for c in by], key))
        finished = g[g.status.isin(["completed", "diverged"])]
        row.update(runs=len(g), **{o: int((g["outcome"] == o).sum()) for o in OUTCOMES})
        for m in METRICS:
            if m in finished and finished[m].notna().any():
                vals = finished[m].astype(float)
                row[m] = f"{vals.mean():.4g} ± {vals.std(ddof=1):.2g}" if vals.count() > 1 else f"{vals.mean():.4g}"
        rows.append(row)
    return pd.DataFrame(rows)


def _print_choices(runs: pd.DataFrame, study: Path) -> None:
    """Each arm's chosen setting (on validation data, tuning seeds) and a warning when it
    sits at the edge of its grid."""
    spec = spec_for_runs(runs, study.name)
    if not spec.tune or spec.arm_col not in runs:
        return
    if not spec.adhoc and not any(needs_confirmation(spec, c) for c in spec.claims):
        return  # every claim measures the whole grid: nothing is chosen
    best = best_settings(runs, spec)
    flags = edge_flags(runs, spec, best)
    print()
    for arm, setting in best.items():
        chosen = ", ".join(f"{k.removeprefix('cfg.')}={v}" for k, v in setting.items())
        warn = f"   WARNING: {'; '.join(flags[arm])}" if arm in flags else ""
        print(f"chosen for {spec.arm_key}={arm} (on {spec.select_on}, tuning seeds): {chosen}{warn}")


def print_compare(runs: pd.DataFrame, name: str) -> None:
    """`--compare`: a study's runs (as the one loader read them) grouped by the swept keys,
    mean and 95% interval over seeds (bnlab.analysis.compare)."""
    from bnlab.analysis.compare import compare_text

    print(f"{name}: no runs" if runs.empty else f"{name}: {compare_text(runs)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bnlab-status", description=__doc__.split("\n")[0])
    ap.add_argument("study", help="study name (folder under --runs-root) or a folder of runs")
    ap.add_argument("--runs-root", default=str(REPO_ROOT / "results" / "runs"))
    ap.add_argument("--runs", action="store_true", help="also list every run")
    ap.add_argument("--compare", action="store_true",
                    help="only the settings side by side: grouped by the swept keys, counts and mean "
                         "[95%% interval] over seeds of final and best val/test accuracy, steps, ms/step")
    args = ap.parse_args(argv)
    try:  # the one loader bnlab-plot and bnlab-report use: the same runs, named in one line
        loaded = load_study(args.study, RESULTS, Path(args.runs_root))
    except FileNotFoundError as exc:
        if Path(args.study).is_dir():  # a sweep folder that has no run yet
            print(exc)
            return
        raise SystemExit(f"bnlab-status: error: {exc}")
    except ConfigError as exc:  # a study file that is not valid YAML or names no study
        print(f"bnlab-status: error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    study = loaded["store"]
    for sweep_file in sorted(study.rglob(SWEEP_FILE)) if study.is_dir() else []:
        p = sweep_progress(sweep_file.parent)
        if p:
            print(progress_line(sweep_file.parent.name, p))
    print(loaded["source_line"])
    if args.compare and loaded["ran"]:  # the same runs, side by side
        print_compare(loaded["runs"], loaded["name"])
        return
    if not loaded["ran"]:
        return
    runs = loaded["runs"]
    runs["outcome"] = [outcome(r) for _, r in runs.iterrows()]
    versions = (runs.loc[runs["status"].isin(FINISHED), "code_version"].dropna().value_counts()
                if "code_version" in runs else pd.Series(dtype=int))
    if len(versions) > 1:
        print(f"WARNING: finished runs from {len(versions)} training-code versions ("
              + ", ".join(f"{v}: {n}" for v, n in versions.items())
              + "); a code change does not retrain finished runs: force=true does (nothing is deleted)")
    by = [c for c in swept_columns(runs) if c != "cfg.seed"]
    seeds = runs["cfg.seed"].nunique() if "cfg.seed" in runs else 1
    print(f"\n{loaded['name']}: {len(runs)} runs, {seeds} seed(s); swept: "
          f"{', '.join(c.removeprefix('cfg.') for c in swept_columns(runs)) or 'nothing'}")
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(aggregate(runs, by).to_string(index=False))
        _print_choices(runs, Path(loaded["name"]))
        if args.runs:
            cols = [c for c in ["status", "outcome", *swept_columns(runs), *METRICS, "path"] if c in runs]
            print()
            print(runs[cols].rename(columns=lambda c: c.removeprefix("cfg.")).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
