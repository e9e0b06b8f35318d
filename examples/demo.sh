#!/usr/bin/env bash
# demo.sh — what `make demo` runs: supervised fine-tuning end to end.
#  1. writes a synthetic instruction data set (shopping lists for dishes),
#  2. trains a small transformer from scratch (byte tokenizer) with
#     build/bin/sft, showing greedy samples before and after and the
#     held-out exact-match accuracy (requests worded in ways the model has
#     not seen for those dishes). About 2 minutes on 2 cores.
set -euo pipefail
BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
out=${DEMO_DIR:-$BUILD/demo}
# Debian's OpenBLAS picks slow kernels on recent Xeons unless told (docs/model.md).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
mkdir -p "$out"
/usr/bin/env python3 "$here/make_shopping_data.py" "$out" --train 4000 --test 100 --seed 1
echo "example: $(head -n 1 "$out/train.jsonl")"
"$BUILD/bin/sft" "$out/train.jsonl" --eval "$out/test.jsonl" \
  --layers 3 --heads 4 --embd 128 --ctx 96 --steps ${DEMO_STEPS:-600} --batch 16 --lr 3e-3 \
  --samples 4 --seed 1 --save "$out/checkpoint"
