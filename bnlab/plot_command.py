"""bnlab-plot: rebuild a study's figures from its run store, without training anything.

    bnlab-plot quickstart                 # study name: runs under results/runs/quickstart
    bnlab-plot results/runs/quickstart    # or a study / sweep folder
    bnlab-plot quickstart --format svg --out somewhere/

Figures go to results/<study>/ by default.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bnlab.plots import plot_study
from bnlab.resolvers import REPO_ROOT
from bnlab.status import resolve_study, swept_columns
from bnlab.store import load_runs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bnlab-plot", description=__doc__.split("\n")[0])
    ap.add_argument("study", help="study name (folder under --runs-root) or a folder of runs")
    ap.add_argument("--runs-root", default=str(REPO_ROOT / "results" / "runs"))
    ap.add_argument("--out", default=None, help="output folder (default results/<study>/)")
    ap.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    study = resolve_study(args.study, Path(args.runs_root))
    runs = load_runs(study)
    if runs.empty:
        raise SystemExit(f"bnlab-plot: error: no runs under {study}")
    arms = [c for c in swept_columns(runs) if c != "cfg.seed"] or ["cfg.model.norm"]
    name = runs["cfg.name"].iloc[0]
    out = Path(args.out) if args.out else REPO_ROOT / "results" / name
    paths = plot_study(runs, out, arms, args.format)
    for p in paths:
        print(p)
    print(f"{len(paths)} figure(s) from {len(runs)} runs in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
