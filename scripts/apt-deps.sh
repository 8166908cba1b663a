#!/usr/bin/env bash
# Install the given Debian packages if any is missing. Root runs apt-get directly; anyone else
# goes through `sudo -n`, with a clear message when sudo would ask for a password.
set -euo pipefail
missing=()
for pkg in "$@"; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "==> installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "error: these packages are missing and installing them needs root: ${missing[*]}" >&2
  echo "       run: sudo apt-get install -y ${missing[*]}" >&2
  exit 6
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
