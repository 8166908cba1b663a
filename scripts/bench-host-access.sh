#!/usr/bin/env bash
# `vm exec` and `vm cp` against plain OpenSSH with the same key and options, on one real booted
# VM (needs root for its TAP, and a runtime bundle: RUNTIME=dir, default ./runtime):
#  1. `banger vm exec NAME -- true` vs `ssh <the VM's options> root@IP true`: p50 of RUNS each
#     (default 20), alternated, whole processes timed
#  2. `banger vm cp` of a SIZE_MIB (default 1024) MiB file into the VM vs `scp` of the same file
#     with the same options: ROUNDS (default 2) alternated rounds, median seconds
# Everything runs in a private temporary XDG layout with its own subnet; the daemon and VM are
# stopped by pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=$(realpath "${RUNTIME:-runtime}")
RUNS=${RUNS:-20} SIZE_MIB=${SIZE_MIB:-1024} ROUNDS=${ROUNDS:-2}
SUBNET=10.215.2.0/24
[ "$(id -u)" = 0 ] || { echo "needs root (TAPs)" >&2; exit 6; }
. scripts/bench-lib.sh
trap bench_cleanup EXIT

"$bin" vm create --name bench-x --image base --disk-size "$((SIZE_MIB * 3 + 512))M" >/dev/null 2>&1
vm=$("$bin" vm show bench-x --json)
ip=$(json 'd["ip"]' <<<"$vm")
mapfile -t opts < <(python3 -c '
import json, sys
s = json.load(sys.stdin)["ssh"]
for k, v in [("IdentityFile", s["key"]), ("IdentitiesOnly", "yes"), ("UserKnownHostsFile", s["known_hosts"]),
             ("GlobalKnownHostsFile", "/dev/null"), ("StrictHostKeyChecking", "yes"), ("HostKeyAlias", s["host_key_alias"]),
             ("LogLevel", "ERROR"), ("BatchMode", "yes")]:
    print("-o"); print(f"{k}={v}")' <<<"$vm")

echo "== 1. vm exec NAME -- true vs ssh root@IP true ($RUNS each, alternated)"
python3 - "$bin" "$ip" "$RUNS" "${opts[@]}" <<'PY'
import statistics, subprocess, sys, time
bin, ip, runs, opts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
cmds = {"vm exec": [bin, "vm", "exec", "bench-x", "--", "true"], "ssh": ["ssh", *opts, "-T", f"root@{ip}", "true"]}
times = {k: [] for k in cmds}
for _ in range(runs):
    for k, c in cmds.items():
        t = time.perf_counter()
        subprocess.run(c, check=True, stdin=subprocess.DEVNULL)
        times[k].append((time.perf_counter() - t) * 1000)
e, s = statistics.median(times["vm exec"]), statistics.median(times["ssh"])
print(f"vm exec p50 {e:.0f} ms, ssh p50 {s:.0f} ms: ratio {e / s:.2f} (target <= 1.2)")
PY

echo "== 2. vm cp of a $SIZE_MIB MiB file into the VM vs scp ($ROUNDS rounds, alternated)"
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$tmp/big.bin"
python3 - "$bin" "$ip" "$ROUNDS" "$tmp/big.bin" "${opts[@]}" <<'PY'
import statistics, subprocess, sys, time
bin, ip, rounds, f, opts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
cmds = {"vm cp": [bin, "vm", "cp", f, "bench-x:/root/a.bin"], "scp": ["scp", "-q", *opts, f, f"root@{ip}:/root/b.bin"]}
times = {k: [] for k in cmds}
for _ in range(rounds):
    for k, c in cmds.items():
        t = time.perf_counter()
        # stderr not a terminal for both (vm cp then streams sender → ssh directly, as in scripts).
        subprocess.run(c, check=True, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times[k].append(time.perf_counter() - t)
c, s = statistics.median(times["vm cp"]), statistics.median(times["scp"])
print(f"vm cp median {c:.1f} s, scp median {s:.1f} s: ratio {c / s:.2f} (target <= 1.0); rounds {times}")
PY
