#!/usr/bin/env bash
# Boots a real Linux kernel as a Xen PVH guest under xkvm and exits 0 when
# the guest's /init prints its last line (or, with LINUX_GUEST_UNTIL=kernel,
# when the kernel starts /init). docs/linux-guest.md has the results.
#
# What it does, each step skipped when its output is already there:
#   1. fetches Debian's linux-source-6.1 and busybox-static packages
#      (apt-get download, no install);
#   2. builds a small PVH kernel (tinyconfig + Xen PVH, hvc_xen console,
#      xen-blkfront, xen-netfront, initramfs, ext2) with `nice make`;
#   3. writes an initramfs (static busybox and an /init that prints what the
#      Xen frontends found, reads xvda, brings eth0 up and powers off), a raw
#      disk image and an xl.cfg;
#   4. builds xkvm and runs `xkvm create -F -c` under a timeout, logging the
#      console to $W/console.log.
#
# Environment:
#   LINUX_GUEST_DIR   work directory (default: target/linux-guest)
#   LINUX_GUEST_TIMEOUT  seconds the boot may take (default 900)
#   LINUX_GUEST_MEMORY   guest MiB (default 256)
#   LINUX_GUEST_HYPERCALL  "port" (default) or "native"; see below
#   LINUX_GUEST_UNTIL    "init" (default: /init's last line) or "kernel"
#                        (the kernel starting /init)
#   LINUX_GUEST_EXTRA    more kernel command-line options
#   XKVM              an xkvm binary to use instead of building one
#
# Why the kernel is patched: Linux 6.1.119+ (XSA-466) no longer uses the
# hypercall page; it issues `vmcall`/`vmmcall` itself. On hosts whose KVM has
# no hardware virtualization (docs/linux-guest.md) those never complete, so
# with LINUX_GUEST_HYPERCALL=port (the default) the two instructions in
# arch/x86/xen/xen-head.S become `outl %eax, $0x5f`: exactly what a stub of
# xkvm's hypercall page does (the number is in EAX, arguments stay in their
# registers). On a host with KVM_CAP_XEN_HVM use "native". The int3 self-test
# of the alternatives code is skipped for the same reason (`int3` at CPL0 is
# not emulated there). And that KVM runs guest user code natively but does
# not switch to CPL0 on `syscall` (RIP goes to LSTAR, CPL stays 3, the fetch
# faults), so the page-fault handler runs such a fault as the system call;
# and the `fwait` in fpu__drop() (x87 at CPL0, not emulated) becomes a nop.
# "native" drops all four. Nothing else in the kernel is changed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
W="${LINUX_GUEST_DIR:-$repo/target/linux-guest}"
TIMEOUT="${LINUX_GUEST_TIMEOUT:-900}"
MEMORY="${LINUX_GUEST_MEMORY:-256}"
HYPERCALL="${LINUX_GUEST_HYPERCALL:-port}"
# The line that means success. The default is the last line /init prints;
# LINUX_GUEST_UNTIL=kernel stops at the kernel starting /init (a kernel-only
# check, e.g. with LINUX_GUEST_HYPERCALL=native on a host that cannot run
# the guest's user space; see docs/linux-guest.md).
case "${LINUX_GUEST_UNTIL:-init}" in
  init) MARKER="XKVM-LINUX-GUEST: init done" ;;
  kernel) MARKER="Run /init as init process" ;;
  *) echo "linux-guest: LINUX_GUEST_UNTIL must be init or kernel" >&2; exit 2 ;;
esac
mkdir -p "$W/dl"
W="$(cd "$W" && pwd)"
log() { echo "linux-guest: $(date -u +%H:%M:%S) $*" >&2; }

# 1. Packages.
need=()
for t in flex bison bc make gcc; do command -v "$t" >/dev/null || need+=("$t"); done
[ -e /usr/include/libelf.h ] || need+=(libelf-dev)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  log "installing build tools: ${need[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
fetch() { # package -> prints the .deb path
  local deb
  deb="$(ls "$W/dl/$1"_*.deb 2>/dev/null | head -n1 || true)"
  if [ -z "$deb" ]; then
    (cd "$W/dl" && apt-get download "$1" >/dev/null 2>&1) || {
      echo "linux-guest: apt-get download $1 failed" >&2
      exit 1
    }
    deb="$(ls "$W/dl/$1"_*.deb | head -n1)"
  fi
  echo "$deb"
}
if [ ! -e "$W/src/Makefile" ]; then
  deb="$(fetch linux-source-6.1)"
  log "unpacking $(basename "$deb")"
  rm -rf "$W/dl/linux-source" "$W/src.tmp"
  dpkg -x "$deb" "$W/dl/linux-source"
  mkdir -p "$W/src.tmp"
  tar -xJf "$W"/dl/linux-source/usr/src/linux-source-6.1.tar.xz -C "$W/src.tmp" --strip-components=1
  rm -rf "$W/dl/linux-source"
  mv "$W/src.tmp" "$W/src"
