#!/usr/bin/env bash
# Boots a real Linux kernel as a Xen PVH guest under xkvm and exits 0 when
# the guest's /init prints its last line and every data check passed (or,
# with LINUX_GUEST_UNTIL=kernel, when the kernel starts /init).
# docs/linux-guest.md has the results. Needs root (the vif's TAP, ip netns).
#
# What it does, each step skipped when its output is already there:
#   1. fetches Debian's linux-source-6.1 and busybox-static packages
#      (apt-get download, no install);
#   2. builds a small PVH kernel (tinyconfig + Xen PVH, hvc_xen console,
#      xen-blkfront, xen-netfront, IPv4, initramfs, ext2) with `nice make`;
#      a change to the option lists below reconfigures and rebuilds;
#   3. writes an initramfs (static busybox, 1 MiB of test data and an /init
#      that prints what the Xen frontends found, pings the host and moves
#      data over TCP both ways, writes/flushes/reads xvda, uses an ext2
#      file system on xvdb, then powers off), the two disk images (made
#      afresh every run) and an xl.cfg;
#   4. builds xkvm and runs `xkvm create -F -c` under a timeout, logging the
#      console to $W/console.log; meanwhile puts the vif's TAP into a
#      network namespace as the guest's peer (host side in $W/host.log);
#   5. checks on the host what the guest wrote to the disks and what the
#      host's end of the network received.
#
# Environment:
#   LINUX_GUEST_DIR   work directory (default: target/linux-guest)
#   LINUX_GUEST_TIMEOUT  seconds the boot may take (default 1800)
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
TIMEOUT="${LINUX_GUEST_TIMEOUT:-1800}"
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
  deb="$(find "$W/dl" -maxdepth 1 -name "$1_*.deb" | head -n1)"
  if [ -z "$deb" ]; then
    (cd "$W/dl" && apt-get download "$1" >/dev/null 2>&1) || {
      echo "linux-guest: apt-get download $1 failed" >&2
      exit 1
    }
    deb="$(find "$W/dl" -maxdepth 1 -name "$1_*.deb" | head -n1)"
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
    # shellcheck disable=SC2016 # `$0x5f` is assembly, not a shell variable
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
                if ! grep -q 'xkvm: system calls by page fault' "$tmp" ||
                   ! grep -q 'do_syscall_64, xkvm' "$tmp"; then
                  echo "linux-guest: could not patch $f" >&2; exit 1
                fi ;;
      *fpu/core.c) sed -i 's/^\(\t\tasm volatile("1: \)fwait\\n"$/\1nop \/* xkvm: fwait *\/\\n"/' "$tmp"
                   grep -q 'xkvm: fwait' "$tmp" || {
                     echo "linux-guest: could not patch $f" >&2; exit 1; } ;;
    esac
  fi
  cmp -s "$tmp" "$S/$f" || cp "$tmp" "$S/$f"
  rm -f "$tmp"
done
# The options on top of tinyconfig. A change to these lists reconfigures
# (the stamp below), and kbuild then rebuilds only what the change touches.
on=(64BIT HYPERVISOR_GUEST PARAVIRT XEN XEN_PVH ACPI
    PRINTK PRINTK_TIME EARLY_PRINTK BUG TTY HVC_XEN HVC_XEN_FRONTEND
    BLOCK BLK_DEV XEN_BLKDEV_FRONTEND NET INET NETDEVICES XEN_NETDEV_FRONTEND
    BLK_DEV_INITRD BINFMT_ELF BINFMT_SCRIPT DEVTMPFS DEVTMPFS_MOUNT
    PROC_FS SYSFS EXT2_FS FUTEX POSIX_TIMERS SHMEM TMPFS
    NO_HZ_IDLE HZ_100 UNWINDER_GUESS)
# Left out to keep the build and the boot short: SMP, IPv6 and the socket
# diagnostics (IPv4 is enough for ping and TCP over netfront), ext4, ACPI's
# device drivers, and the Xen user-space device nodes.
off=(XEN_PV SMP IPV6 INET_DIAG EXT4_FS RD_GZIP RD_BZIP2 RD_LZMA RD_XZ RD_LZO RD_LZ4 RD_ZSTD
     UNWINDER_ORC UNWINDER_FRAME_POINTER SPECULATION_MITIGATIONS
     PAGE_TABLE_ISOLATION RETPOLINE MODULES HZ_250 HZ_1000 NO_HZ_FULL
     ACPI_AC ACPI_BATTERY ACPI_BUTTON ACPI_FAN ACPI_THERMAL ACPI_PROCESSOR
     ACPI_TABLE_UPGRADE ACPI_SPCR_TABLE ACPI_LPIT ACPI_CPU_FREQ_PSS
     XENFS XEN_GNTDEV XEN_GRANT_DEV_ALLOC XEN_PRIVCMD XEN_DEV_EVTCHN
     XEN_SYS_HYPERVISOR)
