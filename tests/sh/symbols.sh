#!/usr/bin/env bash
# The exported symbol set equals abi/libalign.symbols and the functions
# declared in include/align.h; every export starts with align_; internal
# align__ symbols stay hidden; the SONAME is libalign.so.0.
set -euo pipefail
so=$(ls "$BUILD"/libalign.so.*.*.* | head -1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sed 's/@.*//' | sort -u > "$tmp/exports"
grep -h 'ALIGN_API' include/*.h | grep -v '#' | sed -n 's/.*[ *]\(align_[a-z0-9_]*\)(.*/\1/p' | sort -u > "$tmp/header"

bad=$(grep -v '^align_' "$tmp/exports" || true)
[ -z "$bad" ] || { echo "FAIL: exports without the align_ prefix:"; echo "$bad"; exit 1; }
bad=$(grep '^align__' "$tmp/exports" || true)
[ -z "$bad" ] || { echo "FAIL: internal symbols exported:"; echo "$bad"; exit 1; }
if ! diff -u "$tmp/header" "$tmp/exports"; then
  echo "FAIL: exported symbols differ from the functions declared in include/ (- header, + exports)"; exit 1
fi
if ! diff -u abi/libalign.symbols "$tmp/exports"; then
  echo "FAIL: exported symbols differ from abi/libalign.symbols (run 'make abi-baseline' for a deliberate addition)"; exit 1
fi
# internal helpers exist in the archive but not in the shared library's dynamic table
nm "$BUILD/libalign.a" | grep ' T align__error$' > /dev/null || { echo "FAIL: align__error not found in libalign.a"; exit 1; }
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libalign.so.0" ] || { echo "FAIL: SONAME is '$soname'"; exit 1; }
[ "$(readlink "$BUILD/libalign.so.0")" = "$(basename "$so")" ] || { echo "FAIL: libalign.so.0 link"; exit 1; }
[ "$(readlink "$BUILD/libalign.so")" = "libalign.so.0" ] || { echo "FAIL: libalign.so link"; exit 1; }
echo "symbols: $(wc -l < "$tmp/exports") exports match the header and abi/libalign.symbols; SONAME $soname"
