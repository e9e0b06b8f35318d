#!/usr/bin/env bash
# Install into a temporary DESTDIR and build a consumer with pkg-config.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
prefix=/opt/libalign-test
${MAKE:-make} -s install BUILD="$BUILD" DESTDIR="$tmp/root" PREFIX="$prefix" SAN="$SAN" > "$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; exit 1; }
root="$tmp/root$prefix"
# The .pc follows PREFIX: a second install under another prefix (as `make
# install` after `make check`) must not reuse the first one's libalign.pc.
${MAKE:-make} -s install BUILD="$BUILD" DESTDIR="$tmp/root2" PREFIX=/opt/libalign-other SAN="$SAN" > "$tmp/install2.log" 2>&1 ||
  { cat "$tmp/install2.log"; exit 1; }
grep -qx 'prefix=/opt/libalign-other' "$tmp/root2/opt/libalign-other/lib/pkgconfig/libalign.pc" ||
  { echo "FAIL: libalign.pc kept a stale prefix after PREFIX changed:"; cat "$tmp/root2/opt/libalign-other/lib/pkgconfig/libalign.pc"; exit 1; }
${MAKE:-make} -s install BUILD="$BUILD" DESTDIR="$tmp/root" PREFIX="$prefix" SAN="$SAN" > "$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; exit 1; }
for f in include/align.h lib/libalign.so lib/libalign.so.0 lib/libalign.a lib/pkgconfig/libalign.pc; do
  [ -e "$root/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
[ "$(readlink "$root/lib/libalign.so.0")" = "$(basename "$(ls "$root"/lib/libalign.so.*.*.*)")" ] ||
  { echo "FAIL: libalign.so.0 link"; exit 1; }
pc="$root/lib/pkgconfig"
export PKG_CONFIG_PATH="$pc" PKG_CONFIG_SYSROOT_DIR="$tmp/root"
ver=$(pkg-config --modversion libalign)
want=$(sed -n 's/^#define ALIGN_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' include/align.h | paste -sd.)
[ "$ver" = "$want" ] || { echo "FAIL: pkg-config version $ver, header says $want"; exit 1; }
cat > "$tmp/consumer.c" <<'C'
#include <align.h>
#include <stdio.h>
int main(void) {
    if ((align_version() >> 16) != ALIGN_VERSION_MAJOR) return 1;
    align_model_params p;
    ALIGN_MODEL_DEFAULT_PARAMS(&p);
    p.n_layer = 1; p.n_head = 2; p.n_embd = 16; p.vocab_size = 32; p.max_seq_len = 8;
    align_model *m;
    int rc = align_model_create(&m, &p);
    if (rc != ALIGN_OK) { printf("create: %s\n", align_last_errmsg()); return 1; }
    printf("libalign %s: model with %lld parameters\n", align_version_string(), (long long)align_model_num_params(m));
    align_model_free(m);
    return 0;
}
C
${CC:-cc} $SAN $(pkg-config --cflags libalign) "$tmp/consumer.c" -o "$tmp/consumer" $(pkg-config --libs libalign) \
  -Wl,-rpath,"$root/lib"
out=$(LD_LIBRARY_PATH= "$tmp/consumer")
echo "$out" | grep -q "parameters" || { echo "FAIL: consumer printed '$out'"; exit 1; }
# static linking through pkg-config --static
${CC:-cc} $SAN $(pkg-config --cflags libalign) "$tmp/consumer.c" -o "$tmp/consumer-static" \
  "$root/lib/libalign.a" $(pkg-config --static --libs-only-other --libs-only-l libalign | sed 's/-lalign//')
"$tmp/consumer-static" | grep -q parameters || { echo "FAIL: static consumer"; exit 1; }
# the Python binding, installed into PYTHONDIR (the purelib path of /usr/bin/python3
# for PREFIX), imports with PYTHONPATH and loads the installed library, found through
# LIBALIGN_LIBRARY or the loader's search (LD_LIBRARY_PATH)
pydir=$(${MAKE:-make} -s -p -n help PREFIX="$prefix" 2>/dev/null | sed -n 's/^PYTHONDIR := //p')
[ -n "$pydir" ] || { echo "FAIL: no PYTHONDIR"; exit 1; }
[ -f "$tmp/root$pydir/libalign/__init__.py" ] && [ -f "$tmp/root$pydir/libalign/_raw.py" ] ||
  { echo "FAIL: Python binding not installed in $pydir"; exit 1; }
pyok=skipped
if [ -n "${SAN:-}" ]; then
  pyok="skipped (sanitizer build: python3 cannot load it)"
elif command -v python3 >/dev/null; then
  pyprog='import libalign, libalign._loader as L, os; L.load(); print(libalign.__file__); print(*sorted({l.split()[-1] for l in open("/proc/self/maps") if "libalign.so" in l}))'
  for how in LIBALIGN_LIBRARY LD_LIBRARY_PATH; do
    if [ $how = LIBALIGN_LIBRARY ]; then
      py=$(cd "$tmp" && env -u LD_LIBRARY_PATH PYTHONPATH="$tmp/root$pydir" LIBALIGN_LIBRARY="$root/lib/libalign.so.0" python3 -c "$pyprog")
    else
      py=$(cd "$tmp" && env -u LIBALIGN_LIBRARY PYTHONPATH="$tmp/root$pydir" LD_LIBRARY_PATH="$root/lib" python3 -c "$pyprog")
    fi
    echo "$py" | head -1 | grep -q "^$tmp/root$pydir/libalign/__init__.py$" ||
      { echo "FAIL: ($how) imported libalign from elsewhere: $py"; exit 1; }
    [ "$(echo "$py" | tail -1)" = "$(readlink -f "$root/lib/libalign.so.0")" ] ||
      { echo "FAIL: ($how) loaded another library: $py"; exit 1; }
  done
  pyok="imports from $pydir and loads the installed library (LIBALIGN_LIBRARY, LD_LIBRARY_PATH)"
fi
${MAKE:-make} -s uninstall BUILD="$BUILD" DESTDIR="$tmp/root" PREFIX="$prefix" > /dev/null
[ ! -e "$root/lib/libalign.so" ] || { echo "FAIL: uninstall left libalign.so"; exit 1; }
[ ! -e "$tmp/root$pydir/libalign" ] || { echo "FAIL: uninstall left the Python binding"; exit 1; }
echo "pkgconfig: installed, consumer built with pkg-config ($out), static link ok, Python binding $pyok, uninstalled"