stamp_want="$(printf '%s\n' "${on[@]}" -- "${off[@]}" | md5sum | cut -d' ' -f1)"
stamp_have="$(cat "$B/.xkvm-config-stamp" 2>/dev/null || true)"
if [ ! -e "$B/.config" ] || [ "$stamp_want" != "$stamp_have" ]; then
  log "configuring the kernel (tinyconfig + Xen PVH)"
  mkdir -p "$B"
  rm -f "$B/.xkvm-config-stamp"
  make -s -C "$S" O="$B" tinyconfig >/dev/null
  args=()
  for o in "${on[@]}"; do args+=(--enable "$o"); done
  for o in "${off[@]}"; do args+=(--disable "$o"); done
  "$S/scripts/config" --file "$B/.config" "${args[@]}"
  make -s -C "$S" O="$B" olddefconfig >/dev/null
  for o in XEN_PVH PVH HVC_XEN XEN_BLKDEV_FRONTEND XEN_NETDEV_FRONTEND BLK_DEV_INITRD DEVTMPFS INET; do
    grep -q "^CONFIG_$o=y" "$B/.config" || {
      echo "linux-guest: CONFIG_$o did not stick in $B/.config" >&2
      rm -f "$B/.config"
      exit 1
    }
  done
  echo "$stamp_want" >"$B/.xkvm-config-stamp"
fi
log "building the kernel (nice make -j2; the first build takes a while)"
nice make -s -C "$S" O="$B" -j2 vmlinux >"$W/kbuild.log" 2>&1 || {
  tail -n 30 "$W/kbuild.log" >&2
  exit 1
}

