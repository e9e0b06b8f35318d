#!/usr/bin/env bash
# alignctl init --arch llama (grouped-query attention, Hugging Face folders,
# Qwen2-style q/k/v biases) end to end through info, sft and generate; the
# refusals of invalid shapes; and --compute fp32|bf16 on the training and
# generation commands (bf16 must work where the library says it is available,
# and fail with the reason where it is not).
# Env: BUILD (build folder, default build). Runs in $BUILD/tmp/alignctl_init_arch.XXXXXX.
set -euo pipefail

BUILD=${BUILD:-build}
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

# ---- init --arch llama: a file -----------------------------------------------
"$A" init --arch llama --layers 2 --heads 4 --kv-heads 2 --width 32 --intermediate 64 \
    --vocab 257 --context 64 --rope-theta 50000 --norm-eps 1e-5 --seed 7 \
    --out llama.safetensors >init.out
grep -q '^initialised llama: layers 2, heads 4, kv heads 2, width 32, mlp width 64' init.out \
    || { cat init.out >&2; fail "init --arch llama summary"; }
"$A" info llama.safetensors >info.txt
grep -Eq '^arch: +llama$' info.txt || fail "info: arch llama"
grep -Eq '^kv heads: +2$' info.txt || fail "info: kv heads 2"
grep -Eq '^heads: +4$' info.txt || fail "info: heads 4"
grep -Eq '^mlp width: +64$' info.txt || fail "info: mlp width 64"
grep -Eq '^rope theta: +50000$' info.txt || fail "info: rope theta"
grep -Eq '^norm eps: +1e-05$' info.txt || fail "info: norm eps"
grep -Eq '^untied head: +no$' info.txt || fail "info: tied head by default"
grep -Eq 'model.layers.1.self_attn.k_proj.weight +F32 +\[16, 32\]' info.txt \
    || fail "info: k_proj has kv_heads x head size rows"
"$A" info --json llama.safetensors | grep -q '"n_kv_head": *2' || fail "info --json n_kv_head"
# the same seed gives the same file
"$A" init --arch llama --layers 2 --heads 4 --kv-heads 2 --width 32 --intermediate 64 \
    --vocab 257 --context 64 --rope-theta 50000 --norm-eps 1e-5 --seed 7 \
    --out again.safetensors >/dev/null
cmp -s llama.safetensors again.safetensors || fail "init --arch llama is not reproducible"
ok "init --arch llama (GQA 4/2) and info"

# ---- a Hugging Face folder, Qwen2-style, untied ---------------------------------
"$A" init --arch llama --layers 1 --heads 2 --width 16 --vocab 257 --context 32 \
    --qkv-bias --untied-head --out hf/ >/dev/null
[ -f hf/model.safetensors ] && [ -f hf/config.json ] || fail "init --out FOLDER/: files"
grep -q 'Qwen2ForCausalLM' hf/config.json || fail "config.json names Qwen2ForCausalLM"
"$A" info hf >info.txt
grep -Eq '^qkv bias: +yes$' info.txt || fail "info: qkv bias"
grep -Eq '^untied head: +yes$' info.txt || fail "info: untied head"
grep -q 'lm_head.weight' info.txt || fail "info: lm_head.weight"
ok "init --arch llama --out FOLDER/ (Hugging Face folder)"

# the SmolLM2 preset implies --arch llama (one layer and a byte vocabulary keep it small)
"$A" init --preset smollm2-135m --layers 1 --vocab 257 --out smol.safetensors >/dev/null
"$A" info smol.safetensors >info.txt
for want in 'arch: +llama' 'heads: +9' 'kv heads: +3' 'width: +576' 'mlp width: +1536' \
            'rope theta: +100000' 'norm eps: +1e-05' 'untied head: +no' 'context: +2048'; do
    grep -Eq "^$want\$" info.txt || fail "preset smollm2-135m: no '$want'"
done
ok "preset smollm2-135m"

# ---- refusals -------------------------------------------------------------------
for o in "--kv-heads 2" "--intermediate 64" "--rope-theta 1e5" "--norm-eps 1e-5" \
         "--untied-head" "--qkv-bias"; do
    # shellcheck disable=SC2086
    expect 2 "${o%% *} is a Llama-family option" "$A" init --out g.safetensors $o
    [ ! -e g.safetensors ] || fail "GPT-2 with $o wrote a file"
done
expect 2 "--qkv-bias is a Llama-family option" "$A" init --arch gpt2 --out g.safetensors --qkv-bias
expect 1 'n_kv_head 3 must divide n_head 4' \
    "$A" init --arch llama --heads 4 --kv-heads 3 --width 32 --out bad.safetensors
expect 1 'head size 3 .*must be even' \
    "$A" init --arch llama --heads 4 --width 12 --out bad.safetensors
expect 1 'rope_theta 0.5 must be' \
    "$A" init --arch llama --rope-theta 0.5 --out bad.safetensors
[ ! -e bad.safetensors ] || fail "a refused init wrote a file"
expect 2 "unknown architecture 'gpt3'" "$A" init --arch gpt3 --out bad.safetensors
expect 2 'smollm2-135m is a Llama-family model' \
    "$A" init --arch gpt2 --preset smollm2-135m --out bad.safetensors
expect 2 'not divisible' "$A" init --arch llama --heads 3 --width 32 --out bad.safetensors
ok "invalid shapes and GPT-2 with Llama options are refused"

