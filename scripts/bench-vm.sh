#!/usr/bin/env bash
# Benchmarks of real VMs (needs root for TAPs, QEMU, and a runtime bundle: RUNTIME=dir, default ./runtime).
#  1. host disk allocated by a new VM (overlay + work disk), at creation and after its first boot
#  2. control-plane overhead: `banger vm start` → SSH-ready versus a hand-written QEMU command line
#     booting the same disks with the same kernel arguments, alternated ROUNDS times (default 3)
# Everything runs in a private temporary XDG layout with its own subnet; the daemon and VMs it
# starts are stopped by pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=$(realpath "${RUNTIME:-runtime}")
ROUNDS=${ROUNDS:-3}
SUBNET=10.214.0.0/16
. scripts/bench-lib.sh
hand_pid=""
cleanup() {
  [ -n "$hand_pid" ] && kill -9 "$hand_pid" 2>/dev/null || true
  ip link del bench-hand 2>/dev/null || true
  bench_cleanup
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "== 1. host disk allocated per new VM"
"$bin" vm create --name bench --image base --no-start >/dev/null 2>&1
alloc() { "$bin" vm show bench --json | json 'sum(x["allocated"] for x in d["disks"] if x["role"] != "base") / 1048576'; }
echo "at creation: $(alloc) MiB (overlay + work disk; target <= 16 MiB)"

echo "== 2. control plane overhead: banger vm start vs a hand-written QEMU line, same disks ($ROUNDS rounds)"
show=$("$bin" vm show bench --json)
ip=$(echo "$show" | json 'd["ip"]'); host=$(echo "$show" | json 'd["host_ip"]'); mac=$(echo "$show" | json 'd["mac"]')
dir=$(echo "$show" | json 'd["dir"]')
wait_ssh() { # wait for sshd's banner on $1:22 while QEMU (pid $2) runs, at most 300 s
  local deadline=$((SECONDS + 300))
  until timeout 1 bash -c "exec 3<>/dev/tcp/$1/22 && head -c 4 <&3 | grep -q SSH" 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || { echo "hand-written QEMU exited; see $tmp/hand-console.log" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "hand-written boot: no SSH within 300 s" >&2; exit 1; }
    sleep 0.1
  done
}
# Warm-up boot: the first boot probes KVM (once per host boot) and generates SSH host keys.
"$bin" vm start bench >/dev/null 2>&1
echo "after first boot: $(alloc) MiB"
"$bin" vm stop bench >/dev/null 2>&1
banger_times=(); hand_times=()
for i in $(seq 1 "$ROUNDS"); do
  t0=$(date +%s.%N); "$bin" vm start bench >/dev/null 2>&1; t1=$(date +%s.%N)
  banger_times+=("$(echo "$t1 - $t0" | bc)")
  "$bin" vm stop bench >/dev/null 2>&1
  ip tuntap add dev bench-hand mode tap && ip addr add "$host/30" dev bench-hand && ip link set bench-hand up
  # Like banger's QEMU driver: under TCG the kernel cannot calibrate the TSC against the PIT.
  khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
  t0=$(date +%s.%N)
  qemu-system-x86_64 -M microvm,rtc=on -accel tcg -cpu max -m 1024 -smp 1 -nodefaults -no-user-config \
    -nographic -display none -no-reboot -serial "file:$tmp/hand-console.log" \
    -kernel "$RUNTIME/vmlinux" -initrd "$RUNTIME/initrd.img" \
    -append "console=ttyS0 panic=-1 tsc_early_khz=$khz ip=$ip::$host:255.255.255.252:bench:eth0:off systemd.hostname=bench quiet systemd.show_status=0" \
    -drive "id=base,format=raw,if=none,cache=none,aio=threads,file=$RUNTIME/rootfs.ext4,readonly=on" -device virtio-blk-device,drive=base \
    -drive "id=overlay,format=raw,if=none,cache=none,aio=threads,file=$dir/overlay.img" -device virtio-blk-device,drive=overlay \
    -drive "id=work,format=raw,if=none,cache=none,aio=threads,file=$dir/work.ext4" -device virtio-blk-device,drive=work \
    -netdev tap,id=net0,ifname=bench-hand,script=no,downscript=no -device "virtio-net-device,netdev=net0,mac=$mac" \
    </dev/null >/dev/null 2>&1 &
  hand_pid=$!
  wait_ssh "$ip" "$hand_pid"; t1=$(date +%s.%N)
  hand_times+=("$(echo "$t1 - $t0" | bc)")
  kill -9 "$hand_pid"; wait "$hand_pid" 2>/dev/null || true; hand_pid=""
  ip link del bench-hand
  echo "round $i: banger vm start ${banger_times[-1]} s, hand-written ${hand_times[-1]} s"
done
b=$(printf '%s\n' "${banger_times[@]}" | median); h=$(printf '%s\n' "${hand_times[@]}" | median)
echo "median: banger $b s, hand-written $h s, ratio $(echo "scale=3; $b / $h" | bc) (target <= 1.05)"
"$bin" vm delete bench >/dev/null

