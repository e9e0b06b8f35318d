#!/usr/bin/env bash
# alignctl end to end: every subcommand on tiny inputs, with checks of what
# they print and write, the error paths, resume and Ctrl-C.
# Env: BUILD (build folder, default build). Runs in $BUILD/tmp/alignctl.XXXXXX.
set -euo pipefail

BUILD=${BUILD:-build}
FIX="$(cd "$(dirname "$0")/../fixtures" && pwd)"
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

# ---- help ------------------------------------------------------------------
"$A" --help | grep -q '^usage: alignctl COMMAND' || fail "alignctl --help"
for c in init info tokenize generate sft eval plot; do
    "$A" "$c" --help | grep -q "^usage: alignctl $c" || fail "alignctl $c --help"
done
"$A" help sft | grep -q -- '--resume DIR' || fail "alignctl help sft"
ok "help"

# ---- tokenize ----------------------------------------------------------------
[ "$(printf 'hi' | "$A" tokenize --tokenizer bytes)" = "[104,105]" ] || fail "tokenize hi"
[ "$("$A" tokenize --tokenizer bytes --text 'hi')" = "[104,105]" ] || fail "tokenize --text"
[ "$(printf '[104,105]' | "$A" tokenize --tokenizer bytes --decode)" = "hi" ] || fail "decode hi"
[ "$(printf 'a<|endoftext|>' | "$A" tokenize --tokenizer bytes --special)" = "[97,256]" ] ||
    fail "tokenize --special"
[ "$(printf 'a<|endoftext|>' | "$A" tokenize --tokenizer bytes | tr ',' '\n' | wc -l)" = 14 ] ||
    fail "special tokens must be plain text without --special"
printf 'h\xc3\xa9llo, world\n' > utf8.txt
"$A" tokenize --tokenizer bytes < utf8.txt | "$A" tokenize --tokenizer bytes --decode > back.txt
cmp utf8.txt back.txt || fail "byte tokenizer round trip"
if [ -f "$FIX/tiny_tokenizer.json" ]; then
    # hand-made BPE: merges "a b", "ab c", "Ġ a", "c d"; <|endoftext|> = 9
    printf 'abcd abc' > bpe.txt
    "$A" tokenize --tokenizer "$FIX/tiny_tokenizer.json" < bpe.txt > bpe.ids
    [ "$(cat bpe.ids)" = "[6,3,4,6]" ] || fail "BPE ids: $(cat bpe.ids)"
    [ "$("$A" tokenize --tokenizer "$FIX/tiny_tokenizer.json" --special --text 'a<|endoftext|>')" = \
      "[0,9]" ] || fail "BPE --special"
    "$A" tokenize --tokenizer "$FIX/tiny_tokenizer.json" --decode < bpe.ids > bpe.back
    cmp bpe.txt bpe.back || fail "BPE round trip"
fi
ok "tokenize"

# ---- init + info -----------------------------------------------------------------
L=2 H=2 C=32 V=257 TT=64
"$A" init --arch gpt2 --layers $L --heads $H --width $C --vocab $V --context $TT --seed 7 \
    --out small.safetensors > init.txt
want=$((V * C + TT * C + L * (12 * C * C + 13 * C) + 2 * C))   # GPT-2, tied LM head
grep -q "^parameters: $want\$" init.txt || fail "init parameter count (want $want): $(cat init.txt)"
"$A" info small.safetensors > info.txt
grep -q "^parameters: *$want\$" info.txt || fail "info parameter count (want $want)"
grep -q "^layers: *$L\$" info.txt || fail "info layers"
grep -q "^vocab: *$V\$" info.txt || fail "info vocab"
grep -q "^tensors: *$((4 + 12 * L))\$" info.txt || fail "info tensor count"
grep -Eq '^  wte\.weight +F32 +\[257, 32\]$' info.txt || fail "info wte shape"
grep -Eq "^size: *$(stat -c %s small.safetensors) bytes" info.txt || fail "info file size"
"$A" info --json small.safetensors > info.json
/usr/bin/python3 - "$want" <<'EOF' || fail "info --json"
import json, sys
d = json.load(open("info.json"))
assert d["parameters"] == int(sys.argv[1]), d["parameters"]
assert d["n_layer"] == 2 and d["vocab_size"] == 257 and d["scalar_head"] is False
shapes = {t["name"]: t["shape"] for t in d["tensors"]}
assert shapes["wpe.weight"] == [64, 32], shapes
EOF
expect 1 "exists; use --force" "$A" init --layers 1 --out small.safetensors
"$A" init --preset nano --vocab 257 --force --out nano.safetensors > /dev/null
"$A" info nano.safetensors | grep -q '^width: *128$' || fail "preset nano"
ok "init, info"

