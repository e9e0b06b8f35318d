#!/usr/bin/env bash
# alignctl collect and alignctl judge end to end on tiny untrained models:
# rankings from a program (--rank-cmd) and from a judge, with provenance; a
# ranking program that crashes or answers nonsense is a clear error and what
# was collected is still written; the judge's preferences on pairs.
# Env: BUILD (build folder, default build).
set -euo pipefail

BUILD=${BUILD:-build}
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

# run CODE cmd...: exit status CODE; stderr in err.txt
run() {
    local code=$1 rc=0
    shift
    "$@" >out.txt 2>err.txt </dev/null || rc=$?
    [ "$rc" = "$code" ] || { cat err.txt >&2; fail "'$*' exited $rc, expected $code"; }
    ! grep -Eq 'Sanitizer|runtime error:' err.txt || { cat err.txt >&2; fail "'$*': sanitizer"; }
}

"$A" init --out p.safetensors --layers 1 --heads 2 --width 32 --vocab 257 --context 64 >/dev/null
"$A" init --out judge.safetensors --layers 1 --heads 2 --width 32 --vocab 257 --context 512 --seed 5 >/dev/null
printf '{"prompt":"1+1"}\n{"prompt":"2+2","completion":"4"}\n{"prompt":"hello"}\n' > prompts.jsonl

"$A" collect --help | grep -q '^usage: alignctl collect' || fail "collect --help"
"$A" judge --help | grep -q '^usage: alignctl judge' || fail "judge --help"

# a ranking program in shell: the first response is best, the others tie
cat > rank.sh <<'SH'
#!/bin/sh
while IFS= read -r line; do echo '{"ranking": [0, 1, 1]}'; done
SH
chmod +x rank.sh
COMMON=(--policy p.safetensors --tokenizer bytes --prompts prompts.jsonl -k 3 --max-new-tokens 6 --quiet)
run 0 "$A" collect "${COMMON[@]}" --out r.jsonl --rank-cmd ./rank.sh --source human --annotator alice
[ "$(wc -l < r.jsonl)" = 3 ] || fail "collect: 3 records expected"
grep -q '"ranking":\[0,1,1\]' r.jsonl || fail "collect: ranking"
grep -q '"source":"human"' r.jsonl || fail "collect: source"
grep -q '"annotator":"alice"' r.jsonl || fail "collect: annotator"
grep -q '"timestamp":[1-9]' r.jsonl || fail "collect: timestamp"
# the records load back (as the data of a judge run)
run 0 "$A" judge --model judge.safetensors --tokenizer bytes --data r.jsonl
[ "$(wc -l < out.txt)" = 3 ] || fail "judge on rankings"
grep -q '"win_prob"' out.txt || fail "judge: win_prob"
grep -q 'agreement with the data' err.txt || fail "judge: agreement line"
# deterministic for a seed
run 0 "$A" collect "${COMMON[@]}" --out r2.jsonl --rank-cmd ./rank.sh --source human --annotator alice --seed 1234
diff <(sed 's/"timestamp":[0-9]*//' r.jsonl) <(sed 's/"timestamp":[0-9]*//' r2.jsonl) >/dev/null || fail "collect: not deterministic"
ok "collect --rank-cmd"

# a ranker that answers once, then crashes: exit 1, a clear message, one record kept
cat > crash.sh <<'SH'
#!/bin/sh
read -r line; echo '{"ranking": [2, 1, 0]}'; read -r line; exit 3
SH
chmod +x crash.sh
run 1 "$A" collect "${COMMON[@]}" --out c.jsonl --rank-cmd ./crash.sh
grep -q "gave no answer to request 2 (it exited with status 3)" err.txt || { cat err.txt >&2; fail "crash message"; }
grep -q "ALIGN_ECALLBACK" err.txt || fail "crash: error code"
[ "$(wc -l < c.jsonl)" = 1 ] || fail "crash: the collected record is kept"
grep -q '"ranking":\[2,1,0\]' c.jsonl || fail "crash: kept record"
# killed by a signal
printf '#!/bin/sh\nkill -9 $$\n' > kill.sh && chmod +x kill.sh
run 1 "$A" collect "${COMMON[@]}" --out k.jsonl --rank-cmd "exec ./kill.sh"
grep -q "killed by signal 9" err.txt || { cat err.txt >&2; fail "killed ranker message"; }
[ ! -e k.jsonl ] || fail "nothing collected: no file"
# malformed answers
printf '#!/bin/sh\nwhile read -r l; do echo "[0,1,2]"; done\n' > bad.sh && chmod +x bad.sh
run 1 "$A" collect "${COMMON[@]}" --out b.jsonl --rank-cmd ./bad.sh
grep -q 'answered request 1 with .\[0,1,2\].; want {"ranking": \[3 integers in 0..2\]}' err.txt || { cat err.txt >&2; fail "malformed"; }
printf '#!/bin/sh\nwhile read -r l; do echo "{\\"ranking\\": [0, 7, 1]}"; done\n' > range.sh && chmod +x range.sh
run 1 "$A" collect "${COMMON[@]}" --out b.jsonl --rank-cmd ./range.sh
grep -q 'want {"ranking"' err.txt || { cat err.txt >&2; fail "out of range"; }
ok "collect --rank-cmd failures (crash, signal, malformed)"

# the judge as ranker: source ai, annotator = the judge's name
printf 'Be brief.\nBe exact.\n' > constitution.txt
run 0 "$A" collect "${COMMON[@]}" --out j.jsonl --judge judge.safetensors --constitution constitution.txt --name tiny-judge
[ "$(wc -l < j.jsonl)" = 3 ] || fail "collect --judge: 3 records"
grep -q '"source":"ai"' j.jsonl || fail "collect --judge: source"
grep -q '"annotator":"tiny-judge"' j.jsonl || fail "collect --judge: annotator"
ok "collect --judge"

# judge on pairs: p_chosen, and swapping chosen and rejected gives 1 - p
printf '{"prompt":"2+2","chosen":"4","rejected":"5"}\n{"prompt":"2+2","chosen":"5","rejected":"4"}\n' > pairs.jsonl
run 0 "$A" judge --model judge.safetensors --tokenizer bytes --data pairs.jsonl --constitution constitution.txt
python3 - out.txt <<'PY' || fail "judge: swapped pair"
import json, sys
a, b = [json.loads(l)["p_chosen"] for l in open(sys.argv[1])]
assert abs(a + b - 1) < 1e-6, (a, b)
PY
ok "judge"

# usage errors
run 2 "$A" collect --policy p.safetensors --tokenizer bytes --prompts prompts.jsonl --out x.jsonl
grep -q "give one ranker" err.txt || fail "collect without a ranker"
run 2 "$A" collect "${COMMON[@]}" --out x.jsonl --rank-cmd ./rank.sh --constitution constitution.txt
run 1 "$A" judge --model judge.safetensors --tokenizer bytes --data pairs.jsonl --template /nonexistent
ok "usage errors"