fi
if [ ! -x "$W/busybox" ]; then
  deb="$(fetch busybox-static)"
  rm -rf "$W/dl/bb"
  dpkg -x "$deb" "$W/dl/bb"
  cp "$W/dl/bb/bin/busybox" "$W/busybox"
  rm -rf "$W/dl/bb"
fi

# 2. Kernel. The patches are re-applied from pristine copies so switching
# LINUX_GUEST_HYPERCALL rebuilds only what changed.
S="$W/src"
B="$W/build"
# The system-call workaround for arch/x86/mm/fault.c (see the header).
cat >"$W/syscall-by-fault.c" <<'EOF'
	/*
	 * xkvm (scripts/linux-guest.sh): this host's KVM runs guest user code
	 * natively but does not switch to CPL0 on `syscall`: the vCPU stays at
	 * CPL3 with RIP at LSTAR and takes this fault. Run the system call
	 * here, as entry_SYSCALL_64 would, and return through the iret of
	 * the exception.
	 */
	if (user_mode(regs) && regs->ip == (unsigned long)entry_SYSCALL_64 &&
	    address == regs->ip && (hw_error_code & X86_PF_INSTR)) {
		static bool told;
		int nr = regs->ax;

		if (!told) {
			told = true;
			pr_info("xkvm: system calls by page fault (cx %lx r11 %lx flags %lx cs %lx)\n",
				regs->cx, regs->r11, regs->flags, regs->cs);
		}
		regs->ip = regs->cx;
		regs->flags |= X86_EFLAGS_IF;
		regs->orig_ax = nr;
		regs->ax = -ENOSYS;
		do_syscall_64(regs, nr);
		return;
	}
EOF
for f in arch/x86/xen/xen-head.S arch/x86/kernel/alternative.c arch/x86/mm/fault.c \
         arch/x86/kernel/fpu/core.c; do
  [ -e "$S/$f.orig" ] || cp "$S/$f" "$S/$f.orig"
  tmp="$W/patch.tmp"
  cp "$S/$f.orig" "$tmp"
  if [ "$HYPERCALL" = port ]; then
    case "$f" in
      *xen-head.S) sed -i -e 's/^\tvmmcall$/\toutl %eax, $0x5f \/* xkvm: hypercall port *\//' \
                          -e 's/^\tvmcall$/\toutl %eax, $0x5f \/* xkvm: hypercall port *\//' "$tmp"
                   [ "$(grep -c 'xkvm: hypercall port' "$tmp")" = 2 ] || {
                     echo "linux-guest: could not patch $f (no vmcall/vmmcall lines)" >&2; exit 1; } ;;
      *alternative.c) sed -i 's/^\tint3_selftest();$/\t\/* xkvm: int3_selftest() skipped *\//' "$tmp"
                      grep -q 'xkvm: int3_selftest' "$tmp" || {
                        echo "linux-guest: could not patch $f" >&2; exit 1; } ;;
      *fault.c) awk -v snip="$W/syscall-by-fault.c" '
                  /^do_kern_addr_fault\(/ { f = 1 }
                  { print }
                  f && $0 == "{" { while ((getline l < snip) > 0) print l; f = 0 }
                ' "$S/$f.orig" >"$tmp"
                sed -i 's|^#include <asm/trace/exceptions.h>$|#include <asm/trace/exceptions.h>\n#include <asm/proto.h>\t\t\t/* entry_SYSCALL_64, xkvm */\n#include <asm/syscall.h>\t\t/* do_syscall_64, xkvm */|' "$tmp"
                grep -q 'xkvm: system calls by page fault' "$tmp" &&
                  grep -q 'do_syscall_64, xkvm' "$tmp" || {
                  echo "linux-guest: could not patch $f" >&2; exit 1; } ;;
      *fpu/core.c) sed -i 's/^\(\t\tasm volatile("1: \)fwait\\n"$/\1nop \/* xkvm: fwait *\/\\n"/' "$tmp"
                   grep -q 'xkvm: fwait' "$tmp" || {
                     echo "linux-guest: could not patch $f" >&2; exit 1; } ;;
    esac
  fi
  cmp -s "$tmp" "$S/$f" || cp "$tmp" "$S/$f"
  rm -f "$tmp"
