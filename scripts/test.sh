#!/usr/bin/env bash
# The test command: fetches what the tests need, then runs every test tier
# that this machine supports (guest tests need /dev/kvm; with CI=true a
# missing /dev/kvm is a failure, not a skip).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/host-deps.sh
export XKVM_DEBS="${XKVM_DEBS:-$PWD/target/debian/root}"
scripts/debian-deps.sh >/dev/null
cargo test --workspace --release "$@"
