"""bnlab-plot: rebuild a study's figures (and its aggregate CSV) from logged data.

    bnlab-plot mnist_mlp                          # study name: results/runs/mnist_mlp, else results/mnist_mlp/runs.csv
    bnlab-plot results/runs/mnist_mlp/multirun_…  # one sweep of a study
    bnlab-plot results/runs/default               # runs launched ad hoc (bnlab-train -m model.norm=none,batch …)
    bnlab-plot mnist_mlp --format svg

Trains nothing and needs no network. It reads a study's runs as bnlab-status and bnlab-report do
(bnlab.analysis.study.load_study: the run store, else the committed CSV) and says which in one
line. A study's figures go to results/<study>/; a folder's to <folder>/figures/; with
`--profile P`, to results/<P>/<study>/ (git-ignored), from the runs under results/<P>/runs/. A study's verdicts are Holm-adjusted over the same family as the report
(every study's claims), so a figure never disagrees with REPORT.md; a folder's over its own.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bnlab.analysis.spec import list_studies, load_spec
from bnlab.analysis.findings import findings
from bnlab.analysis.stats import effect_text
from bnlab.errors import ConfigError
from bnlab.analysis.study import RESULTS, analyse_all, check_results_folder, decide, load_study, profile_results, save_frame
from bnlab.views.figures import draw


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="bnlab-plot", description=__doc__.split("\n")[0])
    ap.add_argument("study", help="study name (a file in experiments/) or a folder of runs")
    ap.add_argument("--results", default=str(RESULTS), help="results folder (default <repo>/results)")
    ap.add_argument("--runs-root", default=None, help="raw runs folder (default <results>/runs)")
    ap.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    ap.add_argument("--profile", default=None, help="the budget profile to read a study under (e.g. quick)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results_dir = profile_results(Path(args.results), args.profile)
    runs_root = Path(args.runs_root) if args.runs_root else None
    target = args.study.rstrip("/") or "/"
    try:
        if not Path(target).is_dir():  # a folder of runs is read, and drawn into, on its own
            check_results_folder(Path(args.results))
        if "/" not in target and target in list_studies() and load_spec(target).claims:
            # the report's Holm family: every study's claims
            study = next((s for s in analyse_all(results_dir, runs_root, args.profile) if s["name"] == target), None)
            if study is None:
                sys.exit(f"bnlab-plot: error: profile: study {target!r} has no profile {args.profile!r}")
        else:  # a folder, or a study without claims (the quickstart demo)
            study = load_study(target, results_dir, runs_root, args.profile)
            decide([study])
    except (FileNotFoundError, ConfigError) as exc:  # no such study or folder; a bad study file
        print(f"bnlab-plot: error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    print(study["source_line"])
    if not study["ran"]:
        sys.exit(f"bnlab-plot: nothing written: run `bnlab-study {target}"
                 + (f" profile={args.profile} paths.results={results_dir.resolve()}" if args.profile else "") + "` first")
    save_frame(study)
    figures = draw(study, args.format)
    for p in figures:
        print(p)
    for r in study.get("results", []):
        print(f"claim {r['id']} ({r['comparison']}): {r['verdict']} (effect {effect_text(r)}, {r['test']}, p={r['p']:.2g}, "
              f"p_Holm={r.get('p_holm', float('nan')):.2g}; {r['decided_by']})")
    print(f"{len(figures)} figure(s) in {study['out']}, in {time.perf_counter() - t0:.1f} s")
    found = findings(study["runs"], study["spec"])
    if found:  # a study without claims (the demo): what its runs found, in the report's plain words
        from bnlab.views.report import plain_sentence

        print(f"\nWhat these {len(study['runs'])} runs found ({study['budget']['seeds']} seed(s) per arm; "
              f"a verdict needs at least 5):")
        for r in found:
            print(f"- {plain_sentence(r)}")


if __name__ == "__main__":
    main()
