#!/usr/bin/env bash
# alignctl dpo / kto end to end: DPO on synthetic preferences raises the
# held-out preference accuracy, every named metric reaches --metrics, resume
# is bitwise, KTO trains on labels, bad input fails clearly.
# Env: BUILD (build folder, default build).
set -euo pipefail

BUILD=${BUILD:-build}
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

# synthetic preferences: "v:..." prompts prefer the response of vowels, "c:..." the one of consonants
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
with open("labels.jsonl", "w") as f:
    for i, x in enumerate(pairs(3, 48)):
        good = i % 2 == 0
        f.write(json.dumps({"prompt": x["prompt"], "response": x["chosen"] if good else x["rejected"],
                            "label": good}) + "\n")
EOF

"$A" init --out base.safetensors --layers 2 --heads 2 --width 32 --vocab 257 --context 48 \
    --seed 11 2> /dev/null || fail "init"
"$A" dpo --help | grep -q '^usage: alignctl dpo' || fail "dpo --help"
"$A" kto --help | grep -q '^usage: alignctl kto' || fail "kto --help"

COMMON=(--tokenizer bytes --data train.jsonl --batch 8 --lr 3e-4 --threads 1 --quiet)
# ---- accuracy rises --------------------------------------------------------------
"$A" dpo --model base.safetensors "${COMMON[@]}" --steps 40 --eval-data heldout.jsonl --eval-every 1 \
    --metrics m.jsonl --out d.safetensors 2> d.err || { cat d.err >&2; fail "dpo"; }
/usr/bin/python3 - <<'EOF' || fail "dpo metrics"
import json
rows = [json.loads(l) for l in open("m.jsonl")]
steps = [r for r in rows if "loss" in r]
for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
          "logps/chosen", "logps/rejected", "grad_norm", "eval_rewards/accuracies"):
    assert all(k in r for r in steps), k
first, last = steps[0]["eval_rewards/accuracies"], steps[-1]["eval_rewards/accuracies"]
print("held-out accuracy after step 1: %.2f, after step %d: %.2f" % (first, len(steps), last))
assert first < 0.85 and last >= 0.9, (first, last)
assert steps[-1]["rewards/margins"] > steps[0]["rewards/margins"]
EOF
ok "dpo raises the held-out preference accuracy"

# ---- resume: 10 + 10 == 20 -------------------------------------------------------
"$A" dpo --model base.safetensors "${COMMON[@]}" --steps 10 --save-every 10 --metrics mr.jsonl \
    --out r.safetensors 2> /dev/null || fail "dpo first half"
"$A" dpo --model base.safetensors "${COMMON[@]}" --steps 20 --save-every 10 --metrics mr.jsonl \
    --out r.safetensors --resume r.ckpt/latest 2> resume.err || { cat resume.err >&2; fail "dpo --resume"; }
grep -q "resumed from 'r.ckpt/latest' at step 10" resume.err || fail "resume message"
"$A" dpo --model base.safetensors "${COMMON[@]}" --steps 20 --metrics ms.jsonl --out s.safetensors \
    2> /dev/null || fail "dpo 20 straight"
diff <(grep -o '"loss":[^,]*' mr.jsonl) <(grep -o '"loss":[^,]*' ms.jsonl) > /dev/null ||
    fail "resumed losses differ from an uninterrupted run"
cmp r.safetensors s.safetensors || fail "resumed model is not bitwise the uninterrupted one"
ok "dpo resume continues bitwise"

# ---- losses, rankings, explicit reference -------------------------------------------
for l in ipo hinge robust simpo orpo; do
    extra=()
    [ "$l" = robust ] && extra=(--label-smoothing 0.1)
    "$A" dpo --model base.safetensors "${COMMON[@]}" --steps 2 --loss "$l" "${extra[@]}" \
        --reference base.safetensors --out l.safetensors 2> l.err || { cat l.err >&2; fail "--loss $l"; }
done
printf '{"prompt":"q ","responses":["aa","bb","cc"],"ranking":[1,0,2]}\n' > rank.jsonl
for mode in all-pairs best-vs-rest plackett-luce; do
    "$A" dpo --model base.safetensors --tokenizer bytes --data rank.jsonl --steps 2 --ranking "$mode" \
        --threads 1 --quiet --out k.safetensors 2> k.err || { cat k.err >&2; fail "--ranking $mode"; }
done
ok "losses and ranking modes"

# ---- KTO ---------------------------------------------------------------------------
"$A" kto --model base.safetensors --tokenizer bytes --data labels.jsonl --batch 8 --lr 3e-4 --steps 12 \
    --threads 1 --quiet --metrics k.jsonl --out kt.safetensors 2> kt.err || { cat kt.err >&2; fail "kto"; }
/usr/bin/python3 - <<'EOF' || fail "kto metrics"
import json
rows = [json.loads(l) for l in open("k.jsonl")]
for k in ("loss", "kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
    assert all(k in r for r in rows), k
assert rows[-1]["loss"] < rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
assert rows[-1]["rewards/chosen"] > rows[-1]["rewards/rejected"]
EOF
ok "kto trains on labels"

# ---- bad input -------------------------------------------------------------------------
printf '{"prompt":"q","chosen":"same","rejected":"same"}\n' > same.jsonl
rc=0; "$A" dpo --model base.safetensors --tokenizer bytes --data same.jsonl --out x.safetensors \
    2> bad.err || rc=$?
[ "$rc" = 1 ] && grep -q "chosen equals rejected" bad.err || { cat bad.err >&2; fail "chosen == rejected"; }
"$A" init --out v300.safetensors --layers 1 --heads 2 --width 16 --vocab 300 --context 48 2> /dev/null
rc=0; "$A" dpo --model base.safetensors --reference v300.safetensors --tokenizer bytes --data train.jsonl \
    --out x.safetensors 2> bad.err || rc=$?
[ "$rc" = 1 ] && grep -q "vocabulary" bad.err || { cat bad.err >&2; fail "reference of another vocabulary"; }
rc=0; "$A" dpo --model base.safetensors --tokenizer bytes --data train.jsonl --loss nope --out x \
    2> bad.err || rc=$?
[ "$rc" = 2 ] || fail "--loss nope: exit $rc"
ok "bad input"
