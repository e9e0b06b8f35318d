#!/usr/bin/env bash
# bench/run.sh — the `make bench` driver. Runs every benchmark program in
# $BUILD/bench/ and every PyTorch baseline bench/torch_*.py, with the same
# thread count and the same OpenBLAS kernel setting, prints a table, and
# appends one JSON object per measurement to $BENCH_JSON:
#   {"name", "value", "unit", "kernel", "vs_torch"? (torch ms / libalign ms),
#    "vs_torch_bf16"? (the same against PyTorch under bf16 autocast)}
# A new benchmark only has to print such JSON lines (one per measurement) on
# stdout ("compare_as": NAME sets a record against the baselines' NAME, e.g.
# bench_bf16's bf16 step against the training step's baselines); a baseline prints lines with the same names and "impl":"torch"
# (fp32) or "impl":"torch_bf16" (bf16 autocast).
# PyTorch runs at its best on 2 cores: OMP_WAIT_POLICY=PASSIVE (its OpenMP
# pool otherwise spins against OpenBLAS's threads) and the same OpenBLAS
# kernels as ours (one OPENBLAS_CORETYPE for both sides).
set -euo pipefail
BUILD=${BUILD:-build}
BENCH_JSON=${BENCH_JSON:-$BUILD/bench.jsonl}
export ALIGN_BENCH_THREADS=${ALIGN_BENCH_THREADS:-2}
export ALIGN_BENCH_ITERS=${ALIGN_BENCH_ITERS:-3}
# Same kernels for both sides. BENCH_CORETYPE overrides the environment's
# OPENBLAS_CORETYPE for this run ("auto": unset, OpenBLAS detects the CPU);
# without either we pick SkylakeX, as Debian's OpenBLAS would otherwise fall
# back to Prescott on recent Xeons (docs/model.md, "BLAS note").
if [ "${BENCH_CORETYPE:-}" = auto ]; then
  unset OPENBLAS_CORETYPE
else
  export OPENBLAS_CORETYPE=${BENCH_CORETYPE:-${OPENBLAS_CORETYPE:-SkylakeX}}
fi
# OpenBLAS workers spin (sched_yield) ~2^28 cycles after each call and steal
# the cores our own parallel loops need (tiny 8x128: 2290 -> 1057 ms/step).
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
export OPENBLAS_NUM_THREADS=$ALIGN_BENCH_THREADS OMP_NUM_THREADS=$ALIGN_BENCH_THREADS
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
feat=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f|avx512_bf16|avx512_vnni|amx_bf16|amx_tile' | tr '\n' ' ')
echo "bench: CPU $cpu; features: ${feat:-none of avx2/avx512/amx}"
echo "bench: $ALIGN_BENCH_THREADS threads, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset: OpenBLAS detects)}, $ALIGN_BENCH_ITERS timed iterations"
# BENCH_ONLY=word[,word...] runs only the programs / baselines whose name contains
# one of the words (e.g. BENCH_ONLY=train,bf16,generate).
only=${BENCH_ONLY:-}
selected() {
  [ -z "$only" ] && return 0
  local w
  for w in ${only//,/ }; do case "$1" in *"$w"*) return 0 ;; esac; done
  return 1
}
for b in "$BUILD"/bench/*; do
  [ -x "$b" ] || continue
  selected "$(basename "$b")" || continue
  echo "bench: running $(basename "$b")"
  "$b" >> "$tmp/ours.jsonl" || echo "bench: $(basename "$b") failed" >&2
done
for py in bench/torch_*.py; do
  [ -f "$py" ] || continue
  selected "$(basename "$py")" || continue
  if $PY -c 'import torch' 2>/dev/null; then
    echo "bench: running $(basename "$py") (PyTorch baseline)"
    OMP_WAIT_POLICY=PASSIVE $PY "$py" >> "$tmp/torch.jsonl" || echo "bench: $py failed" >&2
  else
    echo "bench: PyTorch not installed (make deps-bench); no baseline" >&2
  fi
done
touch "$tmp/ours.jsonl" "$tmp/torch.jsonl"
$PY - "$tmp/ours.jsonl" "$tmp/torch.jsonl" "$BENCH_JSON" <<'PYEOF'
import json, sys, time
def records(path):
    """JSON-object lines; other output is shown as it is."""
    for l in open(path):
        l = l.strip()
        if l.startswith("{"):
            try:
                o = json.loads(l)
                if "name" in o and "value" in o:
                    yield o
                    continue
            except ValueError:
                pass
        if l:
            print(l)
ours = list(records(sys.argv[1]))
theirs = list(records(sys.argv[2]))
torch = {o["name"]: o for o in theirs if o.get("impl", "torch") == "torch"}
torch16 = {o["name"]: o for o in theirs if o.get("impl") == "torch_bf16"}
stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
def ratio(o, t):
    """How many times better libalign is (None when not comparable)."""
    if not t:
        return None
    if o["unit"] in ("ms", "MB") and o["value"] > 0:
        return t["value"] / o["value"]
    if o["unit"] in ("tokens/s", "pairs/s") and t["value"] > 0:
        return o["value"] / t["value"]
    return None
print("%-44s %10s %-9s %10s %9s %10s %9s" % ("measurement", "libalign", "unit", "pytorch", "vs_torch",
                                           "torch_bf16", "vs_bf16"))
with open(sys.argv[3], "a") as out:
    for o in ours:
        rec = dict(o, time=stamp)
        cols = []
        for key, src in (("torch", torch), ("torch_bf16", torch16)):
            t = src.get(o.get("compare_as", o["name"]))
            r = ratio(o, t)
            if t:
                rec[key + "_value"] = t["value"]
                rec[key + "_kernel"] = t.get("kernel", "")
            if r is not None:
                rec["vs_" + key] = r
            cols += ["%.4g" % t["value"] if t else "", "%.2fx" % r if r is not None else ""]
        print("%-44s %10.4g %-9s %10s %9s %10s %9s" % ((o["name"], o["value"], o["unit"]) + tuple(cols)))
        out.write(json.dumps(rec) + "\n")
kern = {o.get("kernel") for o in ours} - {None}
tk = {o.get("kernel") for o in torch.values()} - {None}
tk16 = {o.get("kernel") for o in torch16.values()} - {None}
print("kernels: libalign %s" % (", ".join(sorted(kern)) or "-"))
print("kernels: pytorch fp32 %s" % (", ".join(sorted(tk)) or "-"))
print("kernels: pytorch bf16 autocast %s" % (", ".join(sorted(tk16)) or "-"))
PYEOF
echo "bench: JSON lines appended to $BENCH_JSON"
