# libalign — plain GNU Makefile (no autotools, no CMake).
#   make            shared + static library in $(BUILD)/
#   make check      dependencies, then every test suite (the README's test command)
#   make asan       the C test suites under AddressSanitizer + UBSan ($(BUILD)-asan/)
#   make tsan       the threaded C suites under ThreadSanitizer ($(BUILD)-tsan/)
#   make abi-check  exported symbols and ABI against abi/ (with a self-test)
#   make help       all targets
.DEFAULT_GOAL := all
SHELL := /bin/bash

# ---- version: lives once, in include/align.h (docs/conventions.md, "ABI promise") ----------------
VMAJOR  := $(shell sed -n 's/^\#define ALIGN_VERSION_MAJOR \([0-9]*\).*/\1/p' include/align.h)
VMINOR  := $(shell sed -n 's/^\#define ALIGN_VERSION_MINOR \([0-9]*\).*/\1/p' include/align.h)
VPATCH  := $(shell sed -n 's/^\#define ALIGN_VERSION_PATCH \([0-9]*\).*/\1/p' include/align.h)
VERSION := $(VMAJOR).$(VMINOR).$(VPATCH)
# ABI epoch, independent of the release version; bump only on an ABI break.
SOVERSION := 0

# ---- locations ----------------------------------------------------------------
BUILD      ?= build
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR    ?=
# The Python binding (bindings/python/libalign) goes to PYTHONDIR: by default the
# purelib path /usr/bin/python3 uses for PREFIX, with Debian's dist-packages (for
# PREFIX=/usr/local: /usr/local/lib/python3.X/dist-packages, on Debian's sys.path);
# without /usr/bin/python3: $(LIBDIR)/python3/dist-packages.
ifeq ($(origin PYTHONDIR),undefined)
PYTHONDIR := $(or $(shell /usr/bin/python3 -c 'import sys, sysconfig; \
  p = sysconfig.get_path("purelib", "posix_prefix", vars={"base": sys.argv[1]}); \
  print(p.replace("/site-packages", "/dist-packages") if "deb_system" in sysconfig.get_scheme_names() else p)' \
  '$(PREFIX)' 2>/dev/null),$(LIBDIR)/python3/dist-packages)
endif

# ---- dependencies --------------------------------------------------------------
# Any cblas: BLAS_CFLAGS / BLAS_LIBS override; OpenBLAS by default.
BLAS_PC     ?= openblas
BLAS_CFLAGS ?= $(shell pkg-config --cflags $(BLAS_PC) 2>/dev/null)
BLAS_LIBS   ?= $(shell pkg-config --libs $(BLAS_PC) 2>/dev/null || echo -lopenblas)
DEP_CFLAGS  := $(shell pkg-config --cflags jansson libpcre2-8 2>/dev/null)
DEP_LIBS    := $(shell pkg-config --libs jansson libpcre2-8 2>/dev/null || echo -ljansson -lpcre2-8)
UV_CFLAGS   := $(shell pkg-config --cflags libuv 2>/dev/null)
UV_LIBS     := $(shell pkg-config --libs libuv 2>/dev/null || echo -luv)
# oneDNN (Debian libdnnl-dev) for the bf16 compute mode (lib/nn/dnnl.c): DNNL=auto builds it in
# where the header is found, DNNL=1 requires it, DNNL=0 leaves it out (the mode is then refused).
DNNL ?= auto
ifeq ($(DNNL),auto)
DNNL_FOUND := $(shell printf '\#include <oneapi/dnnl/dnnl.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo 1 || echo 0)
else
DNNL_FOUND := $(DNNL)
endif
ifeq ($(DNNL_FOUND),1)
DNNL_CFLAGS := -DALIGN_HAVE_DNNL
DNNL_LIBS   := -ldnnl -lgomp
endif
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS  := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -lpthread)

# ---- flags -----------------------------------------------------------------------
CC      ?= cc
CXX     ?= c++
OPT     ?= -O2
WERROR  ?= $(if $(CI),-Werror,)
WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes $(WERROR)
# -fno-math-errno lets gcc vectorise sqrtf/expf (docs/bench.md: a fused AdamW over 124M parameters, 346 -> 91 ms).
BASE_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g -fno-math-errno \
               -fvisibility=hidden -DALIGN_BUILDING -Iinclude -Ilib $(WARN)
