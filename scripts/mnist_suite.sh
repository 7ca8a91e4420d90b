#!/usr/bin/env bash
# The MNIST suite: scripts/suite.sh mnist (read it for the options: --quick, study names).
exec "$(dirname "$0")/suite.sh" mnist "$@"