done
if [ ! -e "$B/.config" ]; then
  log "configuring the kernel (tinyconfig + Xen PVH)"
  mkdir -p "$B"
  make -s -C "$S" O="$B" tinyconfig >/dev/null
  on=(64BIT HYPERVISOR_GUEST PARAVIRT XEN XEN_PVH ACPI
      PRINTK PRINTK_TIME EARLY_PRINTK BUG TTY HVC_XEN HVC_XEN_FRONTEND
      BLOCK BLK_DEV XEN_BLKDEV_FRONTEND NET NETDEVICES XEN_NETDEV_FRONTEND
      BLK_DEV_INITRD BINFMT_ELF BINFMT_SCRIPT DEVTMPFS DEVTMPFS_MOUNT
      PROC_FS SYSFS EXT2_FS FUTEX POSIX_TIMERS SHMEM TMPFS
      NO_HZ_IDLE HZ_100 UNWINDER_GUESS)
  # Left out to keep the build and the boot short: SMP, INET (eth0 is only
  # brought up, not addressed), ext4, ACPI's device drivers, and the Xen
  # user-space device nodes.
  off=(XEN_PV SMP INET EXT4_FS RD_GZIP RD_BZIP2 RD_LZMA RD_XZ RD_LZO RD_LZ4 RD_ZSTD
       UNWINDER_ORC UNWINDER_FRAME_POINTER SPECULATION_MITIGATIONS
       PAGE_TABLE_ISOLATION RETPOLINE MODULES HZ_250 HZ_1000 NO_HZ_FULL
       ACPI_AC ACPI_BATTERY ACPI_BUTTON ACPI_FAN ACPI_THERMAL ACPI_PROCESSOR
       ACPI_TABLE_UPGRADE ACPI_SPCR_TABLE ACPI_LPIT ACPI_CPU_FREQ_PSS
       XENFS XEN_GNTDEV XEN_GRANT_DEV_ALLOC XEN_PRIVCMD XEN_DEV_EVTCHN
       XEN_SYS_HYPERVISOR)
  args=()
  for o in "${on[@]}"; do args+=(--enable "$o"); done
  for o in "${off[@]}"; do args+=(--disable "$o"); done
  "$S/scripts/config" --file "$B/.config" "${args[@]}"
  make -s -C "$S" O="$B" olddefconfig >/dev/null
  for o in XEN_PVH PVH HVC_XEN XEN_BLKDEV_FRONTEND XEN_NETDEV_FRONTEND BLK_DEV_INITRD DEVTMPFS; do
    grep -q "^CONFIG_$o=y" "$B/.config" || {
      echo "linux-guest: CONFIG_$o did not stick in $B/.config" >&2
      rm -f "$B/.config"
      exit 1
    }
  done
fi
log "building the kernel (nice make -j2; the first build takes a while)"
nice make -s -C "$S" O="$B" -j2 vmlinux >"$W/kbuild.log" 2>&1 || {
  tail -n 30 "$W/kbuild.log" >&2
  exit 1
}

