#!/usr/bin/env bash
# Data-parallel GRPO under mpirun (docs/distributed.md): 2 ranks against 1
# rank with the same rollout and minibatch, the scorer command running on
# every rank. Skips like mpi_sft.sh. Env: BUILD (default build).
set -euo pipefail

BUILD=${BUILD:-build}
A="$(cd "$BUILD" && pwd)/bin/alignctl"
[ -x "$A" ] || { echo "mpi_rl.sh: $A is not built (make examples)" >&2; exit 1; }
if ! command -v mpirun >/dev/null 2>&1; then echo "mpi_rl.sh: skipped (no mpirun)"; exit 0; fi
if [ -n "${SAN:-}" ]; then echo "mpi_rl.sh: skipped under sanitizers"; exit 0; fi
case "$(ldd "$A")" in *libalign_mpi*) ;; *) echo "mpi_rl.sh: skipped (alignctl built without MPI)"; exit 0 ;; esac
mkdir -p "$BUILD/tmp"
T=$(mktemp -d "$BUILD/tmp/mpi_rl.XXXXXX")
cd "$T"
exec 3>&2 2>>run.log
fail() { cat run.log >&3; echo "FAIL: $*" >&3; exit 1; }
ok() { echo "ok - $*"; }
trap 'rc=$?; [ $rc = 0 ] || cat run.log >&3; rm -rf "$T"; exit $rc' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# containers often forbid the cross-memory attach of the shared-memory transport
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPIRUN=(mpirun -np 2 --oversubscribe)

cat > count_a.py << 'PY'
import os, sys, json
rank = os.environ.get("OMPI_COMM_WORLD_RANK", "x")
open("scorer.%s" % rank, "a").close()   # where it ran
for line in sys.stdin:
    r = json.loads(line)["response"]
    print(json.dumps({"score": min(r.count("a"), 8) / 8}), flush=True)
PY
for i in $(seq 0 15); do printf '{"prompt":"say %d"}\n' "$i"; done > prompts.jsonl
"$A" init --layers 2 --heads 2 --width 32 --vocab 257 --context 64 --out base.safetensors > /dev/null
G=(--policy base.safetensors --tokenizer bytes --prompts prompts.jsonl --max-new-tokens 12 --threads 1
   --prompts-per-step 4 --group-size 4 --minibatches 2 --lr 5e-4 --reward-cmd "python3 count_a.py" --quiet --steps 4)

"$A" grpo "${G[@]}" --metrics g1.jsonl --out g1.safetensors
rm -f scorer.*
"${MPIRUN[@]}" "$A" grpo "${G[@]}" --metrics g2.jsonl --out g2.safetensors
[ -f scorer.0 ] && [ -f scorer.1 ] || fail "the scorer did not run on every rank"
"${MPIRUN[@]}" "$A" grpo "${G[@]}" --out g2b.safetensors
cmp g2.safetensors g2b.safetensors || fail "2-rank GRPO is not bitwise reproducible"
/usr/bin/python3 - <<'PY' || fail "GRPO: 2 ranks differ from 1 rank"
import array, json, struct
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); d = b[8 + n:]; out = []
    for k, v in sorted(h.items()):
        if k != "__metadata__":
            s, e = v["data_offsets"]; a = array.array("f"); a.frombytes(d[s:e]); out += list(a)
    return out
a, b = load("g1.safetensors"), load("g2.safetensors")
rel = max(abs(x - y) for x, y in zip(a, b)) / max(abs(x) for x in a)
m1 = [json.loads(l) for l in open("g1.jsonl") if '"loss"' in l]
m2 = [json.loads(l) for l in open("g2.jsonl") if '"loss"' in l]
assert len(m1) == len(m2) == 4
for x, y in zip(m1, m2):
    assert x["objective/scores"] == y["objective/scores"], (x, y)   # the same rollouts
    assert abs(x["loss"] - y["loss"]) <= 1e-6 * max(abs(x["loss"]), 1e-3), (x["loss"], y["loss"])
print("GRPO 4 steps: weights max relative difference %.3g; scores equal; losses within 1e-6" % rel)
assert rel <= 1e-5, rel
PY
ok "GRPO: 2 ranks = 1 rank (same rollouts, losses, weights within fp32 order); reproducible; scorer on every rank"