SAN     ?=
LIB_CFLAGS  = $(BASE_CFLAGS) -fPIC $(SAN) $(BLAS_CFLAGS) $(DEP_CFLAGS) $(UV_CFLAGS) $(DNNL_CFLAGS) $(CFLAGS)
LIB_LIBS    = $(BLAS_LIBS) $(DEP_LIBS) $(UV_LIBS) $(DNNL_LIBS) -lm -lpthread
SO_LDFLAGS  = -shared -Wl,-soname,libalign.so.$(SOVERSION) \
              -Wl,--version-script=lib/libalign.map -Wl,--no-undefined $(SAN) $(LDFLAGS)

SRCS    := $(sort $(shell find lib -name '*.c'))
OBJS    := $(SRCS:%.c=$(BUILD)/obj/%.o)
HDRS    := $(shell find include lib -name '*.h')
SO_REAL := $(BUILD)/libalign.so.$(VERSION)
SO_NAME := $(BUILD)/libalign.so.$(SOVERSION)
SO_DEV  := $(BUILD)/libalign.so
ARCHIVE := $(BUILD)/libalign.a

.PHONY: FORCE gpt2-vocab fuzz fuzz-build all lib check check-c check-sh check-py asan tsan tsan-run abi-check \
        abi-baseline examples \
        bench demo deps deps-bench install uninstall clean help
all: lib examples

lib: $(SO_REAL) $(SO_NAME) $(SO_DEV) $(ARCHIVE)

$(BUILD)/obj/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(SO_REAL): $(OBJS) lib/libalign.map
	$(CC) $(SO_LDFLAGS) -o $@ $(OBJS) $(LIB_LIBS)
$(SO_NAME): $(SO_REAL)
	ln -sf $(notdir $<) $@
$(SO_DEV): $(SO_NAME)
	ln -sf $(notdir $<) $@
$(ARCHIVE): $(OBJS)
	rm -f $@ && ar rcs $@ $^

