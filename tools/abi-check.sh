#!/usr/bin/env bash
# abi-check.sh — the exported symbols and the ABI of libalign.so against the
# committed baseline in abi/ (docs/conventions.md, "ABI promise").
#   tools/abi-check.sh SO            check, then self-test that the check fails
#                                    on a removed symbol and on a changed struct
#   tools/abi-check.sh --update SO   rewrite abi/libalign.abi and abi/libalign.symbols
set -euo pipefail
cd "$(dirname "$0")/.."
update=0
if [ "${1:-}" = "--update" ]; then update=1; shift; fi
so=${1:?usage: abi-check.sh [--update] path/to/libalign.so.X.Y.Z}
hdrs="$PWD/include"
baseline=abi/libalign.abi
supp=abi/libalign.suppr
symlist=abi/libalign.symbols
layout=abi/libalign.layout

exports() { nm -D --defined-only "$1" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sed 's/@.*//' | sort -u; }

if [ "$update" = 1 ]; then
  abidw --headers-dir "$hdrs" --out-file "$baseline" "$so"
  exports "$so" > "$symlist"
  python3 tools/struct-layout.py dump > "$layout"
  echo "abi: baseline written ($(wc -l < "$symlist") symbols)"
  exit 0
fi

# run_abidiff BASE NEW: prints the report, returns abidiff's status bits
run_abidiff() {
  local rc=0
  abidiff --hd2 "$hdrs" --suppressions "$supp" "$1" "$2" > "$work/abidiff.out" 2>&1 || rc=$?
  cat "$work/abidiff.out"
  return $rc
}

# verdict RC: 0 = compatible. Bits: 1 tool error, 2 usage error, 4 ABI change, 8 incompatible change.
verdict() {
  local rc=$1
  if (( rc & 3 )); then echo "abi: abidiff failed to run (status $rc)"; return 2; fi
  if (( rc & 8 )); then echo "abi: INCOMPATIBLE change (removed symbol or changed type)"; return 1; fi
  if (( rc & 4 )); then
    if grep -qE 'Functions changes summary: 0 Removed, 0 Changed' "$work/abidiff.out" &&
       grep -qE 'Variables changes summary: 0 Removed, 0 Changed' "$work/abidiff.out"; then
      return 0
    fi
    echo "abi: changed functions or variables"; return 1
  fi
  return 0
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. exported symbols: exactly the align_ prefix, and the committed list is covered
exports "$so" > "$work/exports"
if grep -v '^align_' "$work/exports"; then echo "abi: symbols without the align_ prefix are exported"; exit 1; fi
if grep '^align__' "$work/exports"; then echo "abi: internal align__ symbols are exported"; exit 1; fi
missing=$(comm -23 "$symlist" "$work/exports")
if [ -n "$missing" ]; then echo "abi: symbols removed since the baseline:"; echo "$missing"; exit 1; fi
added=$(comm -13 "$symlist" "$work/exports")
[ -z "$added" ] || { echo "abi: new symbols (add them to abi/libalign.symbols and docs/symbols-in-versions):"; echo "$added"; }

# 2. forbid passing the size-prefixed structs by value (the suppression would hide it)
if grep -nE '\((const )?align_[a-z0-9_]*_(params|stats) [a-z_]+[,)]|, ?(const )?align_[a-z0-9_]*_(params|stats) [a-z_]+[,)]' include/*.h; then
  echo "abi: a params/stats struct is passed by value"; exit 1
fi

# 3. abidiff against the baseline
rc=0; run_abidiff "$baseline" "$so" || rc=$?
verdict $rc || exit 1
# 3b. public struct layouts: only members appended at the end (tools/struct-layout.py)
python3 tools/struct-layout.py check "$layout" || exit 1
echo "abi: compatible with the baseline"

# 4. self-test: the same check must fail on a library missing a symbol ...
objs=$(find "$(dirname "$so")/obj" -name '*.o' | sort)
victim=$(head -1 "$symlist")
sed "s/local:/local:\n    $victim;/" lib/libalign.map > "$work/removed.map"
cc -shared -Wl,-soname,libalign.so.0 -Wl,--version-script="$work/removed.map" -o "$work/libalign-removed.so" \
   $objs $(pkg-config --libs openblas jansson libpcre2-8 libuv) -lm -lpthread
if exports "$work/libalign-removed.so" | grep -qx "$victim"; then echo "abi self-test: could not hide $victim"; exit 1; fi
rc=0; run_abidiff "$baseline" "$work/libalign-removed.so" > /dev/null || rc=$?
if verdict $rc > /dev/null; then echo "abi self-test FAILED: a removed symbol ($victim) was not detected"; exit 1; fi
(( rc & 8 )) || { echo "abi self-test FAILED: removed symbol not flagged as incompatible (status $rc)"; exit 1; }
echo "abi self-test: removed symbol $victim detected (abidiff status $rc)"

# ... and on a public struct whose members were reordered (a patched header).
mkdir -p "$work/tree"
cp -r include "$work/tree/"
python3 - "$work/tree/include/align.h" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
a = "    int32_t  n_layer;       /* transformer blocks (default 4) */\n"
b = "    int32_t  n_head;        /* attention heads (default 4) */\n"
assert a in s and b in s, "self-test anchor lines not found in align.h"
s = s.replace(a + b, b + a)   # swap two members: same size, different layout
open(p, "w").write(s)
PY
if ALIGN_ROOT="$work/tree" python3 tools/struct-layout.py check "$layout" > "$work/layout.out"; then
  cat "$work/layout.out"; echo "abi self-test FAILED: a reordered struct was not detected"; exit 1
fi
echo "abi self-test: reordered struct members detected ($(grep -c INCOMPATIBLE "$work/layout.out") findings)"
echo "abi: OK"