# ---- a tiny demo dataset ------------------------------------------------------------
for i in $(seq 0 63); do
    a=$((i % 10)) b=$((i % 7))
    printf '{"prompt":"add %d %d =","completion":" %d."}\n' $a $b $((a + b))
done > train.jsonl
head -n 16 train.jsonl > heldout.jsonl
"$A" init --layers 2 --heads 2 --width 48 --vocab 257 --context 64 --out base.safetensors >/dev/null
COMMON=(--tokenizer bytes --data train.jsonl --lr 3e-3 --batch 8 --threads 1 --seed 5)

# ---- sft: the loss falls ---------------------------------------------------------
"$A" sft --model base.safetensors "${COMMON[@]}" --steps 30 --eval-data heldout.jsonl \
    --eval-every 10 --metrics m30.jsonl --out sft30.safetensors 2> sft30.err ||
    { cat sft30.err >&2; fail "sft 30 steps"; }
[ "$(wc -l < m30.jsonl)" = 30 ] || fail "metrics: one line per step"
grep -q 'BLAS: ' sft30.err || fail "sft prints the BLAS in use"
grep -q '^step 1/30 loss' sft30.err || fail "plain progress lines"
[ -f sft30.safetensors ] || fail "sft saved no model"
/usr/bin/python3 <<'EOF' || fail "loss did not fall / metrics fields"
import json
rows = [json.loads(l) for l in open("m30.jsonl")]
assert [r["step"] for r in rows] == list(range(1, 31))
for k in ("loss", "lr", "grad_norm", "tokens_per_sec", "accuracy", "time"):
    assert k in rows[0], k
evals = [r["step"] for r in rows if "eval_loss" in r]
assert evals == [10, 20, 30], evals
first, last = rows[0]["loss"], rows[-1]["loss"]
assert last < 0.7 * first, (first, last)
EOF
ok "sft: loss falls, metrics"

# --epochs: 64 records in micro-batches of 8 make 8 steps per epoch
"$A" sft --model base.safetensors "${COMMON[@]}" --epochs 1 --metrics me.jsonl --quiet \
    --out ep.safetensors 2> /dev/null || fail "sft --epochs"
[ "$(wc -l < me.jsonl)" = 8 ] || fail "--epochs 1: $(wc -l < me.jsonl) steps, expected 8"
ok "sft --epochs"

# ---- resume: 10 + 10 steps == 20 steps ---------------------------------------------------
"$A" sft --model base.safetensors "${COMMON[@]}" --steps 10 --save-every 10 \
    --metrics mr.jsonl --out r.safetensors 2> /dev/null || fail "sft first half"
[ -f r.ckpt/step-10/trainer.json ] || [ -d r.ckpt/step-10 ] || fail "no checkpoint r.ckpt/step-10"
[ -L r.ckpt/latest ] || fail "no r.ckpt/latest"
"$A" sft --model base.safetensors "${COMMON[@]}" --steps 20 --save-every 10 \
    --metrics mr.jsonl --out r.safetensors --resume r.ckpt/latest 2> resume.err ||
    { cat resume.err >&2; fail "sft --resume"; }
grep -q "resumed from 'r.ckpt/latest' at step 10" resume.err || fail "resume message"
"$A" sft --model base.safetensors "${COMMON[@]}" --steps 20 --metrics ms.jsonl \
    --out s.safetensors 2> /dev/null || fail "sft 20 straight"
[ "$(grep -o '"step":[0-9]*' mr.jsonl | cut -d: -f2 | tr '\n' ' ')" = \
  "$(seq 1 20 | tr '\n' ' ')" ] || fail "resumed step numbering: $(grep -o '"step":[0-9]*' mr.jsonl)"
diff <(grep -o '"loss":[^,]*' mr.jsonl) <(grep -o '"loss":[^,]*' ms.jsonl) > /dev/null ||
    fail "resumed losses differ from an uninterrupted run"
cmp r.safetensors s.safetensors || fail "resumed model is not bitwise the uninterrupted one"
ok "resume continues bitwise"

# ---- eval ---------------------------------------------------------------------------
"$A" eval --model base.safetensors --tokenizer bytes --data heldout.jsonl --json \
    > e0.json 2> /dev/null || fail "eval base"
"$A" eval --model sft30.safetensors --tokenizer bytes --data heldout.jsonl > e1.txt 2> /dev/null ||
    fail "eval trained"
