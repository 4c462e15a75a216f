#!/usr/bin/env bash
# Re-downloads the vendored CRD schemas in schemas/crds/ from the given upstream release tags, checks them,
# and updates schemas/crds/README.md's version column and SHA256SUMS. Needs curl and network access.
#
#   bash scripts/update-crds.sh --prometheus-operator v0.93.0 --cert-manager v1.21.1
#
# Either option may be left out: that project's files stay as they are. Nothing is replaced unless every
# download of the run succeeded and passed its checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { echo "usage: $0 [--prometheus-operator vX.Y.Z] [--cert-manager vX.Y.Z]" >&2; exit 2; }

PO_VERSION='' CM_VERSION=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --prometheus-operator) [[ $# -ge 2 ]] || usage; PO_VERSION=$2; shift 2 ;;
    --cert-manager) [[ $# -ge 2 ]] || usage; CM_VERSION=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "$0: unknown argument: $1" >&2; usage ;;
  esac
done
[[ -n $PO_VERSION || -n $CM_VERSION ]] || usage
for v in "$PO_VERSION" "$CM_VERSION"; do
  [[ -z $v || $v =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "$0: a version looks like v1.2.3, got: $v" >&2; exit 2; }
done

DIR=schemas/crds
# Per project: the files taken (upstream names them <group>_<plural>.yaml), its repository and their folder.
PO_FILES=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml
          monitoring.coreos.com_podmonitors.yaml monitoring.coreos.com_probes.yaml)
PO_REPO=prometheus-operator/prometheus-operator PO_PATH=example/prometheus-operator-crd
CM_FILES=(cert-manager.io_certificates.yaml)
CM_REPO=cert-manager/cert-manager CM_PATH=deploy/crds

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# download FILE REPO PATH TAG: fetch to $tmp/FILE and check it is the CRD <plural>.<group> named by FILE.
download() {
  local file=$1 repo=$2 path=$3 tag=$4
  local url="https://raw.githubusercontent.com/$repo/$tag/$path/$file"
  local base=${file%.yaml}
  local group=${base%%_*} plural=${base#*_}
  echo "update-crds: $url"
  curl -fsSL --retry 3 -o "$tmp/$file" "$url" || { echo "$0: download failed: $url" >&2; exit 1; }
  grep -q '^kind: CustomResourceDefinition$' "$tmp/$file" \
    || { echo "$0: $url is not a CustomResourceDefinition" >&2; exit 1; }
  grep -q "^  name: $plural\.$group\$" "$tmp/$file" \
    || { echo "$0: $url does not define $plural.$group" >&2; exit 1; }
}

updated=()
if [[ -n $PO_VERSION ]]; then
  for f in "${PO_FILES[@]}"; do
    download "$f" "$PO_REPO" "$PO_PATH" "$PO_VERSION"
    grep -q "^    operator.prometheus.io/version: ${PO_VERSION#v}\$" "$tmp/$f" \
      || { echo "$0: $f of $PO_VERSION does not carry version ${PO_VERSION#v}" >&2; exit 1; }
    updated+=("$f=$PO_VERSION")
  done
fi
if [[ -n $CM_VERSION ]]; then
  for f in "${CM_FILES[@]}"; do
    download "$f" "$CM_REPO" "$CM_PATH" "$CM_VERSION"
    updated+=("$f=$CM_VERSION")
  done
fi

# Every download passed: update the README rows (in a copy first), then replace the files and checksums.
cp "$DIR/README.md" "$tmp/README.md"
for entry in "${updated[@]}"; do
  f=${entry%%=*} v=${entry#*=}
  sed -i -E "s#^(\| \`${f//./\\.}\` \|.*\| )v[0-9][^ |]*( \|)\$#\1$v\2#" "$tmp/README.md"
  grep -q "^| \`$f\` |.*| $v |\$" "$tmp/README.md" || { echo "$0: no row for $f in $DIR/README.md" >&2; exit 1; }
done
for entry in "${updated[@]}"; do
  f=${entry%%=*}
  install -m 644 "$tmp/$f" "$DIR/$f"
done
install -m 644 "$tmp/README.md" "$DIR/README.md"
(cd "$DIR" && sha256sum -- *.yaml > SHA256SUMS)
echo "update-crds: updated ${updated[*]}; now run .venv/bin/pytest -q tests/unit/test_monitoring_crds.py"
