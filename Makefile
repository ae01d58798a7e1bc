# flashattn.h - GNU Make build for tests, examples and benchmarks.
#
#   make demo       build and run examples/demo.c
#   make test       every test, optimised and under ASan+UBSan (TSan for threaded tests),
#                   plus header compile checks (C99/C11/C++17, gcc/clang, two TUs, nvcc)
#   make bench      build and run every bench/bench_*.c
#   make examples   build every example
#   make cuda       build the CUDA tests/benchmarks (needs nvcc)
#   make install    copy the headers to $(PREFIX)/include
#
# Test files are discovered: tests/test_<x>.c. A test file that contains the word
# FA_TEST_TSAN is also built and run under ThreadSanitizer.

CC       ?= cc
CXX      ?= c++
PREFIX   ?= /usr/local
BUILD    := build
NPROC    := $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS += -j$(NPROC) --no-print-directory

HAVE_CLANG := $(shell command -v clang >/dev/null 2>&1 && echo 1)
HAVE_GXX   := $(shell command -v g++ >/dev/null 2>&1 && echo 1)
HAVE_CLANGXX := $(shell command -v clang++ >/dev/null 2>&1 && echo 1)
NVCC       ?= $(shell command -v nvcc 2>/dev/null)
# Optional AArch64 cross compiler (apt-get install gcc-aarch64-linux-gnu): compile-checks the
# NEON paths; with qemu-user, `make test-neon` also runs the fp8 tests on them.
AARCH64_CC ?= $(shell command -v aarch64-linux-gnu-gcc 2>/dev/null)
QEMU_AARCH64 ?= $(shell command -v qemu-aarch64 2>/dev/null)

WARN     := -Wall -Wextra -pedantic -Werror
CSTD     := -std=c11
OPT      := -O2 -g
BENCHOPT := -O3 -g
LDLIBS   := -lm -lpthread
SAN      := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
            -DFA_TEST_SANITIZED=1
TSANF    := -O1 -g -fsanitize=thread -DFA_TEST_SANITIZED=1
DEPS     := flashattn.h tests/harness.h

