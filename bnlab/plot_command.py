"""bnlab-plot: rebuild a study's figures (and its aggregate CSV) from logged data.

    bnlab-plot mnist_mlp                          # study name: results/runs/mnist_mlp, else results/mnist_mlp/runs.csv
    bnlab-plot results/runs/mnist_mlp/multirun_…  # a study or sweep folder
    bnlab-plot mnist_mlp --format svg

Trains nothing and needs no network. Figures go to results/<study>/.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bnlab.analysis import list_studies
from bnlab.report import RESULTS, study_results
from bnlab.store import load_runs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bnlab-plot", description=__doc__.split("\n")[0])
    ap.add_argument("study", help="study name (a file in experiments/) or a folder of its runs")
    ap.add_argument("--results", default=str(RESULTS), help="results folder (default <repo>/results)")
    ap.add_argument("--runs-root", default=None, help="raw runs folder (default <results>/runs)")
    ap.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    run_dir = None
    name = args.study
    if Path(args.study).is_dir():
        run_dir = Path(args.study)
        runs = load_runs(run_dir)
        if runs.empty:
            raise SystemExit(f"bnlab-plot: error: no runs under {run_dir}")
        name = str(runs["cfg.name"].iloc[0])
    if name not in list_studies():
        raise SystemExit(f"bnlab-plot: error: study {name!r} not in experiments/; "
                         f"known: {', '.join(list_studies())}")
    s = study_results(name, Path(args.results), fmt=args.format, run_dir=run_dir,
                      runs_root=Path(args.runs_root) if args.runs_root else None)
    if not s["ran"]:
        raise SystemExit(f"bnlab-plot: error: study {name!r} has no runs and no CSV under {args.results}; "
                         f"run `bnlab-train experiments={name}` first")
    for p in s["figures"]:
        print(p)
    for r in s["results"]:
        print(f"claim {r['claim']}: {r['verdict']} (effect {r['effect']:+.4g} "
              f"[{r['ci_low']:+.4g}, {r['ci_high']:+.4g}], p={r['p']:.2g})")
    print(f"{len(s['figures'])} figure(s) from {len(s['runs'])} runs ({s['source']}) "
          f"in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
