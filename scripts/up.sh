#!/usr/bin/env bash
# Sets everything up, then starts the local stack: the chart's pod as real processes on this machine
# (`alert-history-cache up`, needs root). Arguments go to `up`, e.g. `--engine redis7 --set ...`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

cli=.venv/bin/alert-history-cache
if "$cli" up --help >/dev/null 2>&1; then
  exec "$cli" up "$@"
fi
# Until the local stack lands, show what it would run: the chart rendered with the defaults.
echo "up.sh: 'alert-history-cache up' is not available yet; rendering the chart instead (alert-history-cache render)" >&2
exec "$cli" render "$@"
