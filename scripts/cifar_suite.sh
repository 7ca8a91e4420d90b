#!/usr/bin/env bash
# The CIFAR-10 suite at the cpu profile (scripts/suite.sh cifar; --profile gpu for the papers' budgets).
exec "$(dirname "$0")/suite.sh" cifar "$@"
