#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: system packages, build, the runtime bundle (built
# from Debian packages when ./runtime has none), a VM, and a command run in it over SSH.
# Creating TAP devices needs root: run as root or with passwordless sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
make build guest-init
[ -f runtime/bundle.toml ] || make runtime-build
banger=target/release/banger
name=${VM:-quickstart}
if ! "$banger" vm show "$name" >/dev/null 2>&1; then
  "$banger" vm create --name "$name"
elif ! "$banger" vm show "$name" --json | grep -q '"state":"running"'; then
  "$banger" vm start "$name"
fi
"$banger" vm ssh "$name" -- 'echo "hello from $(hostname): $(uname -sr), $(nproc) vCPU"; docker --version || true'
echo "try: $banger vm ssh $name"
