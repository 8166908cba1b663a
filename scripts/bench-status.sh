#!/usr/bin/env bash
# Benchmark: `banger daemon status --json` round-trip (process start + HTTP over the Unix socket
# + JSON) against a running daemon, with hyperfine. Prints p50/p95 in milliseconds.
# Uses a private temporary XDG layout and stops the daemon it started (by pid).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-500}
bin=target/release/banger
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
tmp=$(mktemp -d /tmp/banger-bench.XXXXXX)
export XDG_RUNTIME_DIR=$tmp/run XDG_STATE_HOME=$tmp/state XDG_CONFIG_HOME=$tmp/config XDG_CACHE_HOME=$tmp/cache
pid=$("$bin" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
cleanup() { kill "$pid" 2>/dev/null || true; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; rm -rf "$tmp"; }
trap cleanup EXIT
hyperfine -N --warmup 50 --runs "$runs" --export-json "$tmp/h.json" --style basic \
  "$bin daemon status --json" >/dev/null
python3 - "$tmp/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
t = sorted(r["times"])
p = lambda q: t[min(len(t) - 1, int(q * len(t)))] * 1000
print(f"banger daemon status --json: runs={len(t)} p50={p(0.50):.2f} ms p95={p(0.95):.2f} ms mean={r['mean']*1000:.2f} ms")
PY
