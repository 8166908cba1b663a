#!/bin/sh
# Runs inside the chroot of rootfs-docker.ext4 after packages.apt is installed (as root, with
# /proc, /sys and /dev mounted). Edit freely; keep it idempotent. Services must not be started here.
set -eu

# Docker: start on boot, use the overlay2 driver and the iptables (nft) backend of the guest kernel.
mkdir -p /etc/docker
cat > /etc/docker/daemon.json <<'JSON'
{ "storage-driver": "overlay2", "log-driver": "journald" }
JSON
if [ -e /lib/systemd/system/docker.service ]; then
    systemctl enable docker.service containerd.service >/dev/null 2>&1 || true
fi
