#!/usr/bin/env bash
# Rebuild every committed result from logged data, without training: each study's CSV
# (from its raw runs under results/runs/ when they are there, else the committed CSV is
# read), its figures, and results/REPORT.md with every verdict.
#
#   scripts/rebuild_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
"$BIN/bnlab-report" "$@"
