#!/usr/bin/env bash
# bench/run.sh — the `make bench` driver. Runs every benchmark program in
# $BUILD/bench/ and every PyTorch baseline bench/torch_*.py, with the same
# thread count and the same OpenBLAS kernel setting, prints a table, and
# appends one JSON object per measurement to $BENCH_JSON:
#   {"name", "value", "unit", "kernel", "vs_torch"? (torch ms / libalign ms)}
# A new benchmark only has to print such JSON lines (one per measurement) on
# stdout; a baseline prints lines with the same names and "impl":"torch".
set -euo pipefail
BUILD=${BUILD:-build}
BENCH_JSON=${BENCH_JSON:-$BUILD/bench.jsonl}
export ALIGN_BENCH_THREADS=${ALIGN_BENCH_THREADS:-2}
export ALIGN_BENCH_ITERS=${ALIGN_BENCH_ITERS:-3}
# Same kernels for both sides: Debian's OpenBLAS would otherwise fall back to
# Prescott on recent Xeons (docs/model.md, "BLAS note").
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
# OpenBLAS workers spin (sched_yield) ~2^28 cycles after each call and steal
# the cores our own parallel loops need (tiny 8x128: 2290 -> 1057 ms/step).
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
export OPENBLAS_NUM_THREADS=$ALIGN_BENCH_THREADS OMP_NUM_THREADS=$ALIGN_BENCH_THREADS
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "bench: $ALIGN_BENCH_THREADS threads, OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE, $ALIGN_BENCH_ITERS timed iterations"
# BENCH_ONLY=word runs only the programs / baselines whose name contains word.
only=${BENCH_ONLY:-}
for b in "$BUILD"/bench/*; do
  [ -x "$b" ] || continue
  case "$(basename "$b")" in *"$only"*) ;; *) continue ;; esac
  echo "bench: running $(basename "$b")"
  "$b" >> "$tmp/ours.jsonl" || echo "bench: $(basename "$b") failed" >&2
done
for py in bench/torch_*.py; do
  [ -f "$py" ] || continue
  case "$(basename "$py")" in *"$only"*) ;; *) continue ;; esac
  if $PY -c 'import torch' 2>/dev/null; then
    echo "bench: running $(basename "$py") (PyTorch baseline)"
    # PyTorch at its best: its OpenMP workers sleep between parallel regions
    # instead of spinning on the cores the next BLAS call needs.
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
torch = {o["name"]: o for o in records(sys.argv[2])}
stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
print("%-44s %12s %-9s %12s %9s" % ("measurement", "libalign", "unit", "pytorch", "vs_torch"))
with open(sys.argv[3], "a") as out:
    for o in ours:
        t = torch.get(o["name"])
        rec = dict(o, time=stamp)
        ratio = ""
        if t:
            rec["torch_value"] = t["value"]
            rec["torch_kernel"] = t.get("kernel", "")
            if o["unit"] == "ms" and o["value"] > 0:
                rec["vs_torch"] = t["value"] / o["value"]
            elif o["unit"] in ("tokens/s", "pairs/s") and t["value"] > 0:
                rec["vs_torch"] = o["value"] / t["value"]
            elif o["unit"] == "MB" and o["value"] > 0:
                rec["vs_torch"] = t["value"] / o["value"]
            if "vs_torch" in rec:
                ratio = "%.2fx" % rec["vs_torch"]
        print("%-44s %12.4g %-9s %12s %9s" % (o["name"], o["value"], o["unit"],
              "%.4g" % t["value"] if t else "", ratio))
        out.write(json.dumps(rec) + "\n")
kern = {o.get("kernel") for o in ours} - {None}
tk = {o.get("kernel") for o in torch.values()} - {None}
print("kernels: libalign %s; pytorch %s" % (", ".join(sorted(kern)), ", ".join(sorted(tk)) or "-"))
PYEOF
echo "bench: JSON lines appended to $BENCH_JSON"
