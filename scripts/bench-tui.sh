#!/usr/bin/env bash
# `banger tui` with 100 registered VMs (10 running) on the fake host (`examples/fake_daemon`: the
# daemon's own server and lifecycle, real processes as VMMs, no guests; no root, no bundle):
#  1. keypress → redraw: the TUI's own trace (`--trace-keys`: from the key's read to the end of
#     the frame that shows it) of KEYS arrow keys sent by tmux 30 ms apart; p50/p99
#     (target p99 <= 16 ms)
#  2. idle CPU of the TUI over 30 s with nothing pressed (utime + stime from /proc), in % of one
#     core (target <= 1%)
# A private temporary XDG layout and tmux server; both processes are ended by pid/socket.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-300}
bin=$PWD/target/release/banger
fake=$PWD/target/release/examples/fake_daemon
[ -x "$bin" ] && [ -x "$fake" ] || { echo "build first: make bench-tui builds both" >&2; exit 1; }
tmp=$(mktemp -d /tmp/banger-bench-tui.XXXXXX)
export XDG_RUNTIME_DIR=$tmp/run XDG_STATE_HOME=$tmp/state XDG_CONFIG_HOME=$tmp/config XDG_CACHE_HOME=$tmp/cache
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fake_pid=""
cleanup() {
  tmux -S "$tmp/tmux.sock" kill-server 2>/dev/null || true
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
"$fake" 100 10 > "$tmp/fake.out" 2>&1 &
fake_pid=$!
for _ in $(seq 1 200); do grep -q ready "$tmp/fake.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$tmp/fake.out" || { cat "$tmp/fake.out" >&2; exit 1; }

python3 - "$bin" "$tmp" "$KEYS" <<'PY'
import os, subprocess, sys, time
bin, tmp, keys = sys.argv[1], sys.argv[2], int(sys.argv[3])
sock, trace = f"{tmp}/tmux.sock", f"{tmp}/keys.trace"
tmux = lambda *a: subprocess.run(["tmux", "-S", sock, *a], check=True, capture_output=True, text=True).stdout
env = " ".join(f"{k}={os.environ[k]}" for k in ["XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"])
tmux("-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "48", f"env {env} TERM=xterm-256color {bin} tui --trace-keys {trace}")
deadline = time.time() + 20
while "vm-000" not in tmux("capture-pane", "-p"):
    assert time.time() < deadline, tmux("capture-pane", "-p")
    time.sleep(0.1)
pane = int(tmux("display-message", "-p", "#{pane_pid}").strip())
# The TUI itself: the pane's process, or a descendant if a shell stayed in between.
for _ in range(3):
    if open(f"/proc/{pane}/comm").read().strip() == "banger":
        break
    pane = int(subprocess.check_output(["pgrep", "-P", str(pane)]).split()[0])
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
time.sleep(3)
c0, t0 = cpu(pane), time.time()
time.sleep(30)
idle = (cpu(pane) - c0) / (time.time() - t0) * 100
for i in range(keys):
    tmux("send-keys", "-t", "0", "Down" if (i // 50) % 2 == 0 else "Up")
    time.sleep(0.03)
time.sleep(1)
ms = sorted(float(l) for l in open(trace))
p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"keypress -> redraw, 100 VMs (10 running): {len(ms)} keys, p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, max {ms[-1]:.2f} ms (target p99 <= 16 ms)")
print(f"idle CPU over 30 s: {idle:.2f}% of one core (target <= 1%)")
PY
