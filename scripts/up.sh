#!/usr/bin/env bash
# Sets everything up, then starts the local stack: the chart's pod as real processes on this machine
# (`alert-history-cache up`, needs root). Arguments go to `up`, e.g. `--engine redis7 --set ...`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

exec .venv/bin/alert-history-cache up "$@"
