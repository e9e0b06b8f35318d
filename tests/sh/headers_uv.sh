#!/usr/bin/env bash
# include/align_uv.h compiles as C11 (with the POSIX feature macro Debian's
# <uv.h> needs) and as C++11, on its own; align.h stays free of libuv.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
UV_CFLAGS=$(pkg-config --cflags libuv 2>/dev/null || true)
UV_LIBS=$(pkg-config --libs libuv 2>/dev/null || echo -luv)
if grep -n 'uv\.h\|uv_' include/align.h; then echo "FAIL: align.h mentions libuv"; exit 1; fi
cat > "$tmp/c.c" <<'C'
#include "align_uv.h"
#include "align_uv.h" /* include guard */
static void on_step(align_trainer *t, int status, const align_step_stats *s, void *ud) { (void)t; (void)status; (void)s; (void)ud; }
static void on_req(align_journal *j, int64_t id, void *ud) { (void)j; (void)id; (void)ud; }
int main(void) {
    align_step_cb a = on_step;
    align_request_cb b = on_req;
    uv_loop_t *loop = uv_default_loop();
    int rc = align_trainer_step_async(NULL, loop, a, NULL) == ALIGN_EINVAL &&
             align_journal_watch(NULL, loop, b, NULL) == ALIGN_EINVAL ? 0 : 1;
    uv_loop_close(loop);
    return rc;
}
C
cat > "$tmp/cxx.cpp" <<'CXX'
#include "align_uv.h"
#include <cstdio>
int main() {
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return 1;
    int rc = align_journal_unwatch(NULL);
    std::printf("%s\n", align_err_name(rc));
    uv_loop_close(&loop);
    return rc == ALIGN_EINVAL ? 0 : 1;
}
CXX
${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wpedantic -Werror -Iinclude $UV_CFLAGS "$tmp/c.c" -o "$tmp/c" ${SAN:-} \
  -L"$BUILD" -lalign $UV_LIBS -Wl,-rpath,"$PWD/$BUILD"
"$tmp/c" || { echo "FAIL: C program"; exit 1; }
${CXX:-c++} -std=c++11 -Wall -Wextra -Werror -Iinclude $UV_CFLAGS "$tmp/cxx.cpp" -o "$tmp/cxx" ${SAN:-} \
  -L"$BUILD" -lalign $UV_LIBS -Wl,-rpath,"$PWD/$BUILD"
out=$("$tmp/cxx")
[ "$out" = "ALIGN_EINVAL" ] || { echo "FAIL: C++ program printed '$out'"; exit 1; }
echo "headers_uv: align_uv.h compiles as C11 (-D_POSIX_C_SOURCE=200809L) and C++11; align.h has no libuv"
