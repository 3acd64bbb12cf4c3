#!/usr/bin/env bash
# Runs tests/disk.rs: the database on a small tmpfs that fills up, and on an ext4 image the
# kernel turns read-only under the running daemon (errors=remount-ro, triggered through
# /sys/fs/ext4/<dev>/trigger_fs_error). The tests mount, so this needs root; they are
# #[ignore]d in the plain `cargo test` for that reason.
#
# Needs: mount/umount/findmnt (util-linux), mkfs.ext4/e2fsck (e2fsprogs), loop devices.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "disk.sh: must run as root (the tests mount file systems)" >&2
  exit 1
fi
missing=()
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v findmnt >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update
  apt-get install -y "${missing[@]}"
fi

start=$(date +%s)
echo "+ cargo test --locked --test tests disk:: -- --ignored --test-threads=1"
cargo test --locked --test tests disk:: -- --ignored --test-threads=1
echo "disk.sh: $(( $(date +%s) - start )) s"