# 3. initramfs, disk, cfg.
cat >"$W/init" <<'EOF'
#!/bin/sh
# Runs as PID 1: reports what the Xen frontends found, then powers off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "XKVM-LINUX-GUEST: init started, uptime $(cat /proc/uptime)"
echo "XKVM-LINUX-GUEST: kernel $(uname -r)"
echo "XKVM-LINUX-GUEST: xen devices:"
for d in /sys/bus/xen/devices/*; do
  [ -e "$d" ] || continue
  echo "  $(basename "$d") nodename=$(cat "$d/nodename") state=$(cat "$d/state" 2>/dev/null)"
done
if [ -b /dev/xvda ]; then
  echo "XKVM-LINUX-GUEST: xvda $(cat /sys/block/xvda/size) sectors, first bytes: $(head -c 32 /dev/xvda)"
else
  echo "XKVM-LINUX-GUEST: no /dev/xvda"
fi
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  echo "XKVM-LINUX-GUEST: eth0 $(cat /sys/class/net/eth0/address) operstate=$(cat /sys/class/net/eth0/operstate)"
else
  echo "XKVM-LINUX-GUEST: no eth0"
fi
echo "XKVM-LINUX-GUEST: init done, uptime $(cat /proc/uptime)"
poweroff -f
EOF
cat >"$W/initramfs.list" <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /bin 0755 0 0
dir /sbin 0755 0 0
dir /proc 0755 0 0
dir /sys 0755 0 0
file /bin/busybox $W/busybox 0755 0 0
file /init $W/init 0755 0 0
EOF
for a in sh mount cat echo head ip uname basename poweroff ls sleep; do
  echo "slink /bin/$a busybox 0777 0 0" >>"$W/initramfs.list"
done
[ "$W/gen_init_cpio" -nt "$S/usr/gen_init_cpio.c" ] ||
  gcc -O2 -o "$W/gen_init_cpio" "$S/usr/gen_init_cpio.c"
"$W/gen_init_cpio" "$W/initramfs.list" >"$W/initramfs.cpio"
if [ ! -e "$W/disk.img" ]; then
  { printf 'XKVM-DISK-MARKER-0123456789abcd\n'; head -c $((4 * 1024 * 1024 - 32)) /dev/zero; } >"$W/disk.img"
fi
# No earlyprintk=xen: hvc0 replays the whole log buffer when it registers,
# while the boot console's lines would go to HYPERVISOR_console_io (the
# domain's `xl dmesg` log), as under Xen. LINUX_GUEST_EXTRA adds options.
cmdline="console=hvc0 loglevel=7 noxsave nopcid noinvpcid nofsgsbase"
# rdtscp cx16 popcnt rdrand fsgsbase rdseed smap rdpid: instructions this
# host's CPL0 emulator cannot run (DESIGN.md); harmless elsewhere.
cmdline="$cmdline clearcpuid=59,141,151,158,288,306,308,534 ${LINUX_GUEST_EXTRA:-}"
cat >"$W/guest.cfg" <<EOF
name = "linux-guest"
type = "pvh"
kernel = "$B/vmlinux"
ramdisk = "$W/initramfs.cpio"
extra = "$cmdline"
memory = $MEMORY
vcpus = 1
disk = [ "format=raw,vdev=xvda,access=rw,target=$W/disk.img" ]
vif = [ "mac=00:16:3e:00:00:42,vifname=xkvmlg0" ]
on_poweroff = "destroy"
on_crash = "destroy"
EOF

# 4. Boot.
if [ -z "${XKVM:-}" ]; then
  (cd "$repo" && cargo build --release -q -p xkvm)
  XKVM="${CARGO_TARGET_DIR:-$repo/target}/release/xkvm"
fi
log "booting (timeout ${TIMEOUT}s, console log $W/console.log)"
start=$(date +%s)
stamp() { # prefixes each console line with the seconds since the start
  while IFS= read -r line; do
    printf '[%4ds] %s\n' $(($(date +%s) - start)) "$line"
  done
}
: >"$W/console.log"
XKVM_RUN_DIR="$W/run" "$XKVM" create -F -c "$W/guest.cfg" </dev/null \
  > >(stamp >"$W/console.log") 2>&1 &
pid=$!
seen=""
while kill -0 "$pid" 2>/dev/null; do
  now=$(date +%s)
  if [ -z "$seen" ] && grep -q "$MARKER" "$W/console.log"; then
    seen=$now
  fi
  # /init ends with `poweroff -f`. This kernel has no ACPI S5 (its ACPI
  # namespace needs CONFIG_PCI), so Linux halts instead of powering off and
  # the domain never stops: end it 15s after the marker.
  if [ -n "$seen" ] && [ "$now" -ge $((seen + 15)) ]; then
    log "marker seen; the guest did not stop within 15s (it halts): xkvm destroy"
    XKVM_RUN_DIR="$W/run" "$XKVM" destroy linux-guest >&2 || true
    for _ in 1 2 3 4 5; do kill -0 "$pid" 2>/dev/null && sleep 1; done
    kill "$pid" 2>/dev/null || true
    break
  fi
  if [ "$now" -ge $((start + TIMEOUT)) ]; then
    log "timeout after ${TIMEOUT}s; ending xkvm"
    kill "$pid"
    break
  fi
  sleep 2
done
set +e
wait "$pid"
rc=$?
set -e
sleep 1 # the stamping reader drains the last lines
log "xkvm exited with $rc after $(($(date +%s) - start))s"
if grep -q "$MARKER" "$W/console.log"; then
  grep "XKVM-LINUX-GUEST\|nodename=\|blkfront: xvda\|xen_netfront\|Run /init" "$W/console.log" >&2
  log "marker seen: $MARKER"
  exit 0
fi
tail -n 40 "$W/console.log" >&2
log "no marker in $W/console.log"
exit 1
