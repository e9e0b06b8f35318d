#!/usr/bin/env bash
# Verifies libalign's build and test dependencies. On Debian/Ubuntu as root it
# installs what is missing with apt-get (and says what); elsewhere it prints
# the packages to install and fails.   usage: deps.sh [--bench | --fuzz]
#   --bench  also python3-torch (make bench)
#   --fuzz   also clang and its libFuzzer runtime (make fuzz; not needed by make check)
set -u
want_bench=0
want_fuzz=0
[ "${1:-}" = "--bench" ] && want_bench=1
[ "${1:-}" = "--fuzz" ] && want_fuzz=1

missing=()   # Debian package names
have_pc()  { pkg-config --exists "$1" 2>/dev/null; }
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_hdr() { printf '#include <%s>\n' "$1" | cc -E -x c - >/dev/null 2>&1; }
# --browser (make deps-browser, CI): also Debian's chromium, for the browser
# test of `alignctl label` (tests/sh/label_browser.sh fetches puppeteer-core
# from npm itself, never a browser; without chromium it skips).
want_browser=0
for a in "$@"; do [ "$a" = "--browser" ] && want_browser=1; done

have_cmd cc          || missing+=(gcc)
have_cmd c++         || missing+=(g++)
have_cmd make        || missing+=(make)
have_cmd pkg-config  || missing+=(pkg-config)
have_pc openblas     || missing+=(libopenblas-dev)
have_pc libuv        || missing+=(libuv1-dev)
have_hdr http_parser.h || missing+=(libhttp-parser-dev)   # alignctl label --serve
if [ "$want_browser" = 1 ]; then [ -x /usr/bin/chromium ] || missing+=(chromium); fi
have_pc jansson      || missing+=(libjansson-dev)
have_pc libpcre2-8   || missing+=(libpcre2-dev)
have_pc check        || missing+=(check)
# oneDNN: the bf16 compute mode (align_compute_set); the build leaves it out without it (DNNL=auto)
have_hdr oneapi/dnnl/dnnl.h || missing+=(libdnnl-dev)
have_hdr subunit/child.h || missing+=(libsubunit-dev)
have_cmd abidiff     || missing+=(abigail-tools)
have_cmd python3     || missing+=(python3)
[ -x /usr/bin/python3 ] || missing+=(python3)
have_cmd node        || missing+=(nodejs)
have_cmd npm         || missing+=(npm)
have_cmd xmllint     || missing+=(libxml2-utils)
# data parallel: libalign_mpi and the tests under mpirun (docs/distributed.md)
have_cmd mpicc       || missing+=(libopenmpi-dev)
have_cmd mpirun      || missing+=(openmpi-bin)
# PyTorch: the benchmarks' baseline, and the reference forward that Hugging Face
# reward-model files are checked against (bindings/python/tests/test_hf_torch.py)
/usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || missing+=(python3-torch)

if [ "$want_fuzz" = 1 ]; then
  have_cmd clang || missing+=(clang)
  # libFuzzer's runtime (clang 14 on Debian 12 ships it in libclang-rt-14-dev)
  if have_cmd clang && ! ls "$(clang -print-resource-dir 2>/dev/null)"/lib/linux/libclang_rt.fuzzer-x86_64.a \
       >/dev/null 2>&1; then
    missing+=(libclang-rt-14-dev)
  fi
  have_cmd clang || missing+=(libclang-rt-14-dev)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all build and test dependencies present"
  exit 0
fi
# unique
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "deps: missing: ${missing[*]}"
if [ -r /etc/debian_version ] && have_cmd apt-get && [ "$(id -u)" = 0 ]; then
  echo "deps: installing with apt-get: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || apt-get update
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/libalign-deps.log 2>&1; then
    tail -20 /tmp/libalign-deps.log
    echo "deps: apt-get install failed (log: /tmp/libalign-deps.log)" >&2
    exit 1
  fi
  echo "deps: installed ${missing[*]}"
  exit 0
fi
echo "deps: please install these packages (Debian/Ubuntu names):" >&2
echo "    sudo apt-get install ${missing[*]}" >&2
exit 1
