#!/bin/bash
# label_browser.sh — `alignctl label --serve` end to end in a real browser:
# a journal with six requests made through the public API, the server on a
# free port, tests/browser/label.test.mjs driving Debian's chromium with
# puppeteer-core (answers by clicks and keys, ties, skip, undo; no console
# errors; a screenshot in $BUILD/label-browser/; bad HTTP requests get 4xx and
# change nothing), then Ctrl-C (exit 0) and the journal read back through the
# library: exactly the answers given, exported as dataset records.
#
# SKIPS (exit 0, saying why) without chromium, node/npm or puppeteer-core;
# `make deps-browser` (tools/deps.sh --browser) installs chromium, and CI
# (.ci/run, LABEL_BROWSER_REQUIRED=1) turns a skip into a failure.
# puppeteer-core 24 comes from npm into $BUILD/npm-browser/ (never a browser).
set -euo pipefail
BUILD=${BUILD:-build}
CC=${CC:-cc}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "$ROOT" && mkdir -p "$BUILD" && cd "$BUILD" && pwd)
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
# puppeteer-core lives in $BUILD/npm-browser; an asan run reuses build/'s copy.
PUPPETEER_DIR="$B/npm-browser"
[ -f "$ROOT/build/npm-browser/node_modules/puppeteer-core/package.json" ] && PUPPETEER_DIR="$ROOT/build/npm-browser"
t0=$(date +%s.%N)

# CI sets LABEL_BROWSER_REQUIRED=1 (after make deps-browser): there a skip is a failure.
# The command line, without a browser: usage errors exit 2, a missing journal 1.
CTL="$B/bin/alignctl"
want_exit() { # want_exit STATUS WHAT -- command...
    local want=$1 what=$2 rc=0; shift 3
    "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" = "$want" ] || { echo "FAIL: $what: exit $rc, want $want"; exit 1; }
    echo "  ok   $what: exit $want"
}
want_exit 0 "alignctl label --help" -- "$CTL" label --help
want_exit 2 "no --journal" -- "$CTL" label --serve
want_exit 2 "--host that is not an address" -- "$CTL" label --serve --journal x --host localhost
want_exit 2 "--port out of range" -- "$CTL" label --serve --journal x --port 70000
want_exit 1 "a journal that does not exist" -- "$CTL" label --serve --journal /nonexistent/j

skip() {
    if [ "${LABEL_BROWSER_REQUIRED:-0}" = 1 ]; then echo "FAIL label_browser: $*"; exit 1; fi
    echo "SKIP label_browser: $*"; exit 0
}
[ -x "$CHROMIUM" ] || skip "no chromium at $CHROMIUM (make deps-browser installs Debian's chromium)"
command -v node >/dev/null || skip "node not found (make deps installs nodejs)"
if [ ! -f "$PUPPETEER_DIR/node_modules/puppeteer-core/package.json" ]; then
    command -v npm >/dev/null || skip "npm not found (make deps installs npm)"
    mkdir -p "$PUPPETEER_DIR"
    echo "installing puppeteer-core into $PUPPETEER_DIR"
    if ! PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$PUPPETEER_DIR" --no-audit --no-fund \
            puppeteer-core@24 >"$PUPPETEER_DIR/install.log" 2>&1; then
        tail -5 "$PUPPETEER_DIR/install.log"
        skip "npm install puppeteer-core failed (is the npm registry reachable?)"
    fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/label_browser.XXXXXX")
SERVER=
cleanup() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
OUT="$B/label-browser"
mkdir -p "$OUT"

