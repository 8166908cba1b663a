#!/usr/bin/env bash
# `banger verify --nat` once, as the test suite's last step: a throwaway installation (temporary
# XDG dirs, its own subnet) so it never touches anyone's VMs; its daemon is stopped and its
# directories removed on the way out, whatever happened.
# Env: BANGER_RUNTIME_DIR (the runtime bundle; the Makefile passes it), BANGER (default
# target/debug/banger).
set -euo pipefail
cd "$(dirname "$0")/.."
banger=$(realpath "${BANGER:-target/debug/banger}")
: "${BANGER_RUNTIME_DIR:?set BANGER_RUNTIME_DIR to the runtime bundle (make test passes it)}"
export BANGER_RUNTIME_DIR

tmp=$(mktemp -d "${TMPDIR:-/tmp}/banger-ci-verify.XXXXXX")
cleanup() {
  "$banger" daemon stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

export XDG_CONFIG_HOME=$tmp/config XDG_STATE_HOME=$tmp/state XDG_CACHE_HOME=$tmp/cache XDG_RUNTIME_DIR=$tmp/run
mkdir -p "$XDG_CONFIG_HOME/banger" "$XDG_STATE_HOME" "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
echo 'subnet = "10.213.71.0/24"' >"$XDG_CONFIG_HOME/banger/config.toml"

"$banger" verify --nat
