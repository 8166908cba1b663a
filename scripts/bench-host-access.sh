#!/usr/bin/env bash
# `vm exec` and `vm cp` against plain OpenSSH with the same key and options, on one real booted
# VM (needs root for its TAP, and a runtime bundle: RUNTIME=dir, default ./runtime):
#  1. `banger vm exec NAME -- true` vs `ssh <the VM's options> root@IP true`: p50 of RUNS each
#     (default 20), alternated, whole processes timed
#  2. `banger vm cp` of a SIZE_MIB (default 1024) MiB file into the VM vs `scp` of the same file
#     with the same options: ROUNDS (default 2) alternated rounds, median seconds
#  3. a published port vs the guest's address directly, to the same servers in the guest (perl):
#     throughput of FWD_MIB (default 256) MiB into a sink, FWD_ROUNDS (default 3) alternated
#     rounds; and 1-byte round trips on an open connection, PINGS (default 2000) each, alternated
#     in batches of 100: p50 added by the forward
# ONLY=exec|cp|ports runs one of them.
# Everything runs in a private temporary XDG layout with its own subnet; the daemon and VM are
# stopped by pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=$(realpath "${RUNTIME:-runtime}")
RUNS=${RUNS:-20} SIZE_MIB=${SIZE_MIB:-1024} ROUNDS=${ROUNDS:-2} ONLY=${ONLY:-}
FWD_MIB=${FWD_MIB:-256} FWD_ROUNDS=${FWD_ROUNDS:-3} PINGS=${PINGS:-2000}
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
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

if want exec; then
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

fi

if want cp; then
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
rm -f "$tmp/big.bin"
fi

if want ports; then
echo "== 3. a published port vs the guest's address ($FWD_MIB MiB x $FWD_ROUNDS rounds; $PINGS round trips each)"
echo_pl='use IO::Socket::INET; $SIG{CHLD}="IGNORE"; my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 64, ReuseAddr => 1) or die $!;
  while (1) { my $c = $s->accept or next; $c->setsockopt(6, 1, 1); if (!fork) { while (sysread($c, my $b, 65536)) { syswrite($c, $b) } exit } close $c }'
sink_pl='use IO::Socket::INET; $SIG{CHLD}="IGNORE"; my $s = IO::Socket::INET->new(LocalPort => 8081, Listen => 64, ReuseAddr => 1) or die $!;
  while (1) { my $c = $s->accept or next; if (!fork) { my $n = 0; while (my $r = sysread($c, my $b, 262144)) { $n += $r } syswrite($c, "$n\n"); exit } close $c }'
"$bin" vm exec bench-x -- systemd-run --quiet --collect --unit bench-echo perl -e "$echo_pl"
"$bin" vm exec bench-x -- systemd-run --quiet --collect --unit bench-sink perl -e "$sink_pl"
"$bin" vm exec bench-x -- sh -c 'for i in $(seq 100); do ss -ltn | grep -q ":8081 " && ss -ltn | grep -q ":8080 " && exit 0; sleep 0.1; done; exit 1'
ports=$(python3 -c 'import socket
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1], end=" ")')
read -r echo_port sink_port <<<"$ports"
"$bin" vm set bench-x --publish "$echo_port:8080" --publish "$sink_port:8081" >/dev/null
python3 - "$ip" "$echo_port" "$sink_port" "$FWD_MIB" "$FWD_ROUNDS" "$PINGS" <<'PY'
import os, socket, statistics, sys, time
ip, echo_port, sink_port, mib, rounds, pings = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
paths = {"direct": (ip, 8080, 8081), "forwarded": ("127.0.0.1", echo_port, sink_port)}
chunk = os.urandom(1 << 20)
def push(host, port):
    s = socket.create_connection((host, port))
    t = time.perf_counter()
    for _ in range(mib):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    got = s.makefile().readline()
    dt = time.perf_counter() - t
    assert int(got) == mib << 20, got
    return mib / dt
rate = {k: [] for k in paths}
for _ in range(rounds):
    for k, (h, _, sink) in paths.items():
        rate[k].append(push(h, sink))
conns = {}
for k, (h, e, _) in paths.items():
    c = socket.create_connection((h, e)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); conns[k] = c
rtt = {k: [] for k in paths}
for _ in range(pings // 100):
    for k, c in conns.items():
        for _ in range(100):
            t = time.perf_counter(); c.sendall(b"x"); assert c.recv(1) == b"x"; rtt[k].append((time.perf_counter() - t) * 1000)
d, f = statistics.median(rate["direct"]), statistics.median(rate["forwarded"])
print(f"throughput: forwarded {f:.1f} MiB/s, direct {d:.1f} MiB/s: ratio {f / d:.2f} (target >= 0.8); rounds {rate}")
pd, pf = statistics.median(rtt["direct"]), statistics.median(rtt["forwarded"])
print(f"round trip p50: forwarded {pf:.3f} ms, direct {pd:.3f} ms: added {pf - pd:.3f} ms (target <= 0.2)")
PY
fi
