#!/usr/bin/env bash
# Benchmark: boot-to-SSH of banger's base image versus a naive Debian image (mmdebstrap minbase +
# systemd + openssh-server + Debian's own kernel and initramfs, root=/dev/vda), same QEMU line
# (microvm, one vCPU, TCG unless KVM works), alternated ROUNDS times (default 3). Boot-to-SSH is
# wall clock from QEMU's start until `ssh root@GUEST true` succeeds (polled every 0.3 s).
# Needs root (mmdebstrap, TAP) and a runtime bundle (RUNTIME=dir, default ./runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNTIME=$(realpath "${RUNTIME:-runtime}")
ROUNDS=${ROUNDS:-3}
[ -f "$RUNTIME/rootfs.ext4" ] || { echo "no runtime bundle in $RUNTIME (make runtime-build)" >&2; exit 7; }
tmp=$(mktemp -d /var/tmp/banger-bench-boot.XXXXXX)
tap=bench-boot host=10.215.0.1 guest=10.215.0.2
qpid=""
cleanup() {
  [ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null || true
  ip link del "$tap" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mirror=$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1)
echo "== building the naive image (mmdebstrap from ${mirror:-the default mirror})"
mmdebstrap --mode=root --variant=minbase \
  --include=systemd,systemd-sysv,udev,dbus,openssh-server,iproute2,linux-image-cloud-amd64,initramfs-tools \
  bookworm "$tmp/naive" ${mirror:+"$mirror"} >"$tmp/mmdebstrap.log" 2>&1
install -d -m 0700 "$tmp/naive/root/.ssh"
install -m 0600 "$RUNTIME/id_ed25519.pub" "$tmp/naive/root/.ssh/authorized_keys"
# Network from the kernel's ip= argument, as in banger's image: the generator writes networkd config.
ln -sf /lib/systemd/system/systemd-networkd.service "$tmp/naive/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
mkdir -p "$tmp/naive/etc/systemd/system/sysinit.target.wants"
ln -sf /lib/systemd/system/systemd-network-generator.service "$tmp/naive/etc/systemd/system/sysinit.target.wants/systemd-network-generator.service"
cp "$tmp"/naive/boot/vmlinuz-* "$tmp/naive-vmlinuz"; cp "$tmp"/naive/boot/initrd.img-* "$tmp/naive-initrd"
truncate -s 4G "$tmp/naive.ext4"; mkfs.ext4 -q -F -d "$tmp/naive" "$tmp/naive.ext4"
rm -rf "$tmp/naive"

khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
ip tuntap add dev "$tap" mode tap && ip addr add "$host/30" dev "$tap" && ip link set "$tap" up
# boot KERNEL INITRD "EXTRA ARGS" DRIVE... → prints seconds to SSH
boot() {
  local kernel=$1 initrd=$2 extra=$3; shift 3
  local drives=() i=0
  for d in "$@"; do
    local p=${d%:ro} ro=""; [ "$p" != "$d" ] && ro=",readonly=on"
    drives+=(-drive "id=d$i,file=$p,format=raw,if=none,cache=none,aio=threads$ro" -device "virtio-blk-device,drive=d$i"); i=$((i+1))
  done
  rm -f "$tmp/known_hosts"
  local t0; t0=$(date +%s.%N)
  qemu-system-x86_64 -M microvm,rtc=on -accel tcg -cpu max -m 1024 -smp 1 -nodefaults -no-user-config -nographic \
    -display none -no-reboot -serial "file:$tmp/console.log" -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 net.ifnames=0 panic=-1 tsc_early_khz=$khz ip=$guest::$host:255.255.255.252:bench:eth0:off $extra" \
    "${drives[@]}" -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device virtio-net-device,netdev=n0 \
    </dev/null >/dev/null 2>&1 &
  qpid=$!
  local deadline=$((SECONDS + 300))
  until ssh -i "$RUNTIME/id_ed25519" -o BatchMode=yes -o ConnectTimeout=2 -o StrictHostKeyChecking=accept-new \
      -o UserKnownHostsFile="$tmp/known_hosts" "root@$guest" true 2>/dev/null; do
    kill -0 "$qpid" 2>/dev/null || { echo "QEMU exited; see $tmp/console.log" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "no SSH within 300 s; console: $(tail -3 "$tmp/console.log")" >&2; exit 1; }
    sleep 0.3
  done
  echo "$(date +%s.%N) - $t0" | bc
  kill -9 "$qpid"; wait "$qpid" 2>/dev/null || true; qpid=""
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
naive=(); ours=()
for i in $(seq 1 "$ROUNDS"); do
  cp --sparse=always "$tmp/naive.ext4" "$tmp/naive-run.ext4"
  naive+=("$(boot "$tmp/naive-vmlinuz" "$tmp/naive-initrd" "root=/dev/vda rw" "$tmp/naive-run.ext4")")
  rm -f "$tmp/overlay" "$tmp/work.ext4"; truncate -s 5G "$tmp/overlay"; truncate -s 2G "$tmp/work.ext4"; mkfs.ext4 -q -F "$tmp/work.ext4"
  ours+=("$(boot "$RUNTIME/vmlinux" "$RUNTIME/initrd.img" "quiet systemd.show_status=0" "$RUNTIME/rootfs.ext4:ro" "$tmp/overlay" "$tmp/work.ext4")")
  echo "round $i: naive ${naive[-1]} s, banger ${ours[-1]} s (first boot of a fresh VM)"
done
n=$(printf '%s\n' "${naive[@]}" | median); o=$(printf '%s\n' "${ours[@]}" | median)
echo "median boot-to-SSH: naive $n s, banger $o s, ratio $(echo "scale=3; $o / $n" | bc) (target <= 0.4)"
