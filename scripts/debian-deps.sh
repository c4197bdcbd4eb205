#!/usr/bin/env bash
# Downloads the Debian packages our tests run against (Xen's headers and
# clients, xen-shim, GRUB's PVH build) and unpacks them, without installing,
# into $XKVM_DEBS (default: target/debian/root). Idempotent; prints the root.
#
# Nothing here is installed system-wide: tests point at this tree with
# LD_LIBRARY_PATH / XENSTORED_PATH / explicit paths.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
root="${XKVM_DEBS:-$top/target/debian/root}"
debs="$(dirname "$root")/debs"
stamp="$root/.complete-v1"
pkgs=(
  libxen-dev libxenstore4 xenstore-utils xen-utils-4.17 libxenmisc4.17
  libxentoollog1 libxencall1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
  libxendevicemodel1 libxentoolcore1 libxenhypfs1 libyajl2
  grub-xen-host grub-xen-bin grub-common
)
if [ ! -f "$stamp" ]; then
  mkdir -p "$debs" "$root"
  if [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial | head -1)" ]; then
    apt-get update -qq >/dev/null
  fi
  ( cd "$debs" && apt-get download -qq "${pkgs[@]}" >/dev/null )
  for f in "$debs"/*.deb; do dpkg -x "$f" "$root"; done
  touch "$stamp"
fi
echo "$root"
