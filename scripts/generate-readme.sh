#!/usr/bin/env bash
# Regenerates the `## Parameters` table of the chart README from the `## @param` docs in values.yaml
# (readme-generator-for-helm, pinned in package.json). Run it after changing values.yaml.
# Usage: generate-readme.sh [README [VALUES]]; the drift test writes into a copy of the README.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readme=${1:-charts/alert-history/README.md}
values=${2:-charts/alert-history/values.yaml}
if [[ ! -x node_modules/.bin/readme-generator ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# The generator is chatty on success; show its output only when it fails (it names undocumented keys).
if ! out=$(node_modules/.bin/readme-generator -v "$values" -r "$readme" 2>&1); then
  printf '%s\n' "$out" >&2
  exit 1
fi
