#!/usr/bin/env bash
# Benchmarks of the daemon itself (no root, no VM boots; needs a runtime bundle for `vm create`:
# RUNTIME=dir, default ./runtime):
#  1. bangerd's resident memory (VmRSS) idle, then with 100 VMs registered
#  2. `banger vm list --json` with 100 VMs registered (hyperfine; p50/p95)
# A private temporary XDG layout; the daemon it starts is stopped by pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=$(realpath "${RUNTIME:-runtime}")
SUBNET=10.215.0.0/16
. scripts/bench-lib.sh
cleanup() { bench_cleanup; }
trap cleanup EXIT
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$daemon_pid/status"; }

echo "== 1. bangerd resident memory"
for _ in $(seq 1 20); do "$bin" daemon status --json >/dev/null; done
sleep 2 # a few monitor ticks
echo "idle: $(rss) MiB (target <= 15 MiB)"
for i in $(seq 1 100); do "$bin" vm create --name "list-$i" --image base --no-start --disk-size 64M >/dev/null 2>&1; done
n=$("$bin" vm list --json | json 'len(d["vms"])')
[ "$n" -eq 100 ] || { echo "expected 100 VMs, have $n" >&2; exit 1; }

echo "== 2. vm list --json with $n VMs registered"
hyperfine -N --warmup 20 --runs 300 --export-json "$tmp/list.json" --style basic "$bin vm list --json" >/dev/null
python3 - "$tmp/list.json" "$n" <<'PY'
import json, sys
t = sorted(json.load(open(sys.argv[1]))["results"][0]["times"])
p = lambda q: t[min(len(t) - 1, int(q * len(t)))] * 1000
print(f"vm list --json with {sys.argv[2]} VMs: p50={p(0.5):.2f} ms p95={p(0.95):.2f} ms (target p50 <= 5 ms)")
PY
sleep 2
echo "with $n VMs registered (after 320 lists): $(rss) MiB (target <= 30 MiB)"
