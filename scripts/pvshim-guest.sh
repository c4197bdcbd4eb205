#!/usr/bin/env bash
# Boots a PV kernel through Xen's own PV shim under xkvm and exits 0 when
# the PV kernel's console output appears (docs/pvshim.md). On hosts whose
# KVM has no VMX/SVM the PV kernel stops at its first hypercall (a host
# limitation, docs/pvshim.md); there PVSHIM_STAGE=shim is the stage that
# passes. On failure it says how far the boot got.
#
# What it does:
#   1. fetches Debian's xen-utils-4.17 (xen-shim) and grub-xen-bin
#      (grub-x86_64-xen.bin, GRUB built as a 64-bit Xen PV kernel) with
#      scripts/debian-deps.sh (apt-get download + dpkg -x, no install);
#   2. writes an xl.cfg the way libxl boots a shim (type = "pvh",
#      pvshim = 1: the shim is the PVH kernel, the PV kernel is module 0);
#   3. builds xkvm and runs `xkvm create -F -c` under a timeout, logging the
#      console to $W/console.log, and looks for the marker.
#
# Environment:
#   PVSHIM_GUEST_DIR      work directory (default: target/pvshim-guest)
#   PVSHIM_GUEST_TIMEOUT  seconds the boot may take (default 900)
#   PVSHIM_GUEST_MEMORY   guest MiB (default 128)
#   PVSHIM_HYPERCALL      "port" (default) or "native"; see below
#   PVSHIM_STAGE          how far the boot must get for exit status 0:
#                         "kernel" (default): the PV kernel's own console
#                         output (GRUB's banner); "shim": the shim booted,
#                         built the PV domain from module 0 and entered it
#                         (its "Freed ... init memory" line, the last one
#                         before the PV kernel runs)
#   XKVM                  an xkvm binary to use instead of building one
#
# Why the shim is patched: Xen 4.17 as a guest never uses the hypercall
# page; every hypercall it makes is a `vmcall` or `vmmcall` (alternatives in
# xen/arch/x86/include/asm/guest/xen-hcall.h and `early_hypercall`). On
# hosts whose KVM has no hardware virtualization (DESIGN.md) those never
# complete, so with PVSHIM_HYPERCALL=port (the default) each of them
# (3 bytes: 0f 01 c1 / 0f 01 d9) becomes `outl %eax, $0x5f; nop`
# (e7 5f 90): exactly what a stub of xkvm's hypercall page does (the number
# is in EAX, the arguments stay in their registers). The script checks that
# it found them only as the vmmcall/vmcall pairs Xen's code has. On a host
# with KVM_CAP_XEN_HVM use "native" (the unpatched shim). Nothing else is
# changed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
W="${PVSHIM_GUEST_DIR:-$repo/target/pvshim-guest}"
TIMEOUT="${PVSHIM_GUEST_TIMEOUT:-900}"
MEMORY="${PVSHIM_GUEST_MEMORY:-128}"
HYPERCALL="${PVSHIM_HYPERCALL:-port}"
case "${PVSHIM_STAGE:-kernel}" in
  kernel) MARKER="GNU GRUB" ;;
  shim) MARKER="init memory" ;;
  *) echo "pvshim-guest: PVSHIM_STAGE must be kernel or shim" >&2; exit 2 ;;
esac
mkdir -p "$W"
W="$(cd "$W" && pwd)"
log() { echo "pvshim-guest: $(date -u +%H:%M:%S) $*" >&2; }

# 1. Packages.
debs="$("$repo/scripts/debian-deps.sh")"
shim="$debs/usr/lib/xen-4.17/boot/xen-shim"
pvkernel="$debs/usr/lib/grub-xen/grub-x86_64-xen.bin"
for f in "$shim" "$pvkernel"; do
  [ -e "$f" ] || { echo "pvshim-guest: $f is missing after debian-deps.sh" >&2; exit 1; }
done
if [ "$HYPERCALL" = port ]; then
  python3 - "$shim" "$W/xen-shim.port" <<'EOF'
