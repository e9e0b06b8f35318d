#!/usr/bin/env bash
# alignctl ppo / grpo / rloo and the --reward-cmd scorer process.
#  1. the scorer protocol on its own: tests/sh/alignctl_rl_extproc.c drives
#     examples/alignctl/extproc.c (built from alignctl's objects) through
#     align_reward_model_from_callback: right scores in order, a batch far
#     larger than the pipe buffers, a crash, garbage, NaN, a missing "score",
#     extra output, a hung scorer (timeout), a missing program, Ctrl-C; no
#     child is left behind (not even a zombie).
#  2. training: a tiny byte-level policy (init + a few SFT steps); GRPO with a
#     Python scorer counting the letter 'a' raises the mean score; RLOO runs;
#     PPO against a scalar-head reward model writes every named metric; a
#     resumed run ends bitwise where an uninterrupted one does; Ctrl-C exits 130
#     with a checkpoint that resumes; a scorer that crashes, prints garbage or
#     NaN mid-run is a clear error (exit 1) naming the command and the line,
#     and the last checkpoint resumes.
# Env: BUILD (build folder), CC, SAN. Runs in $BUILD/tmp/alignctl_rl.XXXXXX.
set -euo pipefail

BUILD=${BUILD:-build}
CC=${CC:-cc}
SRC=$(pwd)
command -v python3 > /dev/null || { echo "alignctl_rl.sh: python3 is required" >&2; exit 1; }
B="$(cd "$BUILD" && pwd)"
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

# expect STATUS WANTED PATTERN FILE WHAT: a command's exit status and message
expect() {
    [ "$1" = "$2" ] || { cat "$4" >&2; fail "$5: exit $1, expected $2"; }
    grep -q -- "$3" "$4" || { cat "$4" >&2; fail "$5: no message matching '$3'"; }
    # under make asan a sanitizer report also exits 1: it must not pass as an expected error
    ! grep -Eq 'Sanitizer|runtime error:' "$4" || { cat "$4" >&2; fail "$5: sanitizer"; }
}
gone() { ! kill -0 "$(cat "$1")" 2> /dev/null; }

# ---- scorers -----------------------------------------------------------------------
cat > count_a.py << 'EOF'
import sys, json
for line in sys.stdin:
    r = json.loads(line)["response"]
    print(json.dumps({"score": min(r.count("a"), 8) / 8}))
EOF
cat > lens.py << 'EOF'
import sys, json
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"score": len(r["response"]) + 0.5 * len(r["prompt"])}))
EOF
# fails at its answer number $1 (0-based) in the way $2 says
cat > bad.py << 'EOF'
import sys, json, os
at, how = int(sys.argv[1]), sys.argv[2]
open("bad.pid", "w").write(str(os.getpid()))
for k, line in enumerate(sys.stdin):
    if k == at:
        if how == "crash": sys.exit(3)
        if how == "garbage": print("garbage, not json"); continue
        if how == "nan": print(json.dumps({"score": float("nan")})); continue
        if how == "noscore": print(json.dumps({"value": 1})); continue
        if how == "extra": print('{"score": 1}')
    print(json.dumps({"score": json.loads(line)["response"].count("a") / 8}))
EOF
# answers twice, then hangs (sh: starts in milliseconds, so the timeout is the hang's)
cat > hang.sh << 'EOF'
echo $$ > hang.pid
n=0
while read -r l; do
    n=$((n + 1))
    [ $n = 3 ] && sleep 1000
    echo '{"score": 1}'
done
EOF

# ---- 1. the protocol through the driver -----------------------------------------------
O="$B/alignctl-obj"
for f in extproc util progress signals; do
    [ -f "$O/$f.o" ] || fail "$O/$f.o is not built (make examples)"
done
# shellcheck disable=SC2086
$CC -std=c11 -D_POSIX_C_SOURCE=200809L -g $SAN -I"$SRC/include" -I"$SRC/examples/alignctl" \
    "$SRC/tests/sh/alignctl_rl_extproc.c" "$O/extproc.o" "$O/util.o" "$O/progress.o" \
    "$O/signals.o" -o drv -L"$B" -lalign -Wl,-rpath,"$B" \
    $(pkg-config --libs jansson 2> /dev/null || echo -ljansson) -lm

