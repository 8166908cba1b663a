# Sourced by the VM and daemon benchmarks: a private temporary XDG layout with its own subnet, a
# daemon started there, and `bench_cleanup` (deletes the VMs, stops that daemon by pid, removes
# the layout). Needs RUNTIME (a runtime bundle), a release build, and SUBNET.
bin=$PWD/target/release/banger
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
[ -f "$RUNTIME/vmlinux" ] || { echo "no runtime bundle in $RUNTIME (make runtime-build)" >&2; exit 7; }
tmp=$(mktemp -d /tmp/banger-bench.XXXXXX)
export XDG_RUNTIME_DIR=$tmp/run XDG_STATE_HOME=$tmp/state XDG_CONFIG_HOME=$tmp/config XDG_CACHE_HOME=$tmp/cache
export BANGER_RUNTIME_DIR=$RUNTIME
mkdir -p "$XDG_CONFIG_HOME/banger"
printf 'subnet = "%s"\nvmm = "qemu"\n' "$SUBNET" > "$XDG_CONFIG_HOME/banger/config.toml"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
daemon_pid=$("$bin" daemon status --json | json 'd["pid"]')
bench_cleanup() {
  for vm in $("$bin" vm list --json 2>/dev/null | json '" ".join(v["name"] for v in d["vms"])'); do
    "$bin" vm delete --force "$vm" >/dev/null 2>&1 || true
  done
  kill "$daemon_pid" 2>/dev/null || true
  while kill -0 "$daemon_pid" 2>/dev/null; do sleep 0.05; done
  rm -rf "$tmp"
}
