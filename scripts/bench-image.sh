#!/usr/bin/env bash
# `image build` overhead and the built image's allocation (needs root for TAPs and a loop mount,
# and a runtime bundle: RUNTIME=dir, default ./runtime):
#  1. `banger image build --base base --script S` where S only writes a file, against the same
#     done by hand: boot the base (`vm create --image base`), run S over SSH, copy the root
#     filesystem out (tar over that SSH into a directory, then `mkfs.ext4 -d` into a sparse image
#     of the base's size), delete the VM. Alternated, RUNS rounds (default 1); the ratio of the
#     medians (target <= 1.2).
#  2. the built image's allocated size / what its files take (du of a read-only loop mount)
#     (target <= 1.05), with the base image's own ratio for reference.
# Everything runs in a private temporary XDG layout with its own subnet; removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=$(realpath "${RUNTIME:-runtime}")
RUNS=${RUNS:-1}
SUBNET=10.215.1.0/24
[ "$(id -u)" = 0 ] || { echo "needs root (TAPs, a loop mount)" >&2; exit 6; }
. scripts/bench-lib.sh
mnt=$tmp/mnt
cleanup() {
  mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
  bench_cleanup
}
trap cleanup EXIT
now() { date +%s.%N; }
quiet() { "$@" >"$tmp/out" 2>&1 || { cat "$tmp/out" >&2; echo "failed: $*" >&2; exit 1; }; }
script=$tmp/customize.sh
printf '#!/bin/sh\nset -eu\necho bench > /etc/banger-bench\n' > "$script"
base_size=$(stat -c %s "$RUNTIME/rootfs.ext4")

builds=() manual=()
for i in $(seq 1 "$RUNS"); do
  t=$(now)
  quiet "$bin" image build --name "bench$i" --base base --script "$script"
  builds+=("$(echo "$(now) - $t" | bc)")

  t=$(now)
  quiet "$bin" vm create --name "man$i" --image base --disk-size 64M
  t1=$(now)
  "$bin" vm ssh "man$i" -- sh -s < "$script"
  t2=$(now)
  mkdir "$tmp/tree$i"
  "$bin" vm ssh "man$i" -- \
    'sync; tar --one-file-system --xattrs --numeric-owner --warning=no-file-changed -C / -cf - .; [ $? -le 1 ]' \
    | tar --xattrs --numeric-owner -xpf - -C "$tmp/tree$i"
  mkfs.ext4 -q -F -d "$tmp/tree$i" "$tmp/manual$i.ext4" "$((base_size / 1024))k" >/dev/null
  t3=$(now)
  quiet "$bin" vm delete --force "man$i"
  manual+=("$(echo "$(now) - $t" | bc)")
  printf 'round %d: image build %.1f s; by hand %.1f s (boot %.1f, script %.1f, copy %.1f, delete %.1f)\n' "$i" \
    "${builds[-1]}" "${manual[-1]}" "$(echo "$t1 - $t" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" \
    "$(echo "$(now) - $t3" | bc)"
  rm -rf "$tmp/tree$i" "$tmp/manual$i.ext4"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
b=$(median "${builds[@]}") m=$(median "${manual[@]}")
printf 'image build: %.1f s, by hand: %.1f s, ratio %.2f (target <= 1.2)\n' "$b" "$m" "$(echo "$b / $m" | bc -l)"

ratio() { # image → "allocated files ratio"
  mkdir -p "$mnt"
  mount -o loop,ro "$1" "$mnt"
  local files alloc
  files=$(du -sx --block-size=1 "$mnt" | cut -f1)
  umount "$mnt"
  alloc=$(du --block-size=1 "$1" | cut -f1)
  echo "$alloc $files $(echo "$alloc / $files" | bc -l)"
}
img=$("$bin" image show bench1 --json | json 'd["path"]')
read -r alloc files r <<<"$(ratio "$img")"
printf 'built image: %d MiB allocated, files %d MiB: ratio %.3f (target <= 1.05)\n' \
  $((alloc >> 20)) $((files >> 20)) "$r"
read -r alloc files r <<<"$(ratio "$RUNTIME/rootfs.ext4")"
printf 'the base (rootfs.ext4) for reference: %d MiB allocated, files %d MiB: ratio %.3f\n' \
  $((alloc >> 20)) $((files >> 20)) "$r"