./drv "python3 lens.py" 60 3 5 10 > lens.out 2> lens.err || { cat lens.err >&2; fail "driver: good scorer"; }
python3 - << 'EOF' || fail "driver: scores wrong or out of order"
rows = [l.split() for l in open("lens.out")]
assert len(rows) == 15, len(rows)
for b, i, s in rows:
    b, i = int(b), int(i)
    want = 10 + len("|%d" % i) + 0.5 * len("p%d-%d" % (b, i))
    assert abs(float(s) - want) < 1e-6, (b, i, s, want)
EOF
ok "scorer: 3 batches of 5 pairs scored in order"

t0=$(date +%s)
./drv "python3 lens.py" 120 1 100 40000 > big.out 2> big.err || { cat big.err >&2; fail "driver: big batch"; }
[ "$(wc -l < big.out)" = 100 ] || fail "driver: big batch gave $(wc -l < big.out) scores"
ok "scorer: one batch of 100 x 40 kB (4 MB, 60x a pipe buffer) without deadlock in $(($(date +%s) - t0)) s"

rc=0; ./drv "python3 bad.py 6 crash" 60 3 5 10 > /dev/null 2> e.err || rc=$?
expect $rc 1 "reward command 'python3 bad.py 6 crash' exited with status 3 before answering request 2 of 5" e.err "crash"
gone bad.pid || fail "crash: scorer still running"
rc=0; ./drv "python3 bad.py 2 garbage" 60 1 5 10 > /dev/null 2> e.err || rc=$?
expect $rc 1 "gave not JSON as answer 3 of 5 (its output line 3): 'garbage, not json'" e.err "garbage"
rc=0; ./drv "python3 bad.py 1 nan" 60 1 5 10 > /dev/null 2> e.err || rc=$?
expect $rc 1 "gave a non-finite score (NaN or infinity) as answer 2 of 5 (its output line 2): '{\"score\": NaN}'" e.err "NaN"
rc=0; ./drv "python3 bad.py 0 noscore" 60 1 5 10 > /dev/null 2> e.err || rc=$?
expect $rc 1 "gave an object without \"score\" as answer 1 of 5" e.err "no score"
rc=0; ./drv "python3 bad.py 3 extra" 60 2 5 10 0.5 > /dev/null 2> e.err || rc=$?
expect $rc 1 "reward command 'python3 bad.py 3 extra' wrote \(output nobody asked for\|an answer with no request pending\)" e.err "extra output"
rc=0; ./drv "no-such-scorer-xyz" 60 1 2 10 > /dev/null 2> e.err || rc=$?
expect $rc 1 "exited with status 127 (command not found?)" e.err "missing program"
rc=0; ./drv "sh hang.sh" 1.5 1 5 10 > /dev/null 2> e.err || rc=$?
expect $rc 1 "gave no answer for 1.5 s (--reward-timeout): 2 of 5 answers" e.err "hung scorer"
gone hang.pid || fail "timeout: hung scorer still running"
rm -f hang.pid
./drv "sh hang.sh" 600 1 5 10 > /dev/null 2> e.err & pid=$!
for _ in $(seq 600); do [ -s hang.pid ] && break; sleep 0.05; done
sleep 0.3
kill -INT $pid
rc=0; wait $pid || rc=$?
expect $rc 130 "stopped: alignctl was interrupted" e.err "SIGINT while waiting"
gone hang.pid || fail "SIGINT: scorer still running"
ok "scorer: crash, garbage, NaN, no score, extra output, missing program, timeout and SIGINT are clear errors; no child left"

# ---- 2. training ----------------------------------------------------------------------
for c in ppo grpo rloo; do
    "$A" $c --help > h.txt && grep -q "^usage: alignctl $c" h.txt || fail "alignctl $c --help"
done
"$A" help grpo > h.txt && grep -q -- '--reward-cmd CMD' h.txt || fail "alignctl help grpo"
for i in $(seq 0 15); do printf '{"prompt":"say %d","completion":" a%d b"}\n' "$i" "$i"; done > sft.jsonl
for i in $(seq 0 15); do printf '{"prompt":"say %d"}\n' "$i"; done > prompts.jsonl
"$A" init --layers 2 --heads 2 --width 32 --vocab 257 --context 64 --out base.safetensors > /dev/null
"$A" sft --model base.safetensors --tokenizer bytes --data sft.jsonl --steps 20 --batch 8 \
    --lr 3e-3 --threads 1 --quiet --out sft.safetensors 2> /dev/null || fail "sft"
G=(--policy sft.safetensors --tokenizer bytes --prompts prompts.jsonl --max-new-tokens 12
   --threads 1 --prompts-per-step 4 --group-size 4 --lr 5e-4)

