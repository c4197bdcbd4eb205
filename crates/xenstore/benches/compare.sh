#!/usr/bin/env bash
# compare.sh [DURATION] [ROUNDS]
#
# Benchmark (not a test): Xen 4.17's C xenstored (../shared/tools/ref-xenstored)
# and `xkvm xenstored`, side by side in one run, with the same load generator
# (xsbench.py): READ, WRITE, DIRECTORY (100 children) and a read-modify-write
# transaction, 1 and 8 clients, alternating daemons per workload so that
# background load hits both alike. Then memory per 100k nodes. Prints
# markdown for docs/xenstore.md. Each cell is the median of ROUNDS runs (the
# machine is shared and 2-core, so single runs vary by +-20%). PIN=CPU pins
# both daemons to that CPU (default: no pinning).
#
# Needs a release build: cargo build --release -p xkvm (XKVM=path overrides;
# DAEMON="cmd args" replaces "$XKVM xenstored", e.g. the xenstore crate's
# examples/xenstored, which takes the same --socket PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
REFXS=${REFXS:-$(cd "$top/../shared/tools/ref-xenstored" 2>/dev/null && pwd || true)}
[ -x "$REFXS/start" ] || { echo "ref-xenstored not found (set REFXS)" >&2; exit 2; }
XKVM=${XKVM:-${CARGO_TARGET_DIR:-$top/target}/release/xkvm}
DUR=${1:-5}
ROUNDS=${2:-3}
PIN=${PIN:-}
if [ -z "${DAEMON:-}" ]; then
  [ -x "$XKVM" ] || { echo "no $XKVM: cargo build --release -p xkvm" >&2; exit 2; }
  DAEMON="$XKVM xenstored"
fi
work=$(mktemp -d)
ref_sock=$work/ref.sock our_sock=$work/our.sock
if [ -n "$PIN" ]; then
  ref_pid=$(REFXS_CPUS=$PIN "$REFXS/start" "$ref_sock")
  taskset -c "$PIN" $DAEMON --socket "$our_sock" & our_pid=$!
else
  ref_pid=$("$REFXS/start" "$ref_sock")
  $DAEMON --socket "$our_sock" & our_pid=$!
fi
trap 'kill $ref_pid $our_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$our_sock" ] && break; sleep 0.05; done

for r in $(seq "$ROUNDS"); do
  for n in 1 8; do
    for w in read write dir txn; do
      for d in ref our; do
        sock=${d}_sock pid=${d}_pid
        python3 "$REFXS/xsbench.py" --socket "${!sock}" --clients $n --workloads $w \
          --duration "$DUR" --daemon-pid "${!pid}" --json "$work/$d-$w-$n-$r.json" >/dev/null
      done
    done
  done
done

python3 - "$work" "$ref_sock" "$ref_pid" "$our_sock" "$our_pid" <<'PY'
import glob, json, os, socket, struct, sys
work, ref_sock, ref_pid, our_sock, our_pid = sys.argv[1:]
import statistics
runs = {}
for f in glob.glob(work + "/*.json"):
    d, w, n, _ = os.path.basename(f)[:-5].split("-")
    runs.setdefault((w, int(n), d), []).append(json.load(open(f))["results"][0])
def eff1(r):
    return r["msgs_per_s"] / (r["daemon_cpu_pct"] / 100.0) if r["daemon_cpu_pct"] else float("nan")
# Per cell, the median of each figure over the rounds.
rows = {}
for k, rs in runs.items():
    rows[k] = {f: statistics.median(r[f] for r in rs) for f in ("ops_per_s", "p50_us", "p99_us")}
    rows[k]["eff"] = statistics.median(eff1(r) for r in rs)
def eff(r):
    return r["eff"]
print("| workload | clients | req/s ref | req/s ours | p50 µs ref | p50 µs ours | p99 µs ref | p99 µs ours | msgs per daemon-CPU-s ref | ours | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in (1, 8):
    for w in ("read", "write", "dir", "txn"):
        a, b = rows[(w, n, "ref")], rows[(w, n, "our")]
        print("| %s | %d | %.0f | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f | %.2fx |" % (
            w, n, a["ops_per_s"], b["ops_per_s"], a["p50_us"], b["p50_us"],
            a["p99_us"], b["p99_us"], eff(a), eff(b), eff(b) / eff(a)))

# Memory per 100k nodes: resident set growth while writing 100k nodes.
HDR = struct.Struct("<IIII")
def rss_kib(pid):
    for line in open("/proc/%s/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def load(path, count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    batch = []
    for i in range(count):
        p = b"/mem/d%03d/n%05d\0" % (i // 1000, i) + b"0123456789"
        batch.append(HDR.pack(11, i, 0, len(p)) + p)
        if len(batch) == 100 or i == count - 1:
            s.sendall(b"".join(batch))
            for _ in batch:
                h = b""
                while len(h) < 16:
                    h += s.recv(16 - len(h))
                t, _, _, l = HDR.unpack(h)
                body = b""
                while len(body) < l:
                    body += s.recv(l - len(body))
                assert t == 11, body
            batch = []
    s.close()
print()
print("| daemon | RSS before | RSS after 100k nodes | per 100k nodes |")
print("|---|---:|---:|---:|")
for name, sock, pid in (("reference (C xenstored 4.17)", ref_sock, ref_pid), ("xkvm xenstored", our_sock, our_pid)):
    before = rss_kib(pid)
    load(sock, 100000)
    after = rss_kib(pid)
    print("| %s | %.1f MiB | %.1f MiB | %.1f MiB |" % (name, before / 1024, after / 1024, (after - before) / 1024))
PY
