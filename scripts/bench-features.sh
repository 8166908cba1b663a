#!/usr/bin/env bash
# vm stats, DNS and NAT on one real booted VM (needs root for TAPs, iptables and a network
# namespace, and a runtime bundle: RUNTIME=dir, default ./runtime):
#  1. `banger vm stats NAME --json` on a running VM: p50/p90 of RUNS runs (default 50), whole CLI
#     process included
#  2. a `.vm` A query to bangerd on loopback: p50/p99 of 2000 (examples/bench_dns)
#  3. a record's visibility: the VM's `running` event → first DNS answer for it (polled each ms)
#  4. `vm set NAME --nat` on a running VM → the first NAT'ed packet from the guest received by a
#     server in a netns behind a veth (the guest sends a UDP datagram every ~20 ms from one bash
#     loop, each from a new socket; the host clock times both ends)
# Everything runs in a private temporary XDG layout with its own subnet; the daemon and VM are
# stopped by pid and the namespace removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=$(realpath "${RUNTIME:-runtime}")
RUNS=${RUNS:-50}
SUBNET=10.215.0.0/24
[ "$(id -u)" = 0 ] || { echo "needs root (TAPs, iptables, a network namespace)" >&2; exit 6; }
dns_bench=$PWD/target/release/examples/bench_dns
[ -x "$dns_bench" ] || { echo "build first: make bench-features builds it" >&2; exit 1; }
. scripts/bench-lib.sh
ns=bgbench$$ veth=bgb$$
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  bench_cleanup
}
trap cleanup EXIT

"$bin" vm create --name bench-a --image base --disk-size 256M >/dev/null 2>&1
"$bin" vm stats bench-a --json >/dev/null # the first request after a boot waits for the guest

echo "== 1. vm stats --json on a running VM ($RUNS runs)"
python3 - "$bin" "$RUNS" <<'EOF'
import subprocess, sys, time
bin, runs = sys.argv[1], int(sys.argv[2])
ms = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run([bin, "vm", "stats", "bench-a", "--json"], check=True, stdout=subprocess.DEVNULL)
    ms.append((time.perf_counter() - t) * 1000)
    time.sleep(0.05)
ms.sort()
print(f"vm stats --json: p50 {ms[len(ms)//2]:.1f} ms, p90 {ms[int(len(ms)*0.9)]:.1f} ms (target p50 <= 50 ms)")
EOF

listen=$("$bin" dns status --json | json 'd["listen"]')
echo "== 2. .vm query to bangerd on $listen"
"$dns_bench" --server "$listen" bench-a.vm.

echo "== 3. record visible after the VM reaches running"
"$bin" vm stop bench-a >/dev/null 2>&1
"$dns_bench" --until "$listen" bench-a.vm. >"$tmp/seen" &
poller=$!
"$bin" vm start bench-a >/dev/null 2>&1
wait "$poller"
running=$(timeout 2 "$bin" events --json --since 0 | python3 -c '
import json, sys
t = None
for line in sys.stdin:
    e = json.loads(line)
    if e.get("vm") == "bench-a" and e.get("event") == "phase" and e.get("to") == "running":
        t = e["time"]
print(t)' || true)
python3 -c "print(f'record visible {(float(open(\"$tmp/seen\").read()) - $running) * 1000:.1f} ms after the running event (target <= 100 ms)')"

echo "== 4. vm set --nat on a running VM → first NAT'ed packet"
ip netns add "$ns"
ip link add "${veth}h" type veth peer name "${veth}o"
ip link set "${veth}o" netns "$ns"
ip addr add 198.18.7.1/30 dev "${veth}h"
ip link set "${veth}h" up
ip netns exec "$ns" ip addr add 198.18.7.2/30 dev "${veth}o"
ip netns exec "$ns" ip link set "${veth}o" up
ip netns exec "$ns" python3 -u -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.7.2", 9999)); print("listening", flush=True)
while True:
    data, peer = s.recvfrom(100); print(f"{time.time():.6f} {peer[0]}", flush=True)' >"$tmp/packets" &
server_pid=$!
until grep -qs listening "$tmp/packets"; do sleep 0.05; done
"$bin" vm ssh bench-a -- 'for i in $(seq 1 1500); do echo x >/dev/udp/198.18.7.2/9999; sleep 0.02; done' &
guest_loop=$!
sleep 4 # the guest is sending by now (nothing gets through without NAT)
t0=$(python3 -c 'import time; print(f"{time.time():.6f}")')
"$bin" vm set bench-a --nat >/dev/null 2>&1
# Without NAT the datagrams get through un-NATed (forwarding is on; no reply is needed): only
# those from the host's outside address count.
for _ in $(seq 1 100); do grep -q ' 198.18.7.1$' "$tmp/packets" && break; sleep 0.1; done
kill "$guest_loop" 2>/dev/null || true
python3 - "$t0" "$tmp/packets" <<'EOF'
import sys
t0 = float(sys.argv[1])
lines = [l.split() for l in open(sys.argv[2]) if l.strip().endswith(" 198.18.7.1")]
if not lines:
    sys.exit("no packet reached the outside server within 10 s of vm set --nat")
t, peer = float(lines[0][0]), lines[0][1]
print(f"vm set --nat → first NAT'ed packet received {(t - t0) * 1000:.0f} ms later, from {peer} (target <= 1000 ms)")
EOF
