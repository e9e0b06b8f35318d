#!/usr/bin/env bash
# Crash safety of the feedback journal: a writer process submits, answers and
# cancels requests (each call fsync'ed before it returns) and is killed with
# SIGKILL at random moments, RUNS times, reopening the same journal each time.
# Then: every acknowledged submit, answer and cancel is in the journal exactly
# once, requests acknowledged as submitted but not answered are pending again,
# ids are unique, and the file replays without error.
set -euo pipefail
RUNS=${JOURNAL_CRASH_RUNS:-50}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -Wall -Wextra -Werror -Iinclude ${SAN:-} tests/journal_writer.c \
  -o "$tmp/writer" -L"$BUILD" -lalign -Wl,-rpath,"$PWD/$BUILD"
j="$tmp/journal.jsonl"
: > "$tmp/acks"
start=$(date +%s%N)
for ((i = 1; i <= RUNS; i++)); do
  "$tmp/writer" "$j" "$i" >> "$tmp/acks" 2> "$tmp/err" &
  pid=$!
  # wait until it has opened (and replayed) the journal: under sanitizers
  # starting takes longer than the kill delay
  for ((w = 0; w < 3000; w++)); do
    [ "$(grep -c '^R ' "$tmp/acks")" -ge "$i" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  # then 20..200 ms, so kills land before, during and after writes and fsyncs
  sleep "0.$(printf '%03d' $((20 + RANDOM % 180)))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -s "$tmp/err" ]; then echo "FAIL: run $i: writer error:"; cat "$tmp/err"; exit 1; fi
done
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
"$tmp/writer" --dump "$j" > "$tmp/dump" || { echo "FAIL: the journal does not reopen"; exit 1; }
python3 - "$tmp/acks" "$tmp/dump" "$j" "$RUNS" "$elapsed" <<'PY'
import collections, json, sys
acks, dump, journal, runs, elapsed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]) / 1000
S, A, C, torn = [], [], [], 0
for line in open(acks):
    parts = line.split()
    if len(parts) != 2:
        continue            # a line cut by the kill (the call had returned; the print had not)
    op, v = parts[0], int(parts[1])
    {"S": S, "A": A, "C": C}.get(op, []).append(v)
    if op == "T":
        torn += 1
status = {}
for line in open(dump):
    i, s = map(int, line.split())
    status[i] = s
fail = []
if len(S) != len(set(S)): fail.append("an id was acknowledged twice by submit")
if len(A) != len(set(A)): fail.append("a request was acknowledged as answered twice")
for i in A:
    if status.get(i) != 1: fail.append(f"acknowledged answer of {i} lost (status {status.get(i)})")
for i in C:
    if status.get(i) != 2: fail.append(f"acknowledged cancel of {i} lost (status {status.get(i)})")
done = set(A) | set(C)
extra = 0
for i in S:
    if i not in status: fail.append(f"acknowledged request {i} lost")
    elif i not in done and status[i] != 0:
        extra += 1           # answered by a call killed before it printed its ack
if extra > runs: fail.append(f"{extra} unacknowledged answers: more than one per run")
if sorted(status) != list(range(1, len(status) + 1)): fail.append("ids are not 1..n")
subs, answers = collections.Counter(), collections.Counter()
for n, line in enumerate(open(journal, encoding="utf-8"), 1):
    o = json.loads(line)
    if n == 1: continue
    if o["op"] == "submit": subs[o["id"]] += 1
    if o["op"] in ("answer", "cancel"): answers[o["id"]] += 1
if any(c != 1 for c in subs.values()) or len(subs) != len(status): fail.append("a submit line is duplicated or missing")
if any(c != 1 for c in answers.values()): fail.append("a request has two answer/cancel lines")
if len(S) < runs or len(A) == 0:
    fail.append(f"the writer did too little to test anything ({len(S)} submits, {len(A)} answers in {runs} runs)")
if fail:
    print("FAIL:", *fail[:10], sep="\n  "); sys.exit(1)
pending = sum(1 for s in status.values() if s == 0)
print(f"journal_crash: {runs} kill -9 runs in {elapsed:.1f} s: {len(S)} submits, {len(A)} answers, {len(C)} cancels "
      f"acknowledged, all present once; {pending} pending again; {extra} unacknowledged answers kept; "
      f"{torn} torn last lines dropped")
PY
