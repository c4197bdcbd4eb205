#!/usr/bin/env bash
# Installs the host tools the build and tests need when they are missing:
# gcc (builds the test guests), python3 (the corpus check), ip from iproute2
# (network namespaces for the vif tests) and mke2fs from e2fsprogs (ext2
# images for the GRUB disk tests), qemu-img and qemu-io from qemu-utils
# (the qcow2 tests). Idempotent; silent when all are there.
set -euo pipefail
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v python3 >/dev/null || need+=(python3)
command -v ip >/dev/null || need+=(iproute2)
command -v mke2fs >/dev/null || [ -x /usr/sbin/mke2fs ] || need+=(e2fsprogs)
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || need+=(qemu-utils)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing ${need[*]}" >&2
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}" >/dev/null
