#!/usr/bin/env bash
# A suite of studies (bnlab/analysis/suites.py): each through `bnlab-study` (tune, then confirm), one
# after the other, two jobs at a time (one torch thread each) on this machine.
#
#   BNLAB_DATA=<data root> scripts/suite.sh mnist                 # the MNIST suite
#   BNLAB_DATA=<data root> scripts/suite.sh mnist lr_mnist        # some of its studies only
#   BNLAB_DATA=<data root> scripts/suite.sh mnist --quick         # a first look in minutes
#   BNLAB_DATA=<data root> scripts/suite.sh cifar                 # CIFAR-10 at the cpu profile
#   BNLAB_DATA=<data root> scripts/suite.sh cifar --profile gpu   # the papers' budgets (a GPU)
# (scripts/mnist_suite.sh and scripts/cifar_suite.sh are the first and fourth lines.)
#
# A study's default profile writes into results/ (the committed evidence). Any other profile
# (--quick is --profile quick: fewer steps, seeds and rates, a first look, not evidence) runs
# into results/<profile>/ (git-ignored) and writes results/<profile>/REPORT.md, leaving the
# committed results alone.
#
# Resumable: launched again (after a crash, a reboot, a kill), it trains only what is
# missing, and an interrupted run continues from its checkpoint. Each study's wall time is
# printed and appended to <results>/runs/suite_times.txt (git-ignored, beside the raw runs).
# Then `scripts/rebuild_results.sh` writes the CSVs, figures and results/REPORT.md.
# Extra Hydra overrides go in BNLAB_OVERRIDES (for example "hydra.launcher.n_jobs=4").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
suite=${1:?usage: scripts/suite.sh <mnist|cifar> [--quick | --profile P] [study ...]}
shift
# the suite's studies, in order: bnlab/analysis/suites.py (the report's budget table sums the same list)
studies=$("$BIN/python" -c "import sys; from bnlab.analysis.suites import studies_of; print(*studies_of(sys.argv[1]))" "$suite") || exit 2
read -r -a STUDIES <<< "$studies"
read -r -a extra <<< "${BNLAB_OVERRIDES:-}"
results=results
profile=
case "${1:-}" in
    --quick) profile=quick; shift ;;
    --profile) profile=${2:?--profile needs a name}; shift 2 ;;
esac
if [ -n "$profile" ]; then
    results=results/$profile
    extra+=("profile=$profile" "paths.results=$(pwd)/$results")
fi
[ $# -gt 0 ] && STUDIES=("$@")
mkdir -p "$results/runs"
suite_start=$(date +%s)
for study in "${STUDIES[@]}"; do
    # a study without the profile (mnist_mlp, cost_mnist, activations_mnist and placement_mnist
    # have no `quick` one) is skipped, said: its default budget is not a first look
    if [ -n "$profile" ] && ! "$BIN/python" -c "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])) or {}; sys.exit(0 if sys.argv[2] in (d.get('profiles') or {}) else 1)" "experiments/$study.yaml" "$profile"; then
        echo "== $study has no '$profile' profile: skipped (run it without --quick / --profile)"
        continue
    fi
    start=$(date +%s)
    echo "== $(date -u +%FT%TZ) $study"
    "$BIN/bnlab-study" "$study" tracking.mode=disabled hydra.launcher.n_jobs=2 "${extra[@]}"
    took=$(( $(date +%s) - start ))
    echo "== $study took ${took} s"
    echo "$(date -u +%FT%TZ) $study ${took} s $(nproc) cores ${extra[*]}" >> "$results/runs/suite_times.txt"
done
echo "== the $suite suite took $(( $(date +%s) - suite_start )) s"
if [ -n "$profile" ]; then
    "$BIN/bnlab-report" --profile "$profile" --results "$results"
fi
