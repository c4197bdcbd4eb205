#!/usr/bin/env bash
# Boots the bundled demo guest (guests/c/demo.c: a tiny Xen PVH kernel that
# greets on the Xen console and powers off) under xkvm, on a fresh machine:
# installs gcc if it is missing (the guests are built with it), builds xkvm
# and the guests in release mode, copies the guest images to target/guests/
# (the stable path guests/demo.cfg names) and runs the domain in the
# foreground. Needs /dev/kvm.
set -euo pipefail
cd "$(dirname "$0")/.."   # demo.cfg's kernel path is relative to the repo root

if ! command -v gcc >/dev/null; then
  echo "demo.sh: gcc is missing; installing it to build the guest kernels" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq gcc >/dev/null
fi

cargo build --release -p xkvm -p xkvm-guests
bin="${CARGO_TARGET_DIR:-target}/release"
"$bin/xkvm-guests" install target/guests
exec "$bin/xkvm" create -F -c guests/demo.cfg
