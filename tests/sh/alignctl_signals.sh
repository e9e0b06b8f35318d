#!/usr/bin/env bash
# alignctl sft: two SIGINTs in quick succession (a double Ctrl-C, or
# `timeout -s INT` signalling the process group) must still end with status
# 130 AND a checkpoint that resumes; --resume accepts the run's checkpoint
# folder (the one holding `latest`) as well as a checkpoint folder itself.
# Env: BUILD (build folder, default build). Runs in $BUILD/tmp/alignctl_signals.XXXXXX.
set -euo pipefail

BUILD=${BUILD:-build}
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

for i in $(seq 0 31); do
    printf '{"prompt":"add %d %d =","completion":" %d."}\n' $((i % 10)) $((i % 7)) $((i % 10 + i % 7))
done > train.jsonl
"$A" init --layers 1 --heads 2 --width 32 --vocab 257 --context 32 --out base.safetensors >/dev/null
COMMON=(--model base.safetensors --tokenizer bytes --data train.jsonl --batch 4 --threads 1
        --lr 1e-3 --seed 3)

# ---- --resume: a checkpoint folder, CKPT/latest, or the run's folder CKPT ---------------
"$A" sft "${COMMON[@]}" --steps 2 --save-every 2 --out r.safetensors 2>/dev/null ||
    fail "sft 2 steps"
[ -f r.ckpt/step-2/trainer.json ] && [ -L r.ckpt/latest ] || fail "no checkpoint r.ckpt/step-2"
for dir in r.ckpt r.ckpt/ r.ckpt/latest r.ckpt/step-2; do
    rm -f r3.safetensors
    "$A" sft "${COMMON[@]}" --steps 3 --out r3.safetensors --checkpoint-dir r3.ckpt \
        --resume "$dir" 2> rs.err || { cat rs.err >&2; fail "--resume $dir"; }
    grep -q "resumed from '.*' at step 2" rs.err || { cat rs.err >&2; fail "--resume $dir: message"; }
    [ -f r3.safetensors ] || fail "--resume $dir saved no model"
done
grep -q "resumed from 'r.ckpt/latest' at step 2" <("$A" sft "${COMMON[@]}" --steps 3 \
    --out r4.safetensors --resume r.ckpt 2>&1) || fail "--resume RUN names the checkpoint it uses"
mkdir -p empty
rc=0
"$A" sft "${COMMON[@]}" --steps 3 --out x.safetensors --resume empty 2> empty.err || rc=$?
[ "$rc" = 1 ] || fail "--resume of a folder without a checkpoint exited $rc, expected 1"
grep -q "'empty' is not a checkpoint" empty.err || { cat empty.err >&2; fail "--resume empty: message"; }
ok "--resume accepts CKPT, CKPT/latest and CKPT/step-N"

# ---- two SIGINTs a few milliseconds apart: 130 with a checkpoint, every time ----------------
delays=(0 0 0.001 0.002 0.005 0.01 0.02 0.05)
runs=20
for run in $(seq 1 $runs); do
    d=${delays[$((run % ${#delays[@]}))]}
    rm -rf i.ckpt mi.jsonl
    "$A" sft "${COMMON[@]}" --steps 1000000 --metrics mi.jsonl --out i.safetensors 2> int.err &
    pid=$!
    for _ in $(seq 600); do
        [ -s mi.jsonl ] && break
        kill -0 $pid 2> /dev/null || break
        sleep 0.05
    done
    [ -s mi.jsonl ] || { cat int.err >&2; fail "run $run: sft logged no step"; }
    kill -INT $pid
    [ "$d" = 0 ] || sleep "$d"
    kill -INT $pid 2> /dev/null || true
    rc=0
    wait $pid || rc=$?
    [ "$rc" = 130 ] || { cat int.err >&2; fail "run $run (second SIGINT after ${d}s): exit $rc, expected 130"; }
    n=$(readlink i.ckpt/latest 2> /dev/null | sed 's/^step-//') || true
    [ -n "$n" ] && [ -f "i.ckpt/step-$n/trainer.json" ] ||
        { cat int.err >&2; fail "run $run (second SIGINT after ${d}s): exit 130 without a checkpoint"; }
    grep -q -- "--resume i.ckpt/step-$n" int.err || { cat int.err >&2; fail "run $run: no resume hint"; }
    if [ $((run % 5)) = 0 ]; then   # the checkpoint resumes (as the run's folder)
        "$A" sft "${COMMON[@]}" --steps $((n + 1)) --metrics mi.jsonl --out i.safetensors \
            --resume i.ckpt 2> ir.err || { cat int.err ir.err >&2; fail "run $run: resume"; }
        [ "$(tail -n 1 mi.jsonl | grep -o '"step":[0-9]*' | cut -d: -f2)" = $((n + 1)) ] ||
            fail "run $run: resumed run did not log step $((n + 1))"
    fi
done
ok "two SIGINTs: exit 130 with a checkpoint in $runs of $runs runs"

# ---- `timeout -s INT` signals the program and then its process group: two SIGINTs --------
rm -rf t.ckpt
rc=0
timeout --preserve-status -s INT 3 "$A" sft "${COMMON[@]}" --steps 1000000 --out t.safetensors \
    2> t.err || rc=$?
[ "$rc" = 130 ] || { cat t.err >&2; fail "timeout -s INT: exit $rc, expected 130"; }
n=$(readlink t.ckpt/latest 2> /dev/null | sed 's/^step-//') || true
[ -n "$n" ] && [ -f "t.ckpt/step-$n/trainer.json" ] || { cat t.err >&2; fail "timeout -s INT: no checkpoint"; }
ok "timeout -s INT: exit 130, checkpoint at step $n"

echo "alignctl_signals.sh: all passed"
