#!/usr/bin/env bash
# alignctl --lora end to end: DPO with LoRA adapters raises the held-out
# preference accuracy with the base file untouched and writes a PEFT adapter
# folder (+ the merged model with --lora-merged); resume from a checkpoint is
# bitwise; sft, rm and grpo accept --lora; bad specifications fail clearly.
# Env: BUILD (build folder, default build).
set -euo pipefail

BUILD=${BUILD:-build}
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

/usr/bin/python3 - <<'EOF'
import json, random
def pairs(seed, n):
    r = random.Random(seed)
    out = []
    for _ in range(n):
        v = r.random() < 0.5
        p = ("v:" if v else "c:") + "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3)) + " "
        a = "".join(r.choice("aeiou") for _ in range(4))
        b = "".join(r.choice("bcdfghklmnprst") for _ in range(4))
        out.append({"prompt": p, "chosen": a if v else b, "rejected": b if v else a})
    return out
with open("train.jsonl", "w") as f:
    for x in pairs(1, 64): f.write(json.dumps(x) + "\n")
with open("heldout.jsonl", "w") as f:
    for x in pairs(2, 100): f.write(json.dumps(x) + "\n")
with open("sft.jsonl", "w") as f:
    for i in range(16): f.write(json.dumps({"prompt": "say %d" % i, "completion": " a%d b" % i}) + "\n")
with open("prompts.jsonl", "w") as f:
    for i in range(16): f.write(json.dumps({"prompt": "say %d" % i}) + "\n")
EOF
cat > count_a.py << 'EOF'
import sys, json
for line in sys.stdin:
    r = json.loads(line)["response"]
    print(json.dumps({"score": min(r.count("a"), 8) / 8}))
EOF

"$A" init --out base.safetensors --layers 2 --heads 2 --width 32 --vocab 257 --context 48 \
    --seed 11 > /dev/null 2>&1 || fail "init"
"$A" dpo --help | grep -q -- '--lora SPEC' || fail "dpo --help lacks --lora"
sum0=$(sha256sum base.safetensors)

COMMON=(--model base.safetensors --tokenizer bytes --data train.jsonl --batch 8 --lr 3e-3 --threads 1 --quiet
        --lora r=8,alpha=16,targets=c_attn,c_proj,c_fc)
# ---- DPO with LoRA learns; PEFT folder + merged model --------------------------------------
"$A" dpo "${COMMON[@]}" --steps 30 --eval-data heldout.jsonl --eval-every 30 --metrics m.jsonl \
    --out adapter --lora-merged merged.safetensors 2> d.err || { cat d.err >&2; fail "dpo --lora"; }
[ -f adapter/adapter_model.safetensors ] && [ -f adapter/adapter_config.json ] || fail "no PEFT folder"
[ -f merged.safetensors ] || fail "no merged model"
[ "$(sha256sum base.safetensors)" = "$sum0" ] || fail "the base file changed"
/usr/bin/python3 - <<'EOF' || fail "dpo --lora: accuracy / adapter files"
import json, struct
rows = [json.loads(l) for l in open("m.jsonl")]
acc = [r["eval_rewards/accuracies"] for r in rows if "eval_rewards/accuracies" in r]
print("ok - dpo --lora: held-out accuracy %.2f after %d steps" % (acc[-1], len(rows)))
assert acc[-1] >= 0.85, acc
c = json.load(open("adapter/adapter_config.json"))
assert c["peft_type"] == "LORA" and c["r"] == 8 and c["lora_alpha"] == 16 and c["fan_in_fan_out"] is True, c
assert sorted(c["target_modules"]) == ["c_attn", "c_fc", "c_proj"], c
assert c["base_model_name_or_path"] == "base.safetensors" and c["bias"] == "none", c
b = open("adapter/adapter_model.safetensors", "rb").read()
(n,) = struct.unpack("<Q", b[:8])
h = json.loads(b[8:8 + n])
names = sorted(k for k in h if k != "__metadata__")
assert len(names) == 2 * 4 * 2, names
assert h["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"]["shape"] == [8, 32]
assert h["base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight"]["shape"] == [32, 8]
EOF

# ---- resume is bitwise ----------------------------------------------------------------------
"$A" dpo "${COMMON[@]}" --steps 10 --out full 2> /dev/null || fail "dpo 10 steps"
"$A" dpo "${COMMON[@]}" --steps 10 --save-every 4 --out part 2> /dev/null || fail "dpo with checkpoints"
"$A" dpo "${COMMON[@]}" --steps 10 --resume part.ckpt/step-4 --out resumed 2> r.err || { cat r.err >&2; fail "resume"; }
cmp -s full/adapter_model.safetensors resumed/adapter_model.safetensors || fail "resumed adapters differ"
ok "dpo --lora: resume from step 4 gives the same adapters, bitwise"

# ---- the other trainers take --lora -----------------------------------------------------------
"$A" sft --model base.safetensors --tokenizer bytes --data sft.jsonl --steps 4 --batch 8 --lr 3e-3 \
    --threads 1 --quiet --lora r=4,alpha=8,targets=all-linear --out sft_ad 2> s.err || { cat s.err >&2; fail "sft --lora"; }
[ -f sft_ad/adapter_model.safetensors ] || fail "sft --lora: no adapters"
"$A" init --out rmbase.safetensors --layers 1 --heads 2 --width 32 --vocab 257 --context 48 --scalar-head > /dev/null \
    2>&1 || fail "init --scalar-head"
"$A" rm --model rmbase.safetensors --tokenizer bytes --data train.jsonl --steps 3 --batch 4 --threads 1 --quiet \
    --lora r=4,alpha=8 --out rm_ad 2> rm.err || { cat rm.err >&2; fail "rm --lora"; }
grep -q '"SEQ_CLS"' rm_ad/adapter_config.json && grep -q '"score"' rm_ad/adapter_config.json ||
    fail "rm --lora: task_type / modules_to_save"
"$A" grpo --policy base.safetensors --tokenizer bytes --prompts prompts.jsonl --max-new-tokens 8 --threads 1 \
    --prompts-per-step 4 --group-size 4 --lr 1e-3 --reward-cmd "python3 count_a.py" --steps 3 --quiet \
    --lora r=4,alpha=8,targets=c_attn,o --out grpo_ad 2> g.err || { cat g.err >&2; fail "grpo --lora"; }
grep -q '"attn.c_proj"' grpo_ad/adapter_config.json || fail "grpo --lora: targets"
ok "sft, rm and grpo train LoRA adapters"

# ---- bad specifications ------------------------------------------------------------------------
rc=0; "$A" dpo "${COMMON[@]}" --lora r=8,targets=q,v --steps 1 --out x 2> e.err || rc=$?
[ $rc -ne 0 ] && grep -q "target 'c_attn'" e.err || { cat e.err >&2; fail "targets=q,v on GPT-2"; }
rc=0; "$A" dpo "${COMMON[@]}" --lora r=8,bogus=1 --steps 1 --out x 2> e.err || rc=$?
[ $rc -ne 0 ] && grep -q "unknown key 'bogus'" e.err || { cat e.err >&2; fail "unknown --lora key"; }
rc=0; "$A" sft --model base.safetensors --tokenizer bytes --data sft.jsonl --steps 1 --lora-merged m.safetensors \
    --out x 2> e.err || rc=$?
[ $rc -ne 0 ] && grep -q -- "--lora-merged needs --lora" e.err || { cat e.err >&2; fail "--lora-merged alone"; }
ok "bad --lora specifications fail clearly"