# ---- sft on the Llama model -------------------------------------------------------
for i in 1 2 3 4 5 6 7 8; do
    printf '{"prompt": "Q: what is %s?\\nA:", "completion": " it is %s."}\n' "$i" "$i"
done >sft.jsonl
"$A" sft --model llama.safetensors --tokenizer bytes --data sft.jsonl --steps 8 --lr 3e-3 \
    --threads 1 --metrics m.jsonl --out sft.safetensors 2>sft.err || { cat sft.err >&2; fail "sft"; }
grep -q 'compute: fp32' sft.err || fail "sft startup line names the compute mode"
first=$(head -1 m.jsonl | sed 's/.*"loss":\([^,]*\),.*/\1/')
last=$(grep '"step":8,' m.jsonl | sed 's/.*"loss":\([^,]*\),.*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.1) }' \
    || fail "sft loss did not fall ($first -> $last)"
"$A" info sft.safetensors >info.txt
grep -Eq '^arch: +llama$' info.txt && grep -Eq '^kv heads: +2$' info.txt \
    || fail "the trained model does not load back as the same Llama"
"$A" generate --model sft.safetensors --tokenizer bytes --prompt 'Q: what is 3?' \
    --max-new-tokens 4 --temperature 0 >gen.txt 2>gen.err || { cat gen.err >&2; fail "generate"; }
# the Hugging Face folder trains too
"$A" sft --model hf --tokenizer bytes --data sft.jsonl --steps 2 --threads 1 --quiet \
    --out hf2/ 2>sft.err || { cat sft.err >&2; fail "sft from a folder"; }
grep -q 'Qwen2ForCausalLM' hf2/config.json || fail "sft --out FOLDER/ keeps the family"
ok "sft on a Llama model: loss $first -> $last; the result loads and generates"

# ---- --compute ------------------------------------------------------------------
expect 2 "--compute expects fp32 or bf16, got 'fp64'" \
    "$A" sft --model llama.safetensors --tokenizer bytes --data sft.jsonl --steps 2 \
    --out c.safetensors --compute fp64
for c in rm dpo kto ppo grpo rloo generate; do
    expect 2 "--compute expects fp32 or bf16, got 'fp64'" "$A" $c --compute fp64
done
"$A" sft --help | grep -q -- '--compute MODE' || fail "sft --help lists --compute"
"$A" grpo --help | grep -q -- '--compute MODE' || fail "grpo --help lists --compute"
"$A" sft --model llama.safetensors --tokenizer bytes --data sft.jsonl --steps 2 --threads 1 \
    --compute fp32 --out c.safetensors 2>c.err || { cat c.err >&2; fail "--compute fp32"; }

# bf16: the tool says whether it is available; it cannot be where the CPU lacks it
info=$("$A" --version | sed -n 's/^compute: //p')
[ -n "$info" ] || fail "alignctl --version does not report the compute modes"
cpu_bf16=0
grep -Eqw 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null && cpu_bf16=1
case "$info" in
*"bf16 available"*)
    [ "$cpu_bf16" = 1 ] || fail "bf16 reported available on a CPU without avx512_bf16/amx_bf16"
    "$A" sft --model llama.safetensors --tokenizer bytes --data sft.jsonl --steps 2 --threads 1 \
        --compute bf16 --metrics b.jsonl --out b.safetensors 2>b.err \
        || { cat b.err >&2; fail "--compute bf16 failed where it is available"; }
    grep -q 'compute: bf16' b.err || fail "the startup line does not say bf16"
    [ "$(wc -l <b.jsonl)" -ge 2 ] || fail "--compute bf16: no steps recorded"
    ! grep -q '"loss":null' b.jsonl || fail "--compute bf16: the loss is not a number"
    "$A" info b.safetensors | grep -Eq '^arch: +llama$' || fail "bf16-trained model loads"
    "$A" generate --model b.safetensors --tokenizer bytes --prompt 'Q:' --max-new-tokens 2 \
        --compute bf16 >/dev/null 2>g.err || { cat g.err >&2; fail "generate --compute bf16"; }
    ok "--compute bf16 trains and generates ($info)"
    ;;
*"bf16 unavailable"*)
    expect 1 'bf16 compute unavailable: .*(oneDNN|AVX512_BF16)' \
        "$A" sft --model llama.safetensors --tokenizer bytes --data sft.jsonl --steps 2 \
        --compute bf16 --out b.safetensors
    grep -q 'stopping' err.txt || fail "--compute bf16 refusal does not say it stops"
    [ ! -e b.safetensors ] || fail "--compute bf16 refused but a model was written"
    expect 1 'bf16 compute unavailable' "$A" generate --model llama.safetensors \
        --tokenizer bytes --prompt 'Q:' --compute bf16
    # the shared training options: the same refusal before anything starts
    expect 1 'bf16 compute unavailable' "$A" dpo --model llama.safetensors --tokenizer bytes \
        --data sft.jsonl --compute bf16 --out b.safetensors
    expect 1 'bf16 compute unavailable' "$A" grpo --policy llama.safetensors --tokenizer bytes \
        --prompts sft.jsonl --reward-cmd cat --compute bf16 --out b.safetensors
    ok "--compute bf16 refused with the reason ($info)"
    ;;
*) fail "unexpected compute report '$info'" ;;
esac
ok "--compute fp32 / fp64 refused / help"
