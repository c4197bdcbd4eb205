#!/usr/bin/env bash
# Regenerates NAME.expected.json and NAME.exit for every NAME.cfg here with
# the oracle (Xen 4.17's own `xl create -n`: ../../../shared/tools/xl-dry-run,
# or $XL_DRY_RUN). A NAME.args file, if present, holds KEY=VALUE overrides
# (one per line) passed after the file. For accepted files the oracle's
# warnings (stderr without its "Parsing config" line) go to
# NAME.expected.stderr.
#
# regen.sh --check  writes nothing: it re-runs the oracle and fails if any
# recorded answer differs (JSON compared without the random uuid).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
oracle="${XL_DRY_RUN:-$here/../../../shared/tools/xl-dry-run}"
check=0
[ "${1:-}" = "--check" ] && check=1
cd "$here"
out="$here"
if [ $check = 1 ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
for cfg in *.cfg; do
  name="${cfg%.cfg}"
  args=()
  [ -f "$name.args" ] && mapfile -t args < "$name.args"
  set +e
  "$oracle" "$cfg" "${args[@]}" > "$out/$name.expected.json" 2> "$out/$name.expected.stderr"
  echo $? > "$out/$name.exit"
  set -e
  [ -s "$out/$name.expected.json" ] || rm -f "$out/$name.expected.json"
  if [ "$(cat "$out/$name.exit")" = 0 ]; then
    sed -i '/^Parsing config from /d' "$out/$name.expected.stderr"
  else
    rm -f "$out/$name.expected.stderr"
  fi
done
[ $check = 1 ] || exit 0
python3 - "$here" "$out" <<'PY'
import json, os, re, sys
here, new = sys.argv[1], sys.argv[2]
bad = []
for f in sorted(os.listdir(here)):
    if not f.endswith(".cfg"):
        continue
    n = f[:-4]
    def rd(d, ext):
        p = os.path.join(d, n + ext)
        return open(p).read() if os.path.exists(p) else None
    if rd(here, ".exit") != rd(new, ".exit") or rd(here, ".expected.stderr") != rd(new, ".expected.stderr"):
        bad.append(n)
        continue
    a, b = rd(here, ".expected.json"), rd(new, ".expected.json")
    if (a is None) != (b is None):
        bad.append(n)
        continue
    if a is not None:
        a, b = json.loads(a), json.loads(b)
        text = open(os.path.join(here, f), errors="replace").read()
        if not re.search(r"(^|[;\n])[ \t]*uuid[ \t]*\+?=", text):
            a["c_info"].pop("uuid", None)
            b["c_info"].pop("uuid", None)
        if a != b:
            bad.append(n)
if bad:
    print("oracle answers changed for:", " ".join(bad))
    sys.exit(1)
print("all recorded oracle answers still hold")
PY