# ---- examples and the CLI (public API only, linked to the shared library) -------
EX_SRCS  := $(sort $(wildcard examples/*.c))
EX_BINS  := $(EX_SRCS:examples/%.c=$(BUILD)/bin/%)
EX_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g -fno-math-errno -Iinclude $(WARN) $(SAN) $(CFLAGS)
EX_LIBS   = -L$(BUILD) -lalign -Wl,-rpath,'$$ORIGIN/..' -lm $(SAN)
examples: $(EX_BINS) $(BUILD)/bin/alignctl
# the libuv example (include/align_uv.h) calls libuv itself
$(BUILD)/bin/feedback_uv: EX_LIBS += $(UV_LIBS)
$(BUILD)/bin/feedback_uv: EX_CFLAGS += $(UV_CFLAGS)
$(BUILD)/bin/feedback_uv: include/align_uv.h
$(BUILD)/bin/%: examples/%.c include/align.h $(SO_DEV)
	@mkdir -p $(dir $@)
	$(CC) $(EX_CFLAGS) $< -o $@ $(EX_LIBS) $(LDFLAGS)

# alignctl: every file of examples/alignctl/ (one per subcommand plus shared
# modules), linked with jansson for its JSON input and output, and — for
# `alignctl label --serve` only — libuv and Debian's http-parser
# (libhttp-parser-dev, no pkg-config file: HTTP_PARSER_LIBS overrides).
CTL_SRCS := $(sort $(wildcard examples/alignctl/*.c))
CTL_OBJS := $(CTL_SRCS:examples/alignctl/%.c=$(BUILD)/alignctl-obj/%.o)
CTL_HDRS := $(wildcard examples/alignctl/*.h examples/alignctl/*.def)
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS   := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
HTTP_PARSER_LIBS ?= -lhttp_parser
CTL_LIBS = $(JANSSON_LIBS) $(UV_LIBS) $(HTTP_PARSER_LIBS)
$(BUILD)/alignctl-obj/%.o: examples/alignctl/%.c $(CTL_HDRS) include/align.h Makefile
	@mkdir -p $(dir $@)
	$(CC) $(EX_CFLAGS) $(JANSSON_CFLAGS) $(UV_CFLAGS) -I$(BUILD)/alignctl-obj -c $< -o $@
# The labelling page, one self-contained HTML file, embedded as a byte array.
$(BUILD)/alignctl-obj/label_page.h: examples/alignctl/label_page.html
	@mkdir -p $(dir $@)
	@{ echo '/* generated from examples/alignctl/label_page.html by the Makefile */'; \
	  echo 'static const unsigned char LABEL_PAGE[] = {'; \
	  od -An -v -tx1 $< | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; echo '#define LABEL_PAGE_LEN sizeof LABEL_PAGE'; } > $@.tmp && mv $@.tmp $@
$(BUILD)/alignctl-obj/cmd_label.o: $(BUILD)/alignctl-obj/label_page.h
$(BUILD)/bin/alignctl: $(CTL_OBJS) $(SO_DEV)
	@mkdir -p $(dir $@)
	$(CC) $(EX_CFLAGS) $(CTL_OBJS) -o $@ $(EX_LIBS) $(CTL_LIBS) $(LDFLAGS)

# ---- MPI (docs/distributed.md) ---------------------------------------------------------
# libalign_mpi.so: the align_dist communicator over MPI (include/align_mpi.h), a
# library of its own so libalign.so never links MPI. Built with MPI=1, or by
# default where $(MPICC) is found (MPI=0 turns it off); alignctl then links it
# for `--dist mpi` (examples/alignctl/dist.c).
MPICC ?= mpicc
ifeq ($(origin MPI),undefined)
MPI := $(if $(shell command -v $(MPICC) 2>/dev/null),1,0)
endif
MPI_SO := $(BUILD)/libalign_mpi.so
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null || echo -lmpi)
lib: $(MPI_SO)
$(MPI_SO): mpi/align_mpi.c include/align_mpi.h include/align.h Makefile
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -fPIC $(SAN) $(MPI_CFLAGS) $(CFLAGS) -shared -Wl,-soname,libalign_mpi.so \
	  -Wl,--no-undefined $< -o $@ $(MPI_LIBS) $(LDFLAGS)
$(BUILD)/alignctl-obj/dist.o: EX_CFLAGS += -DALIGN_WITH_MPI $(MPI_CFLAGS)
CTL_LIBS += -lalign_mpi $(MPI_LIBS)
$(BUILD)/bin/alignctl: $(MPI_SO)
$(BUILD)/bench/bench_dist: bench/bench_dist.c include/align.h include/align_mpi.h $(ARCHIVE) $(MPI_SO)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -g -fno-math-errno -Iinclude -Ilib $(WARN) $(BLAS_CFLAGS) \
	  -DALIGN_WITH_MPI -DALIGN_STATIC $(MPI_CFLAGS) $(CFLAGS) $< -o $@ $(ARCHIVE) -L$(BUILD) -lalign_mpi \
	  -Wl,-rpath,'$$ORIGIN/..' $(MPI_LIBS) $(LIB_LIBS) $(LDFLAGS)
.PHONY: install-mpi
install: install-mpi
install-mpi: $(MPI_SO)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)
	install -m 755 $(MPI_SO) $(DESTDIR)$(LIBDIR)/
	install -m 644 include/align_mpi.h $(DESTDIR)$(INCLUDEDIR)/
.PHONY: uninstall-mpi
uninstall: uninstall-mpi
uninstall-mpi:
	rm -f $(DESTDIR)$(LIBDIR)/libalign_mpi.so $(DESTDIR)$(INCLUDEDIR)/align_mpi.h
endif

# ---- tests ----------------------------------------------------------------------------
# tests/check_<module>.c exports Suite *<module>_suite(void). Files named
# check_internal_*.c may use align__ internals and link the static archive;
# the rest use align.h only and link the real libalign.so.
PUB_TESTS := $(filter-out tests/check_main.c tests/check_internal_%.c,$(wildcard tests/check_*.c))
INT_TESTS := $(wildcard tests/check_internal_*.c)
TEST_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g -fno-math-errno -Iinclude -Ilib -Itests \
              -I$(BUILD)/tests $(WARN) -Wno-pedantic $(SAN) $(CHECK_CFLAGS) $(BLAS_CFLAGS) $(DEP_CFLAGS) $(UV_CFLAGS) $(CFLAGS)

$(BUILD)/tests/pub_suites.h: $(PUB_TESTS) Makefile
	@mkdir -p $(dir $@)
	@{ for f in $(PUB_TESTS); do n=$${f#tests/check_}; echo "SUITE($${n%.c})"; done; } > $@.tmp && mv $@.tmp $@
$(BUILD)/tests/int_suites.h: $(INT_TESTS) Makefile
	@mkdir -p $(dir $@)
	@{ for f in $(INT_TESTS); do n=$${f#tests/check_}; echo "SUITE($${n%.c})"; done; } > $@.tmp && mv $@.tmp $@

$(BUILD)/tests/check_public: tests/check_main.c $(PUB_TESTS) $(wildcard tests/*.h) $(BUILD)/tests/pub_suites.h $(SO_DEV)
	$(CC) $(TEST_CFLAGS) -DSUITES_H='"pub_suites.h"' tests/check_main.c $(PUB_TESTS) -o $@ \
	  -L$(BUILD) -lalign -Wl,-rpath,'$$ORIGIN/..' $(UV_LIBS) $(CHECK_LIBS) -lm -lpthread $(LDFLAGS)
$(BUILD)/tests/check_internal: tests/check_main.c $(INT_TESTS) $(wildcard tests/*.h) $(BUILD)/tests/int_suites.h $(ARCHIVE)
	$(CC) $(TEST_CFLAGS) -DSUITES_H='"int_suites.h"' tests/check_main.c $(INT_TESTS) -o $@ \
	  $(ARCHIVE) $(LIB_LIBS) $(CHECK_LIBS) -lm $(LDFLAGS)

TEST_ENV = CK_DEFAULT_TIMEOUT=600 ALIGN_BUILD=$(CURDIR)/$(BUILD) LD_LIBRARY_PATH=$(CURDIR)/$(BUILD)
gpt2-vocab:
	@bash tools/fetch-gpt2.sh $(BUILD)
check-c: lib gpt2-vocab $(BUILD)/tests/check_public $(BUILD)/tests/check_internal
	$(TEST_ENV) $(BUILD)/tests/check_internal
	$(TEST_ENV) $(BUILD)/tests/check_public

# Shell-level tests: tests/sh/*.sh, each run with BUILD, CC, CXX in the environment.
check-sh: lib examples
	@set -e; for t in $(sort $(wildcard tests/sh/*.sh)); do \
	  echo "== $$t"; $(TEST_ENV) BUILD=$(BUILD) CC="$(CC)" CXX="$(CXX)" SAN="$(SAN)" MAKE="$(MAKE)" LIB_LIBS="$(LIB_LIBS)" bash $$t; done

# Python binding tests (not under sanitizers: python itself is not instrumented).
check-py: lib
	@if [ -d bindings/python/tests ]; then \
	  LIBALIGN_LIBRARY=$(CURDIR)/$(SO_NAME) PYTHONPATH=$(CURDIR)/bindings/python ALIGN_BUILD=$(CURDIR)/$(BUILD) CC="$(CC)" \
	  /usr/bin/python3 -m unittest discover -s bindings/python/tests -t bindings/python -v; fi

check: deps
	$(MAKE) check-c check-sh check-py
	@echo "libalign: all test suites passed"

asan: deps
	$(MAKE) BUILD=$(BUILD)-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  check-c check-sh
	@echo "libalign: sanitizer run passed"

# ThreadSanitizer on the suites that run model calls from several host threads at once
# (TSAN_SUITES, one CK_RUN_SUITE each). tests/tsan.supp: OpenBLAS is not instrumented.
TSAN_SUITES ?= internal_threads internal_generate internal_lora internal_lora_llama internal_dist
tsan: deps
	$(MAKE) BUILD=$(BUILD)-tsan OPT=-O1 SAN="-fsanitize=thread -fno-omit-frame-pointer" tsan-run
tsan-run: lib $(BUILD)/tests/check_internal
	@set -e; for s in $(TSAN_SUITES); do echo "== tsan: $$s"; \
	  CK_RUN_SUITE=$$s TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1" \
	  $(TEST_ENV) $(BUILD)/tests/check_internal; done
	@echo "libalign: thread sanitizer run passed"
# ---- fuzzing (docs/reliability.md): libFuzzer harnesses in tests/fuzz/, clang only --------------
#   make fuzz FUZZ_SECONDS=60   builds $(BUILD)-fuzz/ and runs each harness that long
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_NAMES   := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BINS    := $(FUZZ_NAMES:%=$(BUILD)-fuzz/fuzz_%)
$(BUILD)-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(BUILD)-fuzz/libalign.a
	$(FUZZ_CC) -std=c11 -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer -Iinclude -Ilib \
	  -DFUZZ_FIXTURES='"$(CURDIR)/tests/fixtures"' $< -o $@ $(BUILD)-fuzz/libalign.a $(LIB_LIBS)
$(BUILD)-fuzz/libalign.a: $(SRCS) $(HDRS) Makefile
	$(MAKE) BUILD=$(BUILD)-fuzz CC=$(FUZZ_CC) OPT=-O1 SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
	  $(BUILD)-fuzz/libalign.a
fuzz-build:
	@bash tools/deps.sh --fuzz
	$(MAKE) $(FUZZ_BINS)
# Each harness starts from its seed corpus (tests/fuzz/corpus/NAME, copied into
# $(BUILD)-fuzz/corpus/NAME where new inputs accumulate); a crash is saved as
# $(BUILD)-fuzz/crash-NAME-* and fails the target.
fuzz: fuzz-build
	@set -e; for n in $(or $(FUZZ_ONLY),$(FUZZ_NAMES)); do \
	  mkdir -p $(BUILD)-fuzz/corpus/$$n; cp -n tests/fuzz/corpus/$$n/* $(BUILD)-fuzz/corpus/$$n/ 2>/dev/null || true; \
	  echo "== fuzz_$$n ($(FUZZ_SECONDS) s)"; \
	  $(BUILD)-fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=1024 \
	    -max_len=65536 -print_final_stats=1 -artifact_prefix=$(BUILD)-fuzz/crash-$$n- \
	    $(BUILD)-fuzz/corpus/$$n 2> $(BUILD)-fuzz/fuzz_$$n.log || { tail -40 $(BUILD)-fuzz/fuzz_$$n.log; exit 1; }; \
	  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' $(BUILD)-fuzz/fuzz_$$n.log; \
	done; echo "libalign: fuzzing found nothing in $(FUZZ_SECONDS) s per harness"

# ---- ABI (docs/conventions.md, "ABI promise") --------------------------------------------------------------
abi-check: lib
	bash tools/abi-check.sh $(SO_REAL)
abi-baseline: lib
	bash tools/abi-check.sh --update $(SO_REAL)

# ---- dependencies -----------------------------------------------------------------------
deps:
	@bash tools/deps.sh
deps-bench:
	@bash tools/deps.sh --bench
# Debian's chromium for the browser test of `alignctl label` (tests/sh/label_browser.sh
# skips without it); CI installs it.
.PHONY: deps-browser
deps-browser:
	@bash tools/deps.sh --browser

# ---- benchmarks and demo ---------------------------------------------------------------
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
$(BUILD)/bench/%: bench/%.c include/align.h $(ARCHIVE)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -g -fno-math-errno -Iinclude -Ilib $(WARN) $(BLAS_CFLAGS) $(CFLAGS) \
	  $< -o $@ $(ARCHIVE) $(LIB_LIBS) $(LDFLAGS)
bench: deps-bench lib $(BENCH_BINS)
	BUILD=$(BUILD) BENCH_JSON=$${BENCH_JSON:-$(BUILD)/bench.jsonl} bash bench/run.sh

demo: deps
	$(MAKE) lib examples
	BUILD=$(BUILD) DEMO_FAST=$(DEMO_FAST) bash examples/demo.sh

# ---- install (PREFIX, DESTDIR, LIBDIR, INCLUDEDIR honoured) -----------------------------
# The .pc holds PREFIX/LIBDIR/INCLUDEDIR: $(BUILD)/pc.vars records the values it was
# made with and is rewritten (so the .pc regenerates) whenever one changes; a
# `make check` (which installs under a test PREFIX) followed by `make install`
# must not install the test's paths.
PC_VARS := prefix=$(PREFIX) libdir=$(LIBDIR) includedir=$(INCLUDEDIR) version=$(VERSION) blas=$(BLAS_PC) dnnl=$(DNNL_FOUND)
$(BUILD)/pc.vars: FORCE
	@mkdir -p $(BUILD)
	@echo '$(PC_VARS)' | cmp -s - $@ || echo '$(PC_VARS)' > $@
FORCE:
$(BUILD)/libalign.pc: pkgconfig/libalign.pc.in Makefile $(BUILD)/pc.vars
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@BLAS_PC@|$(BLAS_PC)|' -e 's|@DNNL_LIBS@ |$(if $(DNNL_LIBS),$(DNNL_LIBS) ,)|' $< > $@

install: lib examples $(BUILD)/libalign.pc
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR)
	install -m 644 include/align.h include/align_uv.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(SO_REAL) $(DESTDIR)$(LIBDIR)/
	ln -sf libalign.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libalign.so.$(SOVERSION)
	ln -sf libalign.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libalign.so
	install -m 644 $(ARCHIVE) $(DESTDIR)$(LIBDIR)/
	install -m 644 $(BUILD)/libalign.pc $(DESTDIR)$(PKGCONFIGDIR)/
	@if [ -x $(BUILD)/bin/alignctl ]; then \
	  $(CC) $(EX_CFLAGS) $(CTL_OBJS) -o $(BUILD)/alignctl.installed -L$(BUILD) -lalign $(CTL_LIBS) -lm -Wl,-rpath,$(LIBDIR) $(LDFLAGS) && \
	  install -m 755 $(BUILD)/alignctl.installed $(DESTDIR)$(BINDIR)/alignctl; fi
	install -d $(DESTDIR)$(PYTHONDIR)/libalign
	install -m 644 $(wildcard bindings/python/libalign/*.py) $(DESTDIR)$(PYTHONDIR)/libalign/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/align.h $(DESTDIR)$(INCLUDEDIR)/align_uv.h $(DESTDIR)$(LIBDIR)/libalign.so.$(VERSION) \
	      $(DESTDIR)$(LIBDIR)/libalign.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libalign.so \
	      $(DESTDIR)$(LIBDIR)/libalign.a $(DESTDIR)$(PKGCONFIGDIR)/libalign.pc $(DESTDIR)$(BINDIR)/alignctl
	rm -rf $(DESTDIR)$(PYTHONDIR)/libalign

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz

help:
	@echo "libalign $(VERSION) — targets:"
	@echo "  all (default)  shared libalign.so.$(VERSION) (SONAME libalign.so.$(SOVERSION)), libalign.a, examples"
	@echo "  check          install missing dependencies (make deps), run every test suite"
	@echo "  asan           C and shell tests under -fsanitize=address,undefined in $(BUILD)-asan/"
	@echo "  tsan           the threaded C suites (TSAN_SUITES) under -fsanitize=thread in $(BUILD)-tsan/"
	@echo "  fuzz           libFuzzer harnesses (tests/fuzz, clang) for FUZZ_SECONDS=$(FUZZ_SECONDS) each"
	@echo "  abi-check      compare exports and ABI with abi/ (self-test included); abi-baseline rewrites it"
	@echo "  demo           the whole pipeline: SFT, rankings, reward model, GRPO, before/after table"
	@echo "  bench          benchmarks against PyTorch (BENCH_JSON=file for JSON lines)"
	@echo "  examples       example programs and alignctl in $(BUILD)/bin"
	@echo "  deps           check/install build and test dependencies (apt-get on Debian as root)"
	@echo "  deps-browser   also chromium, for the browser test of alignctl label (CI runs it)"
	@echo "  install        PREFIX=$(PREFIX) DESTDIR= LIBDIR= INCLUDEDIR= PYTHONDIR=$(PYTHONDIR) ; uninstall"
	@echo "  clean"
	@echo "Variables: BLAS_PC=openblas|blas  BLAS_CFLAGS=  BLAS_LIBS=  DNNL=auto|1|0 (oneDNN, bf16 mode)  CC=  OPT=  CI=1 (warnings are errors)"