# The journal, through the public API (and, after the run, read back).
cat > "$WORK/journal.c" <<'C'
#include <align.h>
#include <stdio.h>
#include <string.h>
static int fail(align_journal *j, const char *what)
{
    fprintf(stderr, "%s: %s\n", what, j ? align_journal_errmsg(j) : align_last_errmsg());
    return 1;
}
int main(int argc, char **argv)
{
    align_journal *j = NULL;
    if (argc != 3 || align_journal_open(&j, argv[2], ALIGN_JOURNAL_NOSYNC) != 0)
        return fail(NULL, "open");
    if (strcmp(argv[1], "make") == 0) {
        const char *r3[] = {"Paris is the capital of France.", "I think it is Lyon.",
                            "The capital of France is Paris, on the Seine."};
        const char *r2[] = {"2 + 2 = 4.", "5"};
        const char *hi[] = {"Hello! How can I help you today?", "what"};
        const char *r4[] = {"def add(a, b):\n    return a + b", "add = lambda a, b: a + b",
                            "print(a + b)", "def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n    return a + b"};
        struct { int kind; const char *prompt; const char **r; int k; } q[] = {
            {ALIGN_FEEDBACK_RANK, "What is the capital of France?", r3, 3},
            {ALIGN_FEEDBACK_RANK, "What is 2 + 2?", r2, 2},
            {ALIGN_FEEDBACK_LABEL, "Greet the user politely.", hi, 2},
            {ALIGN_FEEDBACK_SCORE, "Where is Paris? Score each answer.", r3, 3},
            {ALIGN_FEEDBACK_RANK, "Write a Python function that adds two numbers.", r4, 4},
            {ALIGN_FEEDBACK_RANK, "Name the capital of France.", r3, 3}};
        for (int i = 0; i < 6; i++) {
            int64_t id;
            if (align_journal_submit(j, q[i].kind, q[i].prompt, q[i].r, q[i].k, 0, &id) != 0)
                return fail(j, "submit");
        }
    } else { /* "read": every request's status and annotator, then the export */
        for (int64_t id = 1; id <= 6; id++) {
            align_feedback_request r;
            align_feedback_request_init(&r, sizeof r);
            if (align_journal_request(j, id, &r) != 0)
                return fail(j, "request");
            printf("request %lld status %d annotator %s\n", (long long)id, (int)r.status,
                   r.annotator ? r.annotator : "-");
        }
        align_dataset *d = NULL;
        int64_t n = 0;
        if (align_dataset_create(&d) != 0 || align_journal_export(j, d, 0, &n) != 0)
            return fail(j, "export");
        for (int64_t i = 0; i < align_dataset_size(d); i++) {
            char *s = NULL;
            if (align_dataset_record_json(d, i, &s) != 0)
                return fail(j, "record");
            printf("%s\n", s);
            align_free(s);
        }
        align_dataset_free(d);
    }
    align_journal_close(j);
    return 0;
}
C
# shellcheck disable=SC2086
"$CC" -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -I"$ROOT/include" ${SAN:-} "$WORK/journal.c" \
    -o "$WORK/journal" -L"$B" -lalign -Wl,-rpath,"$B"
J="$WORK/feedback.journal"
"$WORK/journal" make "$J"

"$B/bin/alignctl" label --serve --journal "$J" --port 0 >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER=$!
URL=
for _ in $(seq 100); do
    URL=$(sed -n 's|^serving \(http://.*\)$|\1|p' "$WORK/server.out")
    [ -n "$URL" ] && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.err"; echo "FAIL: the server did not start"; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "FAIL: no 'serving http://...' line"; exit 1; }
echo "server: $URL"

status=0
PUPPETEER_DIR="$PUPPETEER_DIR" CHROMIUM="$CHROMIUM" \
    node "$ROOT/tests/browser/label.test.mjs" "$URL" "$J" "$OUT/label.png" || status=$?

# Ctrl-C stops the server cleanly: exit status 0.
kill -INT "$SERVER"
rc=0
wait "$SERVER" || rc=$?
SERVER=
if [ "$rc" != 0 ]; then
    cat "$WORK/server.err"
    echo "FAIL: alignctl label exited $rc after SIGINT (want 0)"
    status=1
else
    echo "  ok   SIGINT stops the server with exit status 0"
fi
[ "$status" = 0 ] || { echo "FAIL: label_browser"; exit 1; }

# Without --serve: the counts.
counts=$("$CTL" label --journal "$J")
[ "$counts" = '{"pending":0,"answered":6,"canceled":0,"expired":0,"total":6}' ] ||
    { echo "FAIL: alignctl label --journal J printed $counts"; exit 1; }
echo "  ok   alignctl label --journal J (no --serve): $counts"

# The journal through the library: statuses, annotators, and the exported records.
cp "$J" "$WORK/copy.journal"
"$WORK/journal" read "$WORK/copy.journal" > "$WORK/read.txt"
expect='request 1 status 1 annotator alice
request 2 status 1 annotator alice
request 3 status 1 annotator alice
request 4 status 1 annotator alice
request 5 status 1 annotator alice
request 6 status 1 annotator bob'
if [ "$(head -6 "$WORK/read.txt")" != "$expect" ]; then
    cat "$WORK/read.txt"
    echo "FAIL: the journal read back through the library differs"
    exit 1
fi
/usr/bin/python3 - "$WORK/read.txt" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[6:]]
rank = [(r["prompt"], r["ranking"]) for r in recs if "ranking" in r]
want = [("What is the capital of France?", [0, 1, 0]), ("What is 2 + 2?", [1, 0]),
        ("Write a Python function that adds two numbers.", [0, 2, 0, 1]),
        ("Name the capital of France.", [2, 0, 1])]
labels = [r.get("label") for r in recs if "label" in r]
scores = [r.get("score") for r in recs if "score" in r]
ok = sorted(rank) == sorted(want) and labels == [1, 0] and scores == [0.5, -1, 2] and len(recs) == 9
print("  %s   exported through the library: %d records (4 rankings, 2 labels, 3 scores)" % ("ok" if ok else "FAIL", len(recs)))
if not ok:
    print(json.dumps(recs, indent=1))
    sys.exit(1)
PY
printf 'label_browser: passed in %.1f s; screenshot %s\n' "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$OUT/label.png"
