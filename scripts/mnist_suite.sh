#!/usr/bin/env bash
# The MNIST suite: every MNIST study in experiments/, each through `bnlab-study` (tune, then
# confirm), one after the other, two jobs at a time (one torch thread each) on this machine.
#
#   BNLAB_DATA=<data root> scripts/mnist_suite.sh            # all of it
#   BNLAB_DATA=<data root> scripts/mnist_suite.sh lr_mnist   # some studies only
#
# Resumable: launched again (after a crash, a reboot, a kill), it trains only what is
# missing, and an interrupted run continues from its checkpoint. Each study's wall time is
# printed and appended to results/runs/suite_times.txt (git-ignored, beside the raw runs).
# Then `scripts/rebuild_results.sh` writes the CSVs, figures and results/REPORT.md.
# Extra Hydra overrides go in BNLAB_OVERRIDES (for example "hydra.launcher.n_jobs=4").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
STUDIES=(ioffe_fig1 lr_mnist init_mnist dropout_mnist noisy_bn_mnist mnist_mlp)
[ $# -gt 0 ] && STUDIES=("$@")
read -r -a extra <<< "${BNLAB_OVERRIDES:-}"
mkdir -p results/runs
for study in "${STUDIES[@]}"; do
    start=$(date +%s)
    echo "== $(date -u +%FT%TZ) $study"
    "$BIN/bnlab-study" "$study" tracking.mode=disabled hydra.launcher.n_jobs=2 "${extra[@]}"
    took=$(( $(date +%s) - start ))
    echo "== $study took ${took} s"
    echo "$(date -u +%FT%TZ) $study ${took} s $(nproc) cores" >> results/runs/suite_times.txt
done