TESTS      := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))
TSAN_TESTS := $(patsubst tests/%.c,%,$(shell grep -l FA_TEST_TSAN tests/test_*.c 2>/dev/null))
EXAMPLES   := $(patsubst examples/%.c,%,$(wildcard examples/*.c))
BENCHES    := $(patsubst bench/%.c,%,$(wildcard bench/bench_*.c))

# Optional libraries the benchmarks compare against (detected, never required).
have_hdr = $(shell printf '\#include <$(1)>\nint main(void){return 0;}\n' | \
             $(CC) -x c - -o /dev/null $(2) >/dev/null 2>&1 && echo 1)
HAVE_OPENBLAS := $(call have_hdr,cblas.h,-lopenblas)
HAVE_CK       := $(call have_hdr,ck_ring.h,-lck)
BENCH_DEFS :=
BENCH_LIBS :=
ifeq ($(HAVE_OPENBLAS),1)
BENCH_DEFS += -DFA_HAVE_OPENBLAS=1
BENCH_LIBS += -lopenblas
endif
ifeq ($(HAVE_CK),1)
BENCH_DEFS += -DFA_HAVE_CK=1
BENCH_LIBS += -lck
endif

.PHONY: all test test-build test-run compile-check demo examples bench cuda test-cuda install clean

all: test-build examples

$(BUILD):
	@mkdir -p $(BUILD)

# ---- tests ----
$(BUILD)/%: tests/%.c $(DEPS) | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(OPT) -I. $< -o $@ $(LDLIBS)
$(BUILD)/%.asan: tests/%.c $(DEPS) | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(SAN) -I. $< -o $@ $(LDLIBS)
$(BUILD)/%.tsan: tests/%.c $(DEPS) | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(TSANF) -I. $< -o $@ $(LDLIBS)

TEST_BINS := $(addprefix $(BUILD)/,$(TESTS)) $(addprefix $(BUILD)/,$(addsuffix .asan,$(TESTS))) \
             $(addprefix $(BUILD)/,$(addsuffix .tsan,$(TSAN_TESTS)))

test-build: $(TEST_BINS)

# Header compile checks: C99/C11 with gcc and clang, C++17 with g++ and clang++, one program
# made of two translation units (one holding the implementation), FLASHATTN_STATIC, and the
# CUDA header with nvcc when it is installed.
COMPILE_CHECK_SRC := tests/compile/impl.c
compile-check: | $(BUILD)
	@set -e; \
	for cc in "gcc -std=c99" "gcc -std=c11" $(if $(HAVE_CLANG),"clang -std=c99" "clang -std=c11"); do \
	  $$cc $(WARN) -I. -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cc_impl.o; \
	  $$cc $(WARN) -I. -DFLASHATTN_STATIC -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cc_static.o; \
	  echo "compile-check ok: $$cc"; \
	done; \
	for cxx in $(if $(HAVE_GXX),"g++ -std=c++17") $(if $(HAVE_CLANGXX),"clang++ -std=c++17"); do \
	  $$cxx $(WARN) -I. -x c++ -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cxx_impl.o; \
	  echo "compile-check ok: $$cxx"; \
	done; \
	$(CC) $(CSTD) $(WARN) -I. tests/compile/tu_a.c tests/compile/tu_b.c -o $(BUILD)/two_tu $(LDLIBS); \
	$(BUILD)/two_tu; echo "compile-check ok: two translation units"; \
	if [ -n "$(AARCH64_CC)" ]; then \
	  $(AARCH64_CC) -std=c11 $(WARN) -I. -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cc_arm64.o && \
	  echo "compile-check ok: $(AARCH64_CC) (NEON paths)"; \
	fi; \
	if [ -n "$(NVCC)" ]; then \
	  $(NVCC) -std=c++17 -I. -x cu -c tests/compile/cuda_check.cu -o $(BUILD)/cuda_check.o && \
	  echo "compile-check ok: nvcc flashattn_cuda.cuh"; \
	else echo "compile-check: nvcc not found, CUDA header not compiled"; fi

test-run: test-build
	@set -e; fail=0; \
	for t in $(TESTS); do \
	  for v in "" .asan; do \
	    echo "== $$t$$v"; \
	    if ! $(BUILD)/$$t$$v; then echo "!! $$t$$v FAILED"; fail=1; fi; \
	  done; \
	done; \
	for t in $(TSAN_TESTS); do \
	  echo "== $$t.tsan"; \
	  if ! TSAN_OPTIONS=halt_on_error=1 $(BUILD)/$$t.tsan; then echo "!! $$t.tsan FAILED"; fail=1; fi; \
	done; \
	if [ $$fail -ne 0 ]; then echo "TESTS FAILED"; exit 1; fi; echo "ALL TESTS PASSED"

test: compile-check
	@$(MAKE) test-run

# NEON paths of the fp8 section, cross-compiled and run under qemu-user (optional, not in CI).
.PHONY: test-neon
test-neon: | $(BUILD)
	@if [ -z "$(AARCH64_CC)" ] || [ -z "$(QEMU_AARCH64)" ]; then \
	  echo "test-neon: needs aarch64-linux-gnu-gcc and qemu-aarch64"; exit 1; fi
	$(AARCH64_CC) -std=c11 $(WARN) -O2 -static -DFA_TEST_SANITIZED=1 -I. tests/test_fp8.c \
	  -o $(BUILD)/test_fp8.arm64 $(LDLIBS)
	$(QEMU_AARCH64) $(BUILD)/test_fp8.arm64

# ---- examples ----
$(BUILD)/ex_%: examples/%.c flashattn.h | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(BENCHOPT) -I. $< -o $@ $(LDLIBS)
examples: $(addprefix $(BUILD)/ex_,$(EXAMPLES))
demo: $(BUILD)/ex_demo
	$(BUILD)/ex_demo

# ---- benchmarks ----
$(BUILD)/%: bench/%.c flashattn.h bench/bench_util.h | $(BUILD)
	$(CC) $(CSTD) $(WARN) $(BENCHOPT) $(BENCH_DEFS) -I. $< -o $@ $(LDLIBS) $(BENCH_LIBS)
bench: $(addprefix $(BUILD)/,$(BENCHES))
	@for b in $(BENCHES); do echo "== $$b"; $(BUILD)/$$b || exit 1; done

install:
	install -d $(DESTDIR)$(PREFIX)/include
	install -m 644 flashattn.h flashattn_cuda.cuh $(DESTDIR)$(PREFIX)/include/

clean:
	rm -rf $(BUILD)
