#!/usr/bin/env bash
# Regenerates the `## Parameters` table of the chart README from the `## @param` docs in values.yaml
# (readme-generator-for-helm, pinned in package.json). Run it after changing values.yaml.
# With an argument, writes into that copy of the README instead (the drift test uses this).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readme=${1:-charts/alert-history/README.md}
if [[ ! -x node_modules/.bin/readme-generator ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# The generator is chatty on success; show its output only when it fails (it names undocumented keys).
if ! out=$(node_modules/.bin/readme-generator -v charts/alert-history/values.yaml -r "$readme" 2>&1); then
  printf '%s\n' "$out" >&2
  exit 1
fi
