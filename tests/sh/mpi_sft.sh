#!/usr/bin/env bash
# Data-parallel SFT under mpirun (docs/distributed.md): 2 ranks against 1 rank
# with the same global batch, reproducibility, resume under MPI, a killed rank.
# Skips (exit 0) without mpirun, with an alignctl built without MPI, or under
# sanitizers (Open MPI itself is not instrumented and leaks by design).
# Env: BUILD (default build).
set -euo pipefail

BUILD=${BUILD:-build}
A="$(cd "$BUILD" && pwd)/bin/alignctl"
[ -x "$A" ] || { echo "mpi_sft.sh: $A is not built (make examples)" >&2; exit 1; }
if ! command -v mpirun >/dev/null 2>&1; then echo "mpi_sft.sh: skipped (no mpirun)"; exit 0; fi
if [ -n "${SAN:-}" ]; then echo "mpi_sft.sh: skipped under sanitizers"; exit 0; fi
case "$(ldd "$A")" in *libalign_mpi*) ;; *) echo "mpi_sft.sh: skipped (alignctl built without MPI)"; exit 0 ;; esac
mkdir -p "$BUILD/tmp"
T=$(mktemp -d "$BUILD/tmp/mpi_sft.XXXXXX")
cd "$T"
exec 3>&2 2>>run.log   # the runs' chatter; shown when something fails
fail() { cat run.log >&3; echo "FAIL: $*" >&3; exit 1; }
ok() { echo "ok - $*"; }
trap 'rc=$?; [ $rc = 0 ] || cat run.log >&3; rm -rf "$T"; exit $rc' EXIT
# We run as root in CI containers; oversubscribe: 2 ranks on any core count.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# containers often forbid the cross-memory attach of the shared-memory transport
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPIRUN=(mpirun -np 2 --oversubscribe)

for i in $(seq 0 63); do
    a=$((i % 10)) b=$((i % 7))
    printf '{"prompt":"add %d %d =","completion":" %d."}\n' $a $b $((a + b))
done > train.jsonl
"$A" init --layers 2 --heads 2 --width 48 --vocab 257 --context 64 --out base.safetensors >/dev/null
C=(--model base.safetensors --tokenizer bytes --data train.jsonl --lr 3e-3 --batch 4 --accum 2 --threads 1 --seed 5 --quiet)

# cmp_weights A B TOL: every tensor of A and B within TOL relative to the largest |weight|.
cmp_weights() {
    /usr/bin/python3 - "$@" <<'PY'
import array, json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); d = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k != "__metadata__":
            s, e = v["data_offsets"]; a = array.array("f"); a.frombytes(d[s:e]); out[k] = a
    return out
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
assert a.keys() == b.keys()
diff = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
scale = max(abs(x) for k in a for x in a[k])
print("max |w1 - w2| / max |w| = %.3g" % (diff / scale))
sys.exit(0 if diff <= tol * scale else 1)
PY
}

# ---- one step: the summed gradient equals the one-rank gradient -------------
"$A" sft "${C[@]}" --steps 1 --out one1.safetensors
"${MPIRUN[@]}" "$A" sft "${C[@]}" --steps 1 --out two1.safetensors 2> two1.err ||
    { cat two1.err >&2; fail "2-rank sft"; }
cmp_weights one1.safetensors two1.safetensors 1e-6 || fail "1 step: 2 ranks differ from 1 rank"
ok "1 step, 2 ranks = 1 rank (within fp32 reduction order)"

# ---- ten steps: same losses; 2 ranks reproducible bitwise --------------------
"$A" sft "${C[@]}" --steps 10 --metrics m1.jsonl --out one.safetensors
"${MPIRUN[@]}" "$A" sft "${C[@]}" --steps 10 --metrics m2.jsonl --out two.safetensors
"${MPIRUN[@]}" "$A" sft "${C[@]}" --steps 10 --out two_again.safetensors
cmp two.safetensors two_again.safetensors || fail "2-rank runs are not bitwise reproducible"
/usr/bin/python3 - <<'PY' || fail "losses of 1 and 2 ranks differ"
import json
l1 = [json.loads(l)["loss"] for l in open("m1.jsonl") if '"loss"' in l]
l2 = [json.loads(l)["loss"] for l in open("m2.jsonl") if '"loss"' in l]
assert len(l1) == len(l2) == 10, (len(l1), len(l2))
worst = max(abs(a - b) / abs(a) for a, b in zip(l1, l2))
print("10 steps: max relative loss difference %.3g" % worst)
assert worst <= 1e-5, worst
assert l1[-1] < 0.8 * l1[0], "the loss did not fall"
PY
cmp_weights one.safetensors two.safetensors 1e-4 || fail "10 steps: 2 ranks drift from 1 rank"
ok "10 steps: losses equal, 2 ranks bitwise reproducible"