# GRPO raises the mean score of a program's reward
COLUMNS=36 "$A" grpo "${G[@]}" --prompts-per-step 8 --max-new-tokens 16 \
    --reward-cmd "python3 count_a.py" --steps 30 --metrics g.jsonl --sample-every 15 \
    --out g.safetensors 2> g.err || { cat g.err >&2; fail "grpo"; }
[ -f g.safetensors ] || fail "grpo saved no policy"
python3 - << 'EOF' || { cat g.err >&2; fail "grpo: sample tables"; }
lines = open("g.err", "rb").read().decode("utf-8", "replace").split("\n")
heads = [i for i, l in enumerate(lines) if l.startswith("samples at step ")]
assert [lines[i].split()[3] for i in heads] == ["15", "30"], heads
for i in heads:   # header row + 4 responses, each cut to COLUMNS
    rows = lines[i + 1:i + 6]
    assert rows[0].split()[:3] == ["score", "prompt", "response"], rows[0]
    for r in rows:
        assert len(r) <= 36, (len(r), r)
    for r in rows[1:]:
        float(r.split()[0]); assert "say " in r, r
EOF
python3 - << 'EOF' || fail "grpo: the mean score did not rise"
import json
L = [json.loads(l) for l in open("g.jsonl")]
assert len(L) == 30 and [x["step"] for x in L] == list(range(1, 31))
for k in ("objective/scores", "objective/kl", "loss", "learning_rate", "grad_norm", "time"):
    assert k in L[-1], k
s = [x["objective/scores"] for x in L]
a, b = sum(s[:5]) / 5, sum(s[-5:]) / 5
print("ok - grpo: mean score (count of 'a', max 1) %.3f over the first 5 steps -> %.3f over the last 5" % (a, b))
assert b > a + 0.05, (a, b)
EOF

# RLOO runs and logs
"$A" rloo "${G[@]}" --reward-cmd "python3 count_a.py" --steps 4 --metrics r.jsonl \
    --out r.safetensors 2> r.err || { cat r.err >&2; fail "rloo"; }
[ "$(wc -l < r.jsonl)" = 4 ] && grep -q '"objective/rlhf_reward"' r.jsonl || fail "rloo metrics"
ok "rloo: 4 steps with metrics"

# PPO against a scalar-head reward model
"$A" init --layers 1 --heads 2 --width 32 --vocab 257 --context 64 --scalar-head --seed 7 \
    --out rm.safetensors > /dev/null
"$A" ppo --policy sft.safetensors --tokenizer bytes --prompts prompts.jsonl --reward-model rm.safetensors \
    --rollouts 8 --ppo-epochs 2 --max-new-tokens 12 --threads 1 --lr 2e-4 --steps 6 \
    --ptx-data sft.jsonl --ptx-batch 4 --metrics p.jsonl --out p.safetensors 2> p.err ||
    { cat p.err >&2; fail "ppo"; }
python3 - << 'EOF' || fail "ppo metrics"
import json
L = [json.loads(l) for l in open("p.jsonl")]
assert len(L) == 6
for k in ("objective/scores", "objective/kl", "loss/value_avg", "policy/clipfrac_avg", "kl_coef",
          "loss/ptx"):
    assert k in L[-1], k
EOF
"$A" generate --model p.safetensors --tokenizer bytes --prompt "say 3" --max-new-tokens 4 \
    > /dev/null 2>&1 || fail "the PPO policy does not load for generate"
ok "ppo --reward-model --ptx-data: 6 steps, value, policy and ptx metrics; the policy loads"

# a resumed run ends where an uninterrupted one does (bitwise)
"$A" grpo "${G[@]}" --reward-cmd "python3 count_a.py" --steps 6 --quiet --out full.safetensors 2> /dev/null ||
    fail "grpo 6 steps"
"$A" grpo "${G[@]}" --reward-cmd "python3 count_a.py" --steps 6 --quiet --out half.safetensors \
    --metrics h.jsonl 2> /dev/null &
pid=$!
# (up to 60 s: a loaded CI machine starts the run and its Python scorer slowly)
for _ in $(seq 3000); do
    [ -f h.jsonl ] && [ "$(wc -l < h.jsonl)" -ge 3 ] && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.02
