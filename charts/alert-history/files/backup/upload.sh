#!/bin/sh
# upload: the off-site step of the backup Job (backup.rclone). It runs in the rclone image after the backup init
# container has written and verified a file, copies every verified backup file of this release that the remote
# lacks (so a file whose upload failed last time goes up with the next run), then, with BACKUP_PRUNE=true, keeps
# the newest BACKUP_RETENTION of them on the remote. Any failure exits non-zero, so the Job fails.
# Everything comes from the environment:
#   RCLONE_REMOTE     destination folder, <remote>:<path>/ (required)
#   RCLONE_CONFIG     the rclone config file, mounted from the Secret (read by rclone itself; never in argv or env)
#   BACKUP_DIR        the backup volume (/backup)      BACKUP_PREFIX     file name prefix
#   BACKUP_RETENTION  files to keep on the remote (7)  BACKUP_PRUNE      true: delete older files on the remote
set -eu
umask 027

log() {
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) upload: $*" >&2
}

die() {
  log "FAILED: $*"
  exit 1
}

remote=${RCLONE_REMOTE:?RCLONE_REMOTE is empty: set backup.rclone.remote}
dir=${BACKUP_DIR:-/backup}
prefix=${BACKUP_PREFIX:-dump}
retention=${BACKUP_RETENTION:-7}
prune=${BACKUP_PRUNE:-true}
case "$retention" in '' | *[!0-9]* | 0) die "BACKUP_RETENTION '$retention' is not a positive count" ;; esac
# A folder: files are named <remote>/<file>.
case "$remote" in *: | */) ;; *) remote="$remote/" ;; esac
command -v rclone > /dev/null || die "rclone is not in the image"
[ -s "${RCLONE_CONFIG:-}" ] || die "the rclone config file '${RCLONE_CONFIG:-}' is missing or empty (backup.rclone.existingSecret)"
pattern="^$prefix-[0-9]{8}T[0-9]{6}Z\.rdb\$"

# Only files the backup verified (renamed from .partial-*) carry the pattern.
# shellcheck disable=SC2012
files=$(ls -1 "$dir" | grep -E "$pattern" | sort) || true
[ -n "$files" ] || die "no verified backup file $prefix-*.rdb in $dir"
newest=$(printf '%s\n' "$files" | tail -n 1)

# The cache and the lock files go to /tmp: the root filesystem is read-only.
flags="--cache-dir /tmp/rclone --stats 0 --retries 3 --low-level-retries 5"
log "copying $(printf '%s\n' "$files" | wc -l) verified files (newest $newest) to $remote"
# shellcheck disable=SC2086
if ! rclone copy $flags --include "/$prefix-*.rdb" --max-depth 1 "$dir" "$remote" >&2; then
  die "rclone could not copy the backups to $remote (see rclone's error above: credentials, address, permissions)"
fi
# shellcheck disable=SC2086
rclone lsf $flags --files-only --max-depth 1 "$remote" > /tmp/remote-files || die "rclone could not list $remote"
grep -qx "$newest" /tmp/remote-files || die "$newest is not on $remote after the copy"
log "uploaded $remote$newest"

if [ "$prune" = true ]; then
  grep -E "$pattern" /tmp/remote-files | sort -r | tail -n "+$((retention + 1))" |
    while read -r old; do
      # shellcheck disable=SC2086
      rclone deletefile $flags "$remote$old" >&2 || die "rclone could not delete $remote$old"
      log "deleted $remote$old (keeping the newest $retention)"
    done
fi
echo "$remote$newest"