# 3. initramfs, disk, cfg.
# The guest is 10.0.42.2 on eth0; the host end of the vif (the TAP, moved
# into a network namespace of its own) is 10.0.42.1. /init reports each
# check on a line "XKVM-LINUX-GUEST: <what> ok|FAIL ..." (section 5 and
# crates/xkvm/tests/linux_guest.rs check them).
cat >"$W/init" <<'EOF'
#!/bin/sh
# Runs as PID 1: reports what the Xen frontends found, exercises blkfront's
# and netfront's data paths, then powers off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() { echo "XKVM-LINUX-GUEST: $*"; }
now() { cut -d' ' -f1 /proc/uptime; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
md5() { md5sum | cut -d' ' -f1; }
# Runs a command again, once, when it died of SIGSEGV: on the development
# machine a fresh busybox process now and then faults in its first strtol()
# call with a register zeroed (docs/linux-guest.md); that is the host's
# CPL0 emulation, not the device under test, so it is noted and retried.
again() {
  "$@"
  rc=$?
  [ $rc = 139 ] || return $rc
  echo "XKVM-LINUX-GUEST: note: $1 died of SIGSEGV, running it again" >/dev/console
  "$@"
}
verdict() { # name, expected, got, start time
  if [ "$2" = "$3" ]; then say "$1 ok ($3, $(took "$4"))"
  else say "$1 FAIL (expected $2, got $3, $(took "$4"))"; fi
}
say "init started, uptime $(cat /proc/uptime)"
say "kernel $(uname -r)"
say "xen devices:"
for d in /sys/bus/xen/devices/*; do
  [ -e "$d" ] || continue
  echo "  $(basename "$d") nodename=$(cat "$d/nodename") state=$(cat "$d/state" 2>/dev/null)"
done
blob_md5=$(md5 </blob)
if [ -e /sys/class/net/eth0 ]; then
  ip link set lo up
  ip addr add 10.0.42.2/24 dev eth0
  ip link set eth0 up
  say "eth0 $(cat /sys/class/net/eth0/address) operstate=$(cat /sys/class/net/eth0/operstate)"
  # The host fetches /blob from here too: httpd sends files with
  # sendfile(), in large TCP segments (netfront's GSO path), where nc
  # writes 1 KiB at a time.
  again httpd -p 80 -h /www
  # The host configures its end once xkvm has made the TAP: wait for it.
  t=$(now)
  i=0
  until ping -c 1 -w 2 10.0.42.1 >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 60 ] || break
  done
  say "net host reachable after $(took "$t")"
  for size in 56 4000; do
    t=$(now)
    got=$(again ping -c 3 -w 120 -s $size 10.0.42.1 2>&1 | grep 'packets received' | cut -d, -f2)
    verdict "net ping host -s $size" " 3 packets received" "$got" "$t"
  done
  # TCP both ways, 1 MiB each, checked by MD5 on both ends. The host's
  # server answers what it received as "<md5> <bytes>".
  t=$(now)
  again timeout 300 nc 10.0.42.1 5001 </blob >/tmp/answer 2>&1
  verdict "net tcp guest->host 1MiB" "$blob_md5 1048576" "$(cat /tmp/answer)" "$t"
  t=$(now)
  again timeout 300 nc 10.0.42.1 5002 </dev/null >/tmp/blob2 2>/tmp/nc.err
  verdict "net tcp host->guest 1MiB" "$(cat /blob2.md5) 1048576" \
    "$(md5 </tmp/blob2) $(($(wc -c </tmp/blob2)))$(cat /tmp/nc.err)" "$t"
  rm -f /tmp/blob2
  # The host pings us (small and fragmented), then tells us how it went.
  t=$(now)
  again timeout 600 nc -l -p 5003 </dev/null >/tmp/answer 2>&1
  verdict "net host ping guest" "host ping ok" "$(head -n 1 /tmp/answer)" "$t"
  verdict "net http guest->host 1MiB" "$blob_md5 1048576" "$(tail -n 1 /tmp/answer)" "$t"
  # The guest's own view, for the record: TCP retransmissions and errors,
  # and eth0's counters (netfront counts frames it dropped).
  say "net guest counters: $(awk '/^Tcp: [0-9]/ { print "tcp in", $11, "out", $12, "retrans", $13, "in-errs", $14 }' /proc/net/snmp);" \
    "$(awk '/eth0:/ { sub(/.*eth0:/, ""); print "eth0 rx", $2, "pkts", $3, "errs", $4, "drop; tx", $10, "pkts", $11, "errs", $12, "drop" }' /proc/net/dev)"
else
  say "no eth0"
fi
if [ -b /dev/xvda ]; then
  say "xvda $(cat /sys/block/xvda/size) sectors, first bytes: $(head -c 32 /dev/xvda)"
  # 1 MiB at 2 MiB, fsync'd (blkfront sends the write, then a flush), the
  # page cache dropped, read back through blkfront.
  t=$(now)
  dd if=/blob of=/dev/xvda bs=4096 seek=512 conv=fsync 2>/dev/null
  blockdev --flushbufs /dev/xvda
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
  verdict "blk xvda write+fsync+read 1MiB" "$blob_md5" \
    "$(dd if=/dev/xvda bs=4096 skip=512 count=256 2>/dev/null | md5)" "$t"
else
  say "no /dev/xvda"
fi
if [ -b /dev/xvdb ]; then
  # An ext2 file system the script made: read a file, write two, unmount
  # (the script checks them with debugfs and e2fsck).
  t=$(now)
  mkdir -p /mnt
  if mount -t ext2 /dev/xvdb /mnt; then
    hello=$(cat /mnt/hello.txt)
    cp /blob /mnt/blob.bin
    echo "written by the guest" >/mnt/from-guest.txt
    umount /mnt
    mount -t ext2 -o ro /dev/xvdb /mnt
    verdict "blk ext2 read hello.txt" "hello from the host" "$hello" "$t"
    verdict "blk ext2 write+remount blob.bin" "$blob_md5" "$(md5 </mnt/blob.bin)" "$t"
    umount /mnt
  else
    say "blk ext2 FAIL (mount)"
  fi
fi
say "init done, uptime $(cat /proc/uptime)"
poweroff -f
EOF
# Test data: /blob (1 MiB) goes to xvda, to the ext2 disk and to the host;
# blob2 comes from the host. Fixed seeds, so reruns compare the same bytes.
python3 -c 'import random, sys; random.seed(sys.argv[2]); open(sys.argv[1], "wb").write(random.randbytes(1 << 20))' "$W/blob" 1
python3 -c 'import random, sys; random.seed(sys.argv[2]); open(sys.argv[1], "wb").write(random.randbytes(1 << 20))' "$W/blob2" 2
md5sum <"$W/blob2" | cut -d' ' -f1 >"$W/blob2.md5"
cat >"$W/initramfs.list" <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /bin 0755 0 0
dir /sbin 0755 0 0
dir /proc 0755 0 0
dir /sys 0755 0 0
file /bin/busybox $W/busybox 0755 0 0
file /init $W/init 0755 0 0
file /blob $W/blob 0644 0 0
file /blob2.md5 $W/blob2.md5 0644 0 0
dir /www 0755 0 0
slink /www/blob /blob 0777 0 0
dir /tmp 0755 0 0
EOF
for a in sh mount umount cat echo head ip uname basename poweroff ls sleep cut awk md5sum dd \
         blockdev mkdir cp grep ping nc timeout wc rm tail httpd; do
  echo "slink /bin/$a busybox 0777 0 0" >>"$W/initramfs.list"
done
[ "$W/gen_init_cpio" -nt "$S/usr/gen_init_cpio.c" ] ||
  gcc -O2 -o "$W/gen_init_cpio" "$S/usr/gen_init_cpio.c"
"$W/gen_init_cpio" "$W/initramfs.list" >"$W/initramfs.cpio"
# Fresh disks every run: /init writes to both.
{ printf 'XKVM-DISK-MARKER-0123456789abcd\n'; head -c $((4 * 1024 * 1024 - 32)) /dev/zero; } >"$W/disk.img"
rm -rf "$W/ext2.d" "$W/ext2.img"
mkdir -p "$W/ext2.d"
echo "hello from the host" >"$W/ext2.d/hello.txt"
mke2fs -q -t ext2 -b 1024 -d "$W/ext2.d" "$W/ext2.img" 8M >/dev/null
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
disk = [ "format=raw,vdev=xvda,access=rw,target=$W/disk.img",
         "format=raw,vdev=xvdb,access=rw,target=$W/ext2.img" ]
vif = [ "mac=00:16:3e:00:00:42,vifname=xkvmlg0" ]
on_poweroff = "destroy"
on_crash = "destroy"
EOF

# 4. Boot.
if [ -z "${XKVM:-}" ]; then
  (cd "$repo" && cargo build --release -q -p xkvm)
  XKVM="${CARGO_TARGET_DIR:-$repo/target}/release/xkvm"
fi
# The host end of the vif: xkvm makes TAP xkvmlg0 when the domain starts;
# it goes into a network namespace of its own as 10.0.42.1, with a server
# there for /init's TCP checks (5001: receives until EOF and answers
# "<md5> <bytes>"; 5002: sends blob2), and the host pings the guest, then
# tells /init how that went on the guest's port 5003.
cat >"$W/netserve.py" <<'EOF'
import hashlib, socket, sys, threading

blob2 = open(sys.argv[1], "rb").read()


def serve(port, handle):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.0.42.1", port))
    s.listen(4)
    while True:
        c, peer = s.accept()
        try:
            handle(c)
        except OSError as e:
            print(f"port {port}: {e}", flush=True)
        c.close()


def receive(c):
    h, n = hashlib.md5(), 0
    while d := c.recv(65536):
        h.update(d)
        n += len(d)
    print(f"received {n} bytes, md5 {h.hexdigest()}", flush=True)
    c.sendall(f"{h.hexdigest()} {n}".encode())
    c.shutdown(socket.SHUT_WR)


def send(c):
    c.sendall(blob2)
    c.shutdown(socket.SHUT_WR)
    while c.recv(65536):
        pass
    print(f"sent {len(blob2)} bytes", flush=True)


def sniff():
    # The largest frame each way on the TAP: over 1514 bytes means a GSO
    # frame crossed netback (the guest's TSO, or the host's into the
    # guest's RX ring). A packet socket sees frames before segmentation.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind(("xkvmlg0", 0))
    big = {"from guest": 0, "to guest": 0}
    while True:
        try:
            d, addr = s.recvfrom(1 << 17)
        except OSError:  # the TAP went away with the domain
            return
        way = "to guest" if addr[2] == socket.PACKET_OUTGOING else "from guest"
        if len(d) > big[way]:
            big[way] = len(d)
            if len(d) > 1514:
                print(f"largest frame {way}: {len(d)} bytes", flush=True)


threading.Thread(target=sniff, daemon=True).start()
threading.Thread(target=serve, args=(5002, send), daemon=True).start()
serve(5001, receive)
EOF
NS="xkvm-lg-$$"
host_side() {
  set +e
  local i=0 msg out http
  until ip link show xkvmlg0 >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 600 ] || { echo "host: TAP xkvmlg0 never appeared"; return; }
    sleep 0.2
  done
  ip netns add "$NS"
  ip link set xkvmlg0 netns "$NS"
  ip -n "$NS" link set lo up
  ip -n "$NS" addr add 10.0.42.1/24 dev xkvmlg0
  ip -n "$NS" link set xkvmlg0 up
  echo "host: TAP xkvmlg0 up as 10.0.42.1 in netns $NS"
  ip netns exec "$NS" python3 "$W/netserve.py" "$W/blob2" &
  echo $! >"$W/netserve.pid"
  # The guest's static busybox is the host's ping too (hosts need not
  # have one).
  until ip netns exec "$NS" "$W/busybox" ping -c 1 -W 5 10.0.42.2 >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  echo "host: guest answers ping after $(($(date +%s) - start))s"
  msg="host ping ok"
  for size in 56 4000; do
    out=$(ip netns exec "$NS" "$W/busybox" ping -c 3 -w 120 -s $size 10.0.42.2 2>&1 |
            grep 'packets transmitted')
    echo "host: ping -s $size guest: $out"
    case "$out" in *" 3 packets received"*) ;; *) msg="host ping FAIL (-s $size: $out)" ;; esac
  done
  # And fetches /blob from the guest's httpd.
  # The guest may answer pings before its httpd listens: retry while
  # the connection is refused.
  http=$(ip netns exec "$NS" python3 -c 'import hashlib, time, urllib.error, urllib.request
for i in range(150):
    try:
        d = urllib.request.urlopen("http://10.0.42.2/blob", timeout=600).read()
        break
    except urllib.error.URLError as e:
        if not isinstance(e.reason, ConnectionRefusedError) or i == 149:
            raise
        time.sleep(2)
print(hashlib.md5(d).hexdigest(), len(d))' 2>&1 | tail -n 1)
  echo "host: http GET guest /blob: $http (done after $(($(date +%s) - start))s)"
  msg="$msg
$http"
  # /init listens once its own checks are done.
  until ip netns exec "$NS" python3 -c 'import socket, sys
c = socket.create_connection(("10.0.42.2", 5003), timeout=5)
c.sendall(sys.argv[1].encode()); c.shutdown(socket.SHUT_WR); c.recv(1)' "$msg" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 2
  done
  echo "host: told the guest: $msg"
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  [ ! -e "$W/netserve.pid" ] || kill "$(cat "$W/netserve.pid")" 2>/dev/null || true
  rm -f "$W/netserve.pid"
  [ -z "${host_pid:-}" ] || kill "$host_pid" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
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
: >"$W/host.log"
host_side > >(stamp >"$W/host.log") 2>&1 &
host_pid=$!
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
if ! grep -q "$MARKER" "$W/console.log"; then
  tail -n 40 "$W/console.log" >&2
  log "no marker in $W/console.log"
  exit 1
fi
grep "XKVM-LINUX-GUEST\|nodename=\|blkfront: xvda\|xen_netfront\|Run /init" "$W/console.log" >&2
log "marker seen: $MARKER"
[ "${LINUX_GUEST_UNTIL:-init}" = init ] || exit 0

# 5. The data /init wrote, checked on the host: the disks after xkvm
# closed them, and what the host's end of the network saw.
cat "$W/host.log" >&2
fail=0
check() { # what, expected, got
  if [ "$2" = "$3" ]; then log "host: $1 ok"; else log "host: $1 FAIL (expected $2, got $3)"; fail=1; fi
}
blob_md5=$(md5sum <"$W/blob" | cut -d' ' -f1)
check "xvda holds the 1 MiB /init wrote" "$blob_md5" \
  "$(dd if="$W/disk.img" bs=4096 skip=512 count=256 2>/dev/null | md5sum | cut -d' ' -f1)"
check "xvda's marker is intact" "XKVM-DISK-MARKER-0123456789abcd" "$(head -c 31 "$W/disk.img")"
check "ext2 image is clean (e2fsck -fn)" 0 "$(e2fsck -fn "$W/ext2.img" >/dev/null 2>&1; echo $?)"
check "ext2 /blob.bin" "$blob_md5" \
  "$(debugfs -R "cat /blob.bin" "$W/ext2.img" 2>/dev/null | md5sum | cut -d' ' -f1)"
check "ext2 /from-guest.txt" "written by the guest" \
  "$(debugfs -R "cat /from-guest.txt" "$W/ext2.img" 2>/dev/null)"
check "host received the guest's 1 MiB" "received 1048576 bytes, md5 $blob_md5" \
  "$(grep -o "received 1048576 bytes, md5 $blob_md5" "$W/host.log" | head -n1)"
check "host sent 1 MiB" "sent 1048576 bytes" "$(grep -o 'sent 1048576 bytes' "$W/host.log" | head -n1)"
if grep "XKVM-LINUX-GUEST: .* FAIL" "$W/console.log" >&2; then
  log "the guest reported failures"
  fail=1
fi
oks=$(grep -c "XKVM-LINUX-GUEST: .* ok (" "$W/console.log" || true)
check "guest checks passed" 9 "$oks"
exit "$fail"