grep -Eq '^loss +[0-9.]+$' e1.txt || fail "eval prints the loss: $(cat e1.txt)"
grep -Eq '^accuracy +[0-9.]+$' e1.txt || fail "eval prints the accuracy"
l0=$(/usr/bin/python3 -c 'import json; print(json.load(open("e0.json"))["loss"])')
l1=$(awk '/^loss/ {print $2}' e1.txt)
awk -v a="$l1" -v b="$l0" 'BEGIN { exit !(a < b) }' || fail "eval: trained loss $l1 >= base $l0"
ok "eval"

# ---- generate ------------------------------------------------------------------------
"$A" generate --model sft30.safetensors --tokenizer bytes --prompt "add 3 4 =" \
    --max-new-tokens 6 --temperature 0 > g.txt 2> /dev/null || fail "generate"
[ -s g.txt ] || fail "generate printed nothing"
printf '{"prompt":"add 1 2 ="}\n{"prompt":"add 5 5 ="}\n' > prompts.jsonl
for run in 1 2; do
    "$A" generate --model sft30.safetensors --tokenizer bytes --prompts prompts.jsonl \
        --max-new-tokens 5 --temperature 1 --top-k 40 --top-p 0.9 --seed 3 --stop '!' --json \
        > gen$run.jsonl 2> /dev/null || fail "generate --json"
done
cmp gen1.jsonl gen2.jsonl || fail "generate is not reproducible with --seed"
/usr/bin/python3 <<'EOF' || fail "generate --json records"
import json
rows = [json.loads(l) for l in open("gen1.jsonl")]
assert [r["prompt"] for r in rows] == ["add 1 2 =", "add 5 5 ="]
for r in rows:
    assert isinstance(r["text"], str)
    assert 1 <= len(r["tokens"]) <= 5 and len(r["logprobs"]) == len(r["tokens"])
    assert all(lp <= 0 for lp in r["logprobs"])
    assert r["finish_reason"] in ("length", "eot", "stop")
EOF
ok "generate"

# ---- plot ------------------------------------------------------------------------------
"$A" plot m30.jsonl --out curves.svg 2> /dev/null || fail "plot"
xmllint --noout curves.svg || fail "SVG is not well-formed XML"
nseries=$(grep -o '"[A-Za-z_]*":-\{0,1\}[0-9]' m30.jsonl | cut -d'"' -f2 | sort -u | grep -vxc step)
npaths=$(grep -o '<path' curves.svg | wc -l)
[ "$npaths" = "$nseries" ] || fail "plot: $npaths <path> elements for $nseries series"
! grep -Eq 'href|url\(' curves.svg || fail "SVG refers to external resources"
grep -q '>loss</text>' curves.svg || fail "SVG lacks the loss label"
"$A" plot m30.jsonl --series loss,eval_loss --out two.svg 2> /dev/null || fail "plot --series"
[ "$(grep -o '<path' two.svg | wc -l)" = 2 ] || fail "plot --series: two paths"
ok "plot"

# ---- bad arguments and bad files --------------------------------------------------------
expect 2 "unknown option '--bogus'" "$A" sft --bogus 1
expect 2 "unknown command 'frob'" "$A" frob
expect 2 "option --steps needs a value" "$A" sft --steps
expect 2 "--steps expects an integer" "$A" sft --steps many
expect 2 "--model is required" "$A" eval --tokenizer bytes --data train.jsonl
expect 2 "not both" "$A" sft --model base.safetensors "${COMMON[@]}" --out x.safetensors \
    --steps 3 --epochs 1
expect 2 "not divisible" "$A" init --width 30 --heads 4 --out x.safetensors
expect 2 "give --prompt" "$A" generate --model base.safetensors --tokenizer bytes
expect 1 "model 'missing.safetensors' not found" "$A" sft --model missing.safetensors \
    --tokenizer bytes --data train.jsonl --out x.safetensors
expect 1 "data file 'nope.jsonl' not found" "$A" eval --model base.safetensors \
    --tokenizer bytes --data nope.jsonl
expect 1 "tokenizer 'nope.json' not found" "$A" tokenize --tokenizer nope.json
printf '{"prompt":"a","completion":"b"}\n{"prompt": oops}\n' > bad.jsonl
expect 1 "bad.jsonl:2" "$A" sft --model base.safetensors --tokenizer bytes --data bad.jsonl \
    --out x.safetensors
