#!/usr/bin/env bash
# alignctl's slow-BLAS remedy follows the library's decision
# (align_blas_slow_kernel): with OPENBLAS_CORETYPE forcing OpenBLAS's SSE3
# Prescott kernels on an AVX2 / AVX-512 CPU, alignctl does not re-run (the
# variable is the user's) but names the value with the fast kernels.
# Env: BUILD (build folder, default build).
set -euo pipefail

BUILD=${BUILD:-build}
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

"$A" init --layers 1 --heads 1 --width 8 --vocab 257 --context 16 --out m.safetensors >/dev/null
printf '{"prompt":"a","completion":"b"}\n' > d.jsonl
OPENBLAS_CORETYPE=Prescott "$A" eval --model m.safetensors --tokenizer bytes --data d.jsonl \
    > /dev/null 2> slow.err || { cat slow.err >&2; fail "eval with Prescott kernels"; }
if ! grep -q 'BLAS: OpenBLAS.*(Prescott kernels)' slow.err; then
    echo "ok - not OpenBLAS with selectable kernels here # SKIP"
    exit 0
fi
! grep -q 're-running' slow.err || fail "re-ran although OPENBLAS_CORETYPE was set"
if grep -qw avx512f /proc/cpuinfo; then want=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then want=Haswell; else want=; fi
if [ -n "$want" ]; then
    grep -q "OPENBLAS_CORETYPE=Prescott is set but selects slow kernels on this CPU; export OPENBLAS_CORETYPE=$want instead" slow.err ||
        { cat slow.err >&2; fail "no remedy $want named"; }
    echo "ok - slow Prescott kernels detected, remedy $want"
else
    ! grep -q 'selects slow kernels' slow.err || fail "Prescott is not slow on a CPU without AVX2"
    echo "ok - Prescott kernels are not a fallback on this CPU"
fi
echo "alignctl_blas.sh: all passed"
