#!/usr/bin/env bash
# alignctl survives SIGKILL (docs/reliability.md): `alignctl sft --save-every 1`
# is killed with SIGKILL at random moments (>= 50 times; each run resumes from
# the previous run's checkpoints, so kills also hit resumes). After every kill
# `alignctl sft --resume CKPT` must succeed from the last good checkpoint
# (CKPT/latest, or the newest complete step-N), and after that successful save
# no temporary may remain: .NAME.new-* / .NAME.old-* (checkpoint folders),
# *.tmp.* (files), .latest.* (alignctl's link). Env: BUILD. Runs in
# $BUILD/tmp/crash_alignctl.XXXXXX; ~20-40 s.
set -euo pipefail

BUILD=${BUILD:-build}
A="$(cd "$BUILD" && pwd)/bin/alignctl"
[ -x "$A" ] || { echo "crash_alignctl.sh: skipped: $A is not built (make examples)"; exit 0; }
command -v timeout >/dev/null || { echo "crash_alignctl.sh: skipped: no timeout(1)"; exit 0; }
mkdir -p "$BUILD/tmp"
T=$(mktemp -d "$BUILD/tmp/crash_alignctl.XXXXXX")
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }

for i in $(seq 0 31); do
    printf '{"prompt":"add %d %d =","completion":" %d."}\n' $((i % 10)) $((i % 7)) $((i % 10 + i % 7))
done > train.jsonl
"$A" init --layers 1 --heads 2 --width 32 --vocab 257 --context 32 --out base.safetensors >/dev/null
COMMON=(--model base.safetensors --tokenizer bytes --data train.jsonl --batch 4 --threads 1
        --lr 1e-3 --seed 3 --quiet --checkpoint-dir ck --out out.safetensors)

leftovers() {
    find . \( -name '.*.new-*' -o -name '.*.old-*' -o -name '*.tmp.*' -o -name '.latest.*' \) -print
}
# the step the run would resume from: CKPT/latest
latest_step() {
    local t
    t=$(readlink ck/latest 2>/dev/null) || { echo 0; return; }
    echo "${t#step-}"
}

KILLS=${CRASH_KILLS:-50}
RANDOM=7
kills=0 resumes=0 maxstep=0 wait_ms=20
start=$SECONDS
while [ "$kills" -lt "$KILLS" ]; do
    res=()
    [ -e ck/latest ] && res=(--resume ck)
    "$A" sft "${COMMON[@]}" --steps 100000 --save-every 1 "${res[@]}" 2>>run.err &
    PID=$!
    # 20..300 ms after the start: startup, resume, several steps and saves (the
    # window moves later while no run has reached its first checkpoint, e.g.
    # under a sanitizer)
    ms=$((wait_ms + RANDOM % 280))
    sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
    kill -9 "$PID" 2>/dev/null || fail "alignctl exited before the kill: $(tail -3 run.err)"
    wait "$PID" 2>/dev/null || true
    PID=""
    kills=$((kills + 1))
    if [ ! -e ck/latest ]; then     # killed before its first checkpoint
        [ "$wait_ms" -ge 4000 ] || wait_ms=$((wait_ms * 2))
        continue
    fi
    n=$(latest_step)
    [ "$n" -ge "$maxstep" ] || fail "kill $kills: latest went back from step $maxstep to $n"
    maxstep=$n
    # resume from the last good checkpoint and save once more
    "$A" sft "${COMMON[@]}" --steps $((n + 1)) --save-every 1 --resume ck 2> resume.err ||
        { cat resume.err >&2; fail "kill $kills: --resume ck (latest step-$n) failed"; }
    grep -q "resumed from 'ck/latest' at step $n" resume.err ||
        { cat resume.err >&2; fail "kill $kills: did not resume at step $n"; }
    [ "$(latest_step)" = $((n + 1)) ] || fail "kill $kills: resume did not save step-$((n + 1))"
    left=$(leftovers)
    [ -z "$left" ] || fail "kill $kills: temporaries left after a successful save: $left"
    resumes=$((resumes + 1))
    maxstep=$((n + 1))
done
[ "$resumes" -ge $((KILLS / 2)) ] || fail "only $resumes of $kills kills left a checkpoint to resume"
echo "ok - $kills SIGKILLs of alignctl sft --save-every 1, $resumes resumes (up to step $maxstep), no temporaries left ($((SECONDS - start)) s)"