import sys
src, dst = sys.argv[1], sys.argv[2]
d = open(src, "rb").read()
vmcall, vmmcall, out = b"\x0f\x01\xc1", b"\x0f\x01\xd9", b"\xe7\x5f\x90"
# Xen's code has them as `vmmcall; ret; vmcall` (early_hypercall) and as
# vmmcall/vmcall replacement pairs (.altinstr_replacement); anything else
# would mean a different binary than the one this was written for.
pairs = d.count(vmmcall + vmcall) + d.count(vmmcall + b"\xc3" + vmcall)
if d.count(vmcall) != pairs or d.count(vmmcall) != pairs or pairs < 2:
    sys.exit(f"pvshim-guest: unexpected vmcall/vmmcall layout in {src}")
open(dst, "wb").write(d.replace(vmcall, out).replace(vmmcall, out))
print(f"pvshim-guest: patched {pairs} vmcall/vmmcall pairs", file=sys.stderr)
EOF
  shim="$W/xen-shim.port"
fi

# 2. The config: libxl's shim mapping (see crates/xkvm/src/domain.rs).
# The shim's own `cpuid=` / `xsave=` options keep Xen off instructions this
# host's CPL0 emulator gets wrong or cannot run (DESIGN.md): without
# no-bmi1 Xen patches its bit scans to TZCNT, which the emulator runs as BSF
# (different result for 0), and the page allocator loops for ever in
# get_free_buddy(). Harmless elsewhere: Xen then uses the older forms.
SHIM_EXTRA="loglvl=all guest_loglvl=all xsave=0"
SHIM_EXTRA="$SHIM_EXTRA cpuid=no-bmi1,no-bmi2,no-rdtscp,no-smap,no-fsgsbase,no-popcnt"
SHIM_EXTRA="$SHIM_EXTRA,no-rdrand,no-rdseed,no-cx16,no-invpcid,no-pcid"
cat >"$W/guest.cfg" <<EOF
name = "pvshim-guest"
type = "pvh"
pvshim = 1
pvshim_path = "$shim"
pvshim_extra = "$SHIM_EXTRA"
kernel = "$pvkernel"
memory = $MEMORY
vcpus = 1
on_poweroff = "destroy"
on_crash = "destroy"
EOF

# 3. Boot.
if [ -z "${XKVM:-}" ]; then
  (cd "$repo" && cargo build --release -q -p xkvm)
  XKVM="${CARGO_TARGET_DIR:-$repo/target}/release/xkvm"
fi
log "booting (timeout ${TIMEOUT}s, console log $W/console.log)"
start=$(date +%s)
# Polled rather than piped: GRUB waits at its prompt for ever, so the run is
# ended as soon as the marker is there.
XKVM_RUN_DIR="$W/run" timeout "$TIMEOUT" "$XKVM" create -F -c "$W/guest.cfg" \
  </dev/null >"$W/console.log" 2>"$W/xkvm.log" &
pid=$!
seen=""
while kill -0 "$pid" 2>/dev/null; do
  if grep -q "$MARKER" "$W/console.log"; then
    seen=$(($(date +%s) - start))
    break
  fi
  sleep 1
done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
log "xkvm ended after $(($(date +%s) - start))s${seen:+ (marker after ${seen}s)}"
if grep -q "$MARKER" "$W/console.log"; then
  grep -m1 "$MARKER" "$W/console.log" >&2
  log "marker seen"
  exit 0
fi
tail -n 40 "$W/console.log" >&2
# Say how far it got (docs/pvshim.md explains the stops seen so far).
stage="nothing from the shim"
grep -q "Xen version" "$W/console.log" && stage="the shim's first console lines"
grep -q "Building a PV Dom" "$W/console.log" && stage="the shim building the PV domain"
grep -q "init memory" "$W/console.log" && stage="the shim entering the PV kernel"
log "no marker \"$MARKER\" in $W/console.log; got as far as $stage"
exit 1
