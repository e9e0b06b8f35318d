#!/usr/bin/env bash
# alignctl generate --chat: a model trained by `alignctl sft` on chat records
# answers when prompted through the same template, and sees the prompt token
# ids SFT trained on (the ids of the trained row up to the assistant's reply).
set -euo pipefail
BUILD=${BUILD:-build}
. "$(dirname "$0")/alignctl_common.bash"   # A, T (the working folder), fail, ok, expect

cat > chats.jsonl <<'J'
{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"red?"},{"role":"assistant","content":"apple"}]}
{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"yellow?"},{"role":"assistant","content":"banana"}]}
{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"green?"},{"role":"assistant","content":"lime"}]}
{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"purple?"},{"role":"assistant","content":"plum"}]}
J
"$A" init --layers 2 --heads 2 --width 48 --vocab 257 --context 64 --seed 3 --out base.safetensors >/dev/null
"$A" sft --model base.safetensors --tokenizer bytes --data chats.jsonl --out chat.safetensors \
    --steps 120 --batch 4 --lr 3e-3 --seed 1 >/dev/null 2>sft.err || { cat sft.err >&2; fail "sft"; }

# every answer, greedy, through the template (system turn from --system)
"$A" generate --model chat.safetensors --tokenizer bytes --chat --system "be brief" \
    --temperature 0 --max-new-tokens 12 --prompt "red?" --prompt "yellow?" --prompt "green?" \
    --prompt "purple?" --json > gen.jsonl
python3 - gen.jsonl <<'PY'
import json, sys
want = ["apple", "banana", "lime", "plum"]
got = [json.loads(l) for l in open(sys.argv[1])]
assert [g["text"] for g in got] == want, [g["text"] for g in got]
assert all(g["finish_reason"] == "eot" for g in got), got
PY

# a --prompts file with whole conversations gives the same replies
python3 -c '
import json
for l in open("chats.jsonl"):
    m = json.loads(l)["messages"][:-1]
    print(json.dumps({"messages": m}))' > convs.jsonl
"$A" generate --model chat.safetensors --tokenizer bytes --chat --prompts convs.jsonl \
    --temperature 0 --max-new-tokens 12 --json > gen2.jsonl
python3 -c '
import json, sys
a = [json.loads(l)["tokens"] for l in open("gen.jsonl")]
b = [json.loads(l)["tokens"] for l in open("gen2.jsonl")]
assert a == b, (a, b)'

# without the template the model does not see what it was trained on
"$A" generate --model chat.safetensors --tokenizer bytes --temperature 0 --max-new-tokens 12 \
    --prompt "red?" --json > raw.jsonl
python3 -c '
import json
t = json.loads(open("raw.jsonl").readline())["text"]
assert t != "apple", t'

# --system needs --chat
if "$A" generate --model chat.safetensors --tokenizer bytes --system x --prompt a 2>err.txt; then
    fail "--system without --chat accepted"
fi
grep -q -- "--system goes with --chat" err.txt || fail "message for --system without --chat"
echo "ok - alignctl generate --chat answers as trained"

# --metrics carries the trainer's named metrics (align_trainer_metrics)
"$A" sft --model base.safetensors --tokenizer bytes --data chats.jsonl --out m.safetensors \
    --steps 3 --batch 4 --seed 1 --eval-data chats.jsonl --eval-every 3 --metrics m.jsonl >/dev/null 2>&1 ||
    fail "sft --metrics"
python3 - m.jsonl <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 3, rows
for r in rows:
    for k in ("step", "loss", "lr", "sequences", "learning_rate", "grad_norm", "epoch"):
        assert k in r, (k, r)
assert rows[0]["sequences"] == 4, rows[0]
assert "eval_loss" in rows[-1] and "eval_tokens" in rows[-1], rows[-1]
PY
echo "ok - alignctl sft --metrics carries the named metrics"
