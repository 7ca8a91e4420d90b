"""bnlab-status: a study's runs in the terminal, for users without a W&B account.

    bnlab-status quickstart               # by study name, under results/runs/
    bnlab-status results/runs/quickstart  # or by folder (a study or one sweep of it)
    bnlab-status quickstart --runs        # also one line per run
    bnlab-status quickstart --compare     # settings side by side: mean [95% interval] over seeds

Shows each sweep's "k of N done" with an ETA, then the runs aggregated over seeds: for
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
from bnlab.resolvers import REPO_ROOT
from bnlab.store import load_runs
from bnlab.sweep import SWEEP_FILE, progress_line, sweep_progress

METRICS = ("test/acc", "val/acc", "best/val/acc", "steps_to_target", "step_time_ms")

def resolve_study(arg: str, runs_root: Path) -> Path:
    path = Path(arg)
    if path.is_dir():
        return path
    if (runs_root / arg).is_dir():
        return runs_root / arg
    known = sorted(p.name for p in runs_root.iterdir() if p.is_dir()) if runs_root.is_dir() else []
    raise SystemExit(f"bnlab-status: error: no study {arg!r} in {runs_root}; "
                     f"known: {', '.join(known) or 'none'}")


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


def print_compare(study: Path) -> None:
    """`--compare`: the runs under `study` grouped by the swept keys, mean and 95% interval
    over seeds (bnlab.analysis.compare), read with the analysis' frame loader."""
    from bnlab.analysis.compare import compare_text
    from bnlab.analysis.frames import frame_from_store

    runs = frame_from_store(study)
    print(f"no runs under {study}" if runs.empty else f"{study}: {compare_text(runs)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bnlab-status", description=__doc__.split("\n")[0])
    ap.add_argument("study", help="study name (folder under --runs-root) or a folder of runs")
    ap.add_argument("--runs-root", default=str(REPO_ROOT / "results" / "runs"))
    ap.add_argument("--runs", action="store_true", help="also list every run")
    ap.add_argument("--compare", action="store_true",
                    help="only the settings side by side: grouped by the swept keys, counts and mean "
                         "[95%% interval] over seeds of final and best val/test accuracy, steps, ms/step")
    args = ap.parse_args(argv)
    study = resolve_study(args.study, Path(args.runs_root))
    if args.compare:
        print_compare(study)
        return

    for sweep_file in sorted(study.rglob(SWEEP_FILE)):
        p = sweep_progress(sweep_file.parent)
        if p:
            print(progress_line(sweep_file.parent.name, p))
    runs = load_runs(study)
    if runs.empty:
        print(f"no runs under {study}")
        return
    runs["outcome"] = [outcome(r) for _, r in runs.iterrows()]
    versions = runs.loc[runs["status"].isin(FINISHED), "code_version"].dropna().value_counts()
    if len(versions) > 1:
        print(f"WARNING: finished runs from {len(versions)} training-code versions ("
              + ", ".join(f"{v}: {n}" for v, n in versions.items())
              + "); a code change does not retrain finished runs: force=true does (nothing is deleted)")
    by = [c for c in swept_columns(runs) if c != "cfg.seed"]
    seeds = runs["cfg.seed"].nunique() if "cfg.seed" in runs else 1
    print(f"\n{study}: {len(runs)} runs, {seeds} seed(s); swept: "
          f"{', '.join(c.removeprefix('cfg.') for c in swept_columns(runs)) or 'nothing'}")
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(aggregate(runs, by).to_string(index=False))
        _print_choices(runs, study)
        if args.runs:
            cols = [c for c in ["status", "outcome", *swept_columns(runs), *METRICS, "path"] if c in runs]
            print()
            print(runs[cols].rename(columns=lambda c: c.removeprefix("cfg.")).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