done
kill -INT $pid 2> /dev/null || true
rc=0; wait $pid || rc=$?
if [ "$rc" = 130 ]; then
    n=$(readlink half.ckpt/latest 2> /dev/null | sed 's/^step-//') || true
    [ -n "$n" ] || fail "grpo interrupted (exit 130, $(wc -l < h.jsonl 2> /dev/null || echo 0) metrics lines) left no half.ckpt/latest"
    "$A" grpo "${G[@]}" --reward-cmd "python3 count_a.py" --steps 6 --quiet --out half.safetensors \
        --metrics h.jsonl --resume half.ckpt 2> hr.err || { cat hr.err >&2; fail "resume after Ctrl-C"; }
    cmp -s full.safetensors half.safetensors || fail "interrupted at step $n and resumed: policy differs"
    [ "$(tail -n 1 h.jsonl | grep -o '"step":[0-9]*')" = '"step":6' ] || fail "resumed metrics"
    ok "Ctrl-C at step $n: exit 130, checkpoint; the resumed run is bitwise the uninterrupted one"
else
    [ "$rc" = 0 ] || fail "grpo interrupted: exit $rc"
    echo "ok - (the run finished before the signal; Ctrl-C not exercised here)"
fi

# a process-group Ctrl-C (the terminal's) leaves the scorer alone until the checkpoint is saved
rm -rf k.ckpt k.jsonl
set -m
"$A" grpo "${G[@]}" --reward-cmd "python3 count_a.py" --steps 100000 --metrics k.jsonl \
    --out k.safetensors 2> k.err &
pid=$!
set +m
for _ in $(seq 600); do [ -s k.jsonl ] && break; kill -0 $pid 2> /dev/null || break; sleep 0.05; done
kill -INT -- -$pid
rc=0; wait $pid || rc=$?
expect $rc 130 "checkpoint saved in k.ckpt/step-" k.err "Ctrl-C to the process group"
ok "Ctrl-C to the process group: exit 130 with a checkpoint"

# scorer failures mid-run: exit 1, a clear message, the last checkpoint resumes
for how in crash garbage nan; do
    rm -rf f.ckpt bad.pid f.safetensors
    rc=0
    "$A" grpo "${G[@]}" --reward-cmd "python3 bad.py 40 $how" --steps 5 --save-every 1 \
        --out f.safetensors 2> f.err || rc=$?
    case $how in
    crash) pat="reward command 'python3 bad.py 40 crash' exited with status 3 before answering request 9 of 16" ;;
    garbage) pat="reward command 'python3 bad.py 40 garbage' gave not JSON as answer 9 of 16 (its output line 41): 'garbage, not json'" ;;
    nan) pat="gave a non-finite score (NaN or infinity) as answer 9 of 16 (its output line 41)" ;;
    esac
    expect $rc 1 "$pat" f.err "scorer $how mid-run"
    grep -q "the last checkpoint, f.ckpt/step-2 (step 2), is unchanged" f.err || { cat f.err >&2; fail "$how: checkpoint note"; }
    gone bad.pid || fail "$how: scorer still running"
    [ ! -f f.safetensors ] || fail "$how: a policy was saved after the failure"
    [ $how = crash ] || continue
    "$A" grpo "${G[@]}" --reward-cmd "python3 count_a.py" --steps 5 --save-every 1 --quiet \
        --out f.safetensors --resume f.ckpt 2> fr.err || { cat fr.err >&2; fail "$how: resume"; }
    grep -q "resumed from 'f.ckpt/latest' at step 2" fr.err || { cat fr.err >&2; fail "$how: resume step"; }
    [ -f f.safetensors ] || fail "$how: the resumed run saved no policy"
done
ok "scorer crash / garbage / NaN mid-run: exit 1 naming the command and line; the step-2 checkpoint is kept and resumes"

# usage errors
rc=0; "$A" grpo "${G[@]}" --out x.safetensors 2> u.err || rc=$?
expect $rc 2 "give the reward as --reward-model" u.err "no reward"
rc=0; "$A" ppo --policy sft.safetensors --tokenizer bytes --prompts prompts.jsonl --reward-cmd x \
    --reward-model y --out x.safetensors 2> u.err || rc=$?
expect $rc 2 "exactly one" u.err "two rewards"
rc=0; "$A" grpo "${G[@]}" --reward-model sft.safetensors --steps 1 --quiet --out x.safetensors 2> u.err || rc=$?
expect $rc 1 "cannot be a reward model (it needs a scalar head" u.err "reward model without a head"
ok "usage and setup errors"
