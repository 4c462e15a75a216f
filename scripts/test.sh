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

junit=$(mktemp)
trap 'rm -f "$junit"' EXIT
rc=0
.venv/bin/pytest -q --junitxml="$junit" "$@" || rc=$?  # no path: testpaths (pyproject.toml) = tests/
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
# A few failures (never more than MAX_RERUN) are run once more on their own: the failover tests race real
# Sentinels on 2 shared cores, and a loaded moment can still miss a window. A test that passes on the rerun is
# listed as flaky (a defect to fix, named in the output); one that fails again fails the run.
MAX_RERUN=3
if [[ $rc -eq 1 ]]; then
  failed=$(.venv/bin/python - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
print(sum(1 for c in ET.parse(sys.argv[1]).iter("testcase") if c.find("failure") is not None or c.find("error") is not None))
PY
)
  if [[ $failed -ge 1 && $failed -le $MAX_RERUN ]]; then
    echo "test.sh: $failed test(s) failed; running them once more on their own" >&2
    rerun=$(mktemp)
    trap 'rm -f "$junit" "$rerun"' EXIT
    if .venv/bin/pytest -q --lf --junitxml="$rerun" "$@"; then
      echo "test.sh: FLAKY: these failed once and passed on the rerun:" >&2
      .venv/bin/python - "$rerun" <<'PY' >&2
import sys, xml.etree.ElementTree as ET
for c in ET.parse(sys.argv[1]).iter("testcase"):
    print(f"  {c.get('classname')}::{c.get('name')}")
PY
      rc=0
    fi
  fi
fi
# CI installs every program the tests need, so a skip there means a test did not run: fail.
if [[ $rc -eq 0 && ${CI:-} == true ]]; then
  .venv/bin/python - "$junit" <<'PY' || rc=1
import sys, xml.etree.ElementTree as ET
# pytest writes an xfail as <skipped type="pytest.xfail">: that test ran and checked everything up to a
# known, documented miss (a strict xfail that starts passing fails the run), so it is listed, not refused.
cases = [(f"{c.get('classname')}::{c.get('name')}", s) for c in ET.parse(sys.argv[1]).iter("testcase")
         for s in c.findall("skipped")]
xfailed = [f"{name}: {s.get('message', '')}" for name, s in cases if s.get("type") == "pytest.xfail"]
skipped = [f"{name}: {s.get('message', '')}" for name, s in cases if s.get("type") != "pytest.xfail"]
if xfailed:
    print(f"test.sh: {len(xfailed)} known miss(es) (xfail), each documented where it is asserted:", *xfailed,
          sep="\n  ")
if skipped:
    print(f"test.sh: {len(skipped)} test(s) skipped in CI, where everything is installed:", *skipped, sep="\n  ")
    sys.exit(1)
PY
fi
exit "$rc"
