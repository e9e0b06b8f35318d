#!/usr/bin/env bash
# Llama fidelity against PyTorch (tests/llama_torch.py): random Llama / Qwen2
# models written as Hugging Face folders (F32 single file; BF16 in two shards),
# loaded by libalign; logits, log-probs and gradients within 1e-4 of an
# independent float64 PyTorch implementation; what libalign saves as BF16
# reads back in PyTorch as the bf16-rounded weights. Skipped without torch.
# Env: BUILD (build folder), CC, SAN. Runs in $BUILD/tmp/llama_torch.XXXXXX.
set -euo pipefail
py=/usr/bin/python3
if ! [ -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
  echo "SKIP: python3-torch not importable (apt-get install python3-torch to run this check)"
  exit 0
fi
BUILD=${BUILD:-build}
CC=${CC:-cc}
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
[ -f "$BUILD/libalign.a" ] || { echo "llama_torch.sh: $BUILD/libalign.a is not built (make lib)" >&2; exit 1; }
mkdir -p "$BUILD/tmp"
T=$(mktemp -d "$BUILD/tmp/llama_torch.XXXXXX")
trap 'rm -rf "$T"' EXIT
# The static archive's own dependencies (BLAS, jansson, PCRE2, libuv, oneDNN when built
# with it): make check-sh passes the Makefile's LIB_LIBS; by hand, the same lookup.
if [ -n "${LIB_LIBS:-}" ]; then
  BLAS_LIBS=$LIB_LIBS; DEP_LIBS=
else
  BLAS_LIBS=$(pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
  DEP_LIBS=$(pkg-config --libs jansson libpcre2-8 libuv 2>/dev/null || echo -ljansson -lpcre2-8 -luv)
  nm "$BUILD/libalign.a" 2>/dev/null | grep -q ' U dnnl_' && DEP_LIBS="$DEP_LIBS -ldnnl -lgomp"
fi
$CC -std=c11 -D_POSIX_C_SOURCE=200809L -g ${SAN:-} -I"$SRC/include" -I"$SRC/lib" \
    "$SRC/tests/sh/llama_torch_dump.c" "$BUILD/libalign.a" $BLAS_LIBS $DEP_LIBS -lpthread -ldl -lrt -lm \
    -o "$T/dump"
"$py" "$SRC/tests/llama_torch.py" write "$T"
for m in llama qwen2; do
  "$T/dump" "$T/$m" "$T/$m/ref.safetensors" "$T/$m/out.safetensors" "$T/$m/saved/"
done
"$py" "$SRC/tests/llama_torch.py" compare "$T"