expect 1 "bad.jsonl:2" "$A" generate --model base.safetensors --tokenizer bytes --prompts bad.jsonl
expect 1 "bad.jsonl:2: not a JSON object" "$A" plot bad.jsonl --out x.svg
head -c 100 base.safetensors > truncated.safetensors
expect 1 "not a safetensors file" "$A" info truncated.safetensors
expect 1 "cannot load model 'truncated.safetensors'.*ALIGN_E" "$A" eval \
    --model truncated.safetensors --tokenizer bytes --data train.jsonl
cp base.safetensors corrupt.safetensors
size=$(stat -c %s corrupt.safetensors)
printf 'garbage!garbage!' | dd of=corrupt.safetensors bs=1 seek=$((size - 64)) conv=notrunc 2> /dev/null
expect 1 "cannot load model 'corrupt.safetensors'.*ALIGN_EFORMAT" "$A" info corrupt.safetensors
expect 1 "not a JSON array" sh -c "printf '[1,2' | '$A' tokenize --tokenizer bytes --decode"
expect 1 "not a token id" sh -c "printf '[1,999]' | '$A' tokenize --tokenizer bytes --decode"
"$A" init --layers 1 --heads 1 --width 8 --vocab 100 --context 16 --out v100.safetensors >/dev/null
expect 1 "vocabulary has only 100" "$A" eval --model v100.safetensors --tokenizer bytes \
    --data train.jsonl
expect 1 "checkpoint folder 'nowhere' not found" "$A" sft --model base.safetensors \
    "${COMMON[@]}" --out x.safetensors --resume nowhere
ok "errors"

# ---- OpenBLAS kernel re-exec (only observable on an AVX-512 CPU with Debian's OpenBLAS) ----
env -u OPENBLAS_CORETYPE "$A" eval --model base.safetensors --tokenizer bytes \
    --data heldout.jsonl > /dev/null 2> reexec.err || fail "eval for re-exec"
if grep -q 're-running with OPENBLAS_CORETYPE=SkylakeX' reexec.err; then
    [ "$(grep -c 're-running' reexec.err)" = 1 ] || fail "re-exec more than once"
    grep -q 'BLAS: .*SkylakeX kernels' reexec.err || fail "re-exec did not change the kernel"
    env -u OPENBLAS_CORETYPE ALIGNCTL_NO_REEXEC=1 "$A" eval --model base.safetensors \
        --tokenizer bytes --data heldout.jsonl > /dev/null 2> noreexec.err
    ! grep -q 're-running' noreexec.err || fail "ALIGNCTL_NO_REEXEC ignored"
    grep -q 'OPENBLAS_CORETYPE' noreexec.err || fail "slow-kernel warning not shown"
    ok "OpenBLAS re-exec"
else
    ok "OpenBLAS re-exec not needed here # SKIP"
fi

# ---- Ctrl-C: exit 130, checkpoint, resume ---------------------------------------------------
"$A" sft --model base.safetensors "${COMMON[@]}" --steps 1000000 --lr 1e-3 --metrics mi.jsonl \
    --out i.safetensors 2> int.err &
pid=$!
for _ in $(seq 600); do
    [ -s mi.jsonl ] && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.1
done
[ -s mi.jsonl ] || { cat int.err >&2; fail "sft logged no step"; }
kill -INT $pid
rc=0
wait $pid || rc=$?
[ "$rc" = 130 ] || { cat int.err >&2; fail "interrupted sft exited $rc, expected 130"; }
grep -q -- '--resume i.ckpt/step-' int.err || { cat int.err >&2; fail "no resume hint"; }
n=$(readlink i.ckpt/latest | sed 's/^step-//')
[ -n "$n" ] && [ -d "i.ckpt/step-$n" ] || fail "no checkpoint after Ctrl-C"
[ "$(tail -n 1 mi.jsonl | grep -o '"step":[0-9]*' | cut -d: -f2)" = "$n" ] ||
    fail "checkpoint step $n is not the last logged step"
"$A" sft --model base.safetensors "${COMMON[@]}" --steps $((n + 3)) --lr 1e-3 --metrics mi.jsonl \
    --out i.safetensors --resume "i.ckpt/step-$n" 2> iresume.err ||
    { cat int.err iresume.err >&2; fail "resume after Ctrl-C"; }
[ "$(tail -n 3 mi.jsonl | grep -o '"step":[0-9]*' | cut -d: -f2 | tr '\n' ' ')" = \
  "$((n + 1)) $((n + 2)) $((n + 3)) " ] || fail "steps after Ctrl-C resume: $(tail -n 3 mi.jsonl)"
[ -f i.safetensors ] || fail "no model after resume"
ok "Ctrl-C: exit 130, checkpoint, resume"

echo "alignctl.sh: all passed"
