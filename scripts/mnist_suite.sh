#!/usr/bin/env bash
# The MNIST suite: every MNIST study in experiments/, each through `bnlab-study` (tune, then
# confirm), one after the other, two jobs at a time (one torch thread each) on this machine.
#
#   BNLAB_DATA=<data root> scripts/mnist_suite.sh            # all of it
#   BNLAB_DATA=<data root> scripts/mnist_suite.sh lr_mnist   # some studies only
#   BNLAB_DATA=<data root> scripts/mnist_suite.sh --quick    # a first look in minutes
#
# --quick runs every study under its `quick` profile (fewer steps, seeds and rates: a first
# look, not evidence; its verdicts say "fewer than 5 seeds") into results/quick/ (git-ignored),
# and writes results/quick/REPORT.md, leaving the committed results alone.
#
# Resumable: launched again (after a crash, a reboot, a kill), it trains only what is
# missing, and an interrupted run continues from its checkpoint. Each study's wall time is
# printed and appended to results/runs/suite_times.txt (git-ignored, beside the raw runs).
# Then `scripts/rebuild_results.sh` writes the CSVs, figures and results/REPORT.md.
# Extra Hydra overrides go in BNLAB_OVERRIDES (for example "hydra.launcher.n_jobs=4").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
# the suite's studies, in order: bnlab/suites.py (the report's budget table sums the same list)
read -r -a STUDIES <<< "$("$BIN/python" -c 'from bnlab.suites import MNIST_SUITE; print(*MNIST_SUITE)')"
read -r -a extra <<< "${BNLAB_OVERRIDES:-}"
results=results
if [ "${1:-}" = "--quick" ]; then
    shift
    results=results/quick
    extra+=(profile=quick "paths.results=$(pwd)/$results")
fi
[ $# -gt 0 ] && STUDIES=("$@")
mkdir -p "$results/runs"
suite_start=$(date +%s)
for study in "${STUDIES[@]}"; do
    start=$(date +%s)
    echo "== $(date -u +%FT%TZ) $study"
    "$BIN/bnlab-study" "$study" tracking.mode=disabled hydra.launcher.n_jobs=2 "${extra[@]}"
    took=$(( $(date +%s) - start ))
    echo "== $study took ${took} s"
    echo "$(date -u +%FT%TZ) $study ${took} s $(nproc) cores ${extra[*]}" >> "$results/runs/suite_times.txt"
done
echo "== the suite took $(( $(date +%s) - suite_start )) s"
if [ "$results" = results/quick ]; then
    "$BIN/bnlab-report" --profile quick --results "$results"
fi
