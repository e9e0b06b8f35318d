#!/usr/bin/env bash
# The public headers compile cleanly as C11 (pedantic) and as C++11, on their own.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/c.c" <<'C'
#include "align.h"
#include "align.h" /* include guard */
int main(void) { align_model_params p; return ALIGN_MODEL_DEFAULT_PARAMS(&p) == ALIGN_OK ? 0 : 1; }
C
cat > "$tmp/cxx.cpp" <<'CXX'
#include "align.h"
#include <cstdio>
// The header must be usable from C++: extern "C" linkage, no C-only syntax.
int main() {
    align_sft_params p;
    if (ALIGN_SFT_DEFAULT_PARAMS(&p) != ALIGN_OK) return 1;
    align_step_stats s;
    if (align_step_stats_init(&s, sizeof s) != ALIGN_OK) return 1;
    std::printf("%s %s\n", align_version_string(), align_err_name(ALIGN_EINVAL));
    return 0;
}
CXX
${CC:-cc} -std=c11 -Wall -Wextra -Wpedantic -Werror -Iinclude -c "$tmp/c.c" -o "$tmp/c.o"
${CC:-cc} -std=c99 -Wall -Wextra -Werror -Iinclude -c "$tmp/c.c" -o "$tmp/c99.o"
${CXX:-c++} -std=c++11 -Wall -Wextra -Wpedantic -Werror -Iinclude "$tmp/cxx.cpp" -o "$tmp/cxx" $SAN \
  -L"$BUILD" -lalign -Wl,-rpath,"$PWD/$BUILD"
out=$("$tmp/cxx")
echo "$out" | grep -q "ALIGN_EINVAL" || { echo "FAIL: C++ program printed '$out'"; exit 1; }
echo "headers: C11, C99 and C++11 compile; C++ program linked and ran: $out"
