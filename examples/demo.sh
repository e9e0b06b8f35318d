#!/usr/bin/env bash
# demo.sh — what `make demo` runs: the whole RLHF pipeline end to end with
# examples/pipeline.c (docs/pipeline.md walks through it):
#  1. writes a synthetic instruction data set (shopping lists for dishes),
#  2. (a) SFT of a small transformer from scratch (byte tokenizer),
#     (b) K = 4 samples per request ranked by a program labeler,
#     (c) a reward model trained on the rankings,
#     (d) GRPO (DEMO_ALGO=ppo: PPO with a value model) against the reward model
#         (DEMO_REWARD=rule: against the labeler's rule itself, the control run),
#     (e) held-out evaluation by the labeler's rule, SFT vs RL policy,
#  3. draws the training curves (alignctl plot) as SVG files.
# DEMO_FAST=1: smaller stages (~1 minute; what CI runs). DEMO_SEED=S.
# DEMO_ARGS: more options for examples/pipeline.c (e.g. "--rl-lr 3e-5 --rl-steps 80").
set -euo pipefail
BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")" && pwd)
out=${DEMO_DIR:-$BUILD/demo}
# Debian's OpenBLAS picks slow kernels on recent Xeons unless told (docs/model.md).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
algo=${DEMO_ALGO:-grpo}
seed=${DEMO_SEED:-1}
reward=${DEMO_REWARD:-rm}
read -r -a extra <<< "${DEMO_ARGS:-}"
fast=()
[ "${DEMO_FAST:-0}" != 0 ] && fast=(--fast)
mkdir -p "$out"
# DEMO_RL_SHARE=F: collection and RL on requests the SFT data does not answer
# (make_shopping_data.py --rl-share); otherwise on the SFT data's own requests
rm -f "$out/rl_prompts.jsonl"
# DEMO_CARELESS=P: the share of demonstrations with a slip (make_shopping_data.py
# --careless; 0 = a flawless demonstrator, which leaves RL nothing to fix: docs/pipeline.md)
/usr/bin/env python3 "$here/make_shopping_data.py" "$out" --train 4000 --test 100 --seed 1 \
  --careless "${DEMO_CARELESS:-0.4}" --rl-share "${DEMO_RL_SHARE:-0}"
echo "example: $(head -n 1 "$out/train.jsonl")"
"$BUILD/bin/pipeline" "$out" --algo "$algo" --reward "$reward" --seed "$seed" "${fast[@]}" "${extra[@]}"
echo
ctl="$BUILD/bin/alignctl"
"$ctl" plot "$out/metrics_sft.jsonl" --out "$out/sft.svg" --series loss,accuracy --title "SFT" >/dev/null
"$ctl" plot "$out/metrics_rm.jsonl" --out "$out/reward_model.svg" --series loss,accuracy,margin \
  --title "reward model" >/dev/null
"$ctl" plot "$out/metrics_rl.jsonl" --out "$out/rl.svg" \
  --series objective/scores,objective/kl,loss --title "$algo against the $([ "$reward" = rule ] && echo "labeler's rule" || echo "reward model")" >/dev/null
echo "table: $out/summary.tsv"
echo "plots: $out/sft.svg $out/reward_model.svg $out/rl.svg"
