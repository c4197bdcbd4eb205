#!/usr/bin/env bash
# Regenerates NAME.expected.json and NAME.exit for every NAME.cfg here with
# the oracle (Xen 4.17's own `xl create -n`, ../../../shared/tools/xl-dry-run
# or $XL_DRY_RUN). A NAME.args file, if present, holds KEY=VALUE overrides
# (one per line) passed after the file. For accepted files the oracle's
# warnings (stderr without its "Parsing config" line) go to NAME.expected.stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
oracle="${XL_DRY_RUN:-$here/../../../shared/tools/xl-dry-run}"
cd "$here"
for cfg in *.cfg; do
  name="${cfg%.cfg}"
  args=()
  [ -f "$name.args" ] && mapfile -t args < "$name.args"
  set +e
  "$oracle" "$cfg" "${args[@]}" > "$name.expected.json" 2> "$name.expected.stderr"
  echo $? > "$name.exit"
  set -e
  [ -s "$name.expected.json" ] || rm -f "$name.expected.json"
  if [ "$(cat "$name.exit")" = 0 ]; then
    sed -i '/^Parsing config from /d' "$name.expected.stderr"
  else
    rm -f "$name.expected.stderr"
  fi
done
