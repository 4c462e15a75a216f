#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (unit, rules, integration) against real programs.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
#
# Serial on purpose (no pytest-xdist -n): integration tests start real servers, network namespaces and
# Prometheus, and measure recovery times, loss windows and memory peaks; on 2 cores parallel workers
# would skew those figures and could collide on host-wide resources (pod addresses, veth names).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

rc=0
.venv/bin/pytest -q "$@" || rc=$?  # testpaths (pyproject.toml) = tests/
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