# ---- resume under MPI is bitwise ----------------------------------------------
"${MPIRUN[@]}" "$A" sft "${C[@]}" --steps 6 --out full.safetensors
"${MPIRUN[@]}" "$A" sft "${C[@]}" --steps 3 --save-every 3 --checkpoint-dir ck --out half.safetensors
[ -f ck/step-3/trainer.json ] || fail "rank 0 wrote no checkpoint"
"${MPIRUN[@]}" "$A" sft "${C[@]}" --steps 6 --resume ck/step-3 --out resumed.safetensors
cmp full.safetensors resumed.safetensors || fail "2-rank resume is not bitwise"
ok "resume under MPI is bitwise"

# ---- a killed rank ends the job with a report, no hang -------------------------
"$A" init --layers 2 --heads 2 --width 64 --vocab 257 --context 64 --out big.safetensors >/dev/null
rc=0
ALIGN_DIST_TIMEOUT=20 "${MPIRUN[@]}" "$A" sft --model big.safetensors --tokenizer bytes --data train.jsonl \
    --batch 4 --threads 1 --steps 1000000 --metrics mk.jsonl --out k.safetensors 2> kill.err &
job=$!
for _ in $(seq 1 300); do [ -s mk.jsonl ] && break; sleep 0.1; done
[ -s mk.jsonl ] || { cat kill.err >&2; fail "the 2-rank run made no step"; }
victim=""
for p in $(pgrep -P "$job" 2>/dev/null) $(pgrep -P "$(pgrep -P "$job" | head -1)" 2>/dev/null); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$p; fi
done
[ -n "$victim" ] || { kill "$job" 2>/dev/null; fail "cannot find rank 1"; }
kill -9 "$victim"
start=$SECONDS
wait "$job" || rc=$?
[ "$rc" != 0 ] || fail "mpirun exited 0 after a rank was killed"
[ $((SECONDS - start)) -lt 60 ] || fail "the job took $((SECONDS - start)) s to end after the kill"
grep -Eqi 'rank 1|signal 9|killed' kill.err || { cat kill.err >&2; fail "no report of the killed rank"; }
ok "killed rank 1: the job ended in $((SECONDS - start)) s with status $rc"

# ---- a rank that hangs: the others time out, report, and abort the job ---------
rm -f mk.jsonl
rc=0
ALIGN_DIST_TIMEOUT=3 "${MPIRUN[@]}" "$A" sft --model big.safetensors --tokenizer bytes --data train.jsonl \
    --batch 4 --threads 1 --steps 1000000 --metrics mk.jsonl --out k.safetensors 2> hang.err &
job=$!
for _ in $(seq 1 300); do [ -s mk.jsonl ] && break; sleep 0.1; done
[ -s mk.jsonl ] || { cat hang.err >&2; fail "the 2-rank run made no step"; }
victim=""
for p in $(pgrep -P "$job" 2>/dev/null); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$p; fi
done
[ -n "$victim" ] || { kill "$job" 2>/dev/null; fail "cannot find rank 1"; }
kill -STOP "$victim"
start=$SECONDS
wait "$job" || rc=$?
kill -9 "$victim" 2>/dev/null || true
[ "$rc" != 0 ] || fail "mpirun exited 0 while rank 1 hung"
grep -q 'no answer from a peer rank within 3 s' hang.err || { cat hang.err >&2; fail "no timeout report"; }
ok "hung rank 1: rank 0 timed out and the job ended in $((SECONDS - start)) s with status $rc"
