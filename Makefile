# flashattn.h - GNU Make build for tests, examples and benchmarks.
#
#   make demo       build and run examples/demo.c
#   make test       every test, optimised and under ASan+UBSan (TSan for threaded tests),
#                   plus header compile checks (C99/C11/C++17, gcc/clang, two TUs, nvcc),
#                   plus a short bounded run of each tests/fuzz_*.c libFuzzer target, plus the
#                   attention and fp8 tests on the NEON paths under qemu-aarch64 when present
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (needs clang + libFuzzer)
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
# NEON paths; with qemu-user too, `make test` also runs the attention and fp8 tests on them.
AARCH64_CC ?= $(shell command -v aarch64-linux-gnu-gcc 2>/dev/null)
QEMU_AARCH64 ?= $(shell command -v qemu-aarch64 2>/dev/null)

WARN     := -Wall -Wextra -pedantic -Werror
CSTD     := -std=c11
# -g1 (line tables): sanitizer reports and perf keep their file:line, and the test binaries build
# in about half the time of full -g (an ASan+UBSan test 47 -> 26 s on a Zen 1 core), which keeps
# make test well inside CI's budget; `make OPT="-O2 -g"` for full debug info.
OPT      := -O2 -g1
BENCHOPT := -O3 -g1
LDLIBS   := -lm -lpthread
SAN      := -O1 -g1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
            -DFA_TEST_SANITIZED=1
TSANF    := -O1 -g1 -fsanitize=thread -DFA_TEST_SANITIZED=1 -DFA_TEST_TSAN_BUILD=1
DEPS     := flashattn.h tests/harness.h

TESTS      := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))
FUZZERS    := $(patsubst tests/%.c,%,$(wildcard tests/fuzz_*.c))
TSAN_TESTS := $(patsubst tests/%.c,%,$(shell grep -l FA_TEST_TSAN tests/test_*.c 2>/dev/null))
EXAMPLES   := $(patsubst examples/%.c,%,$(wildcard examples/*.c))
BENCHES    := $(patsubst bench/%.c,%,$(wildcard bench/bench_*.c))

# Optional libraries the benchmarks compare against (detected, never required).
HASH := \#
# (GNU make 4.3 passes '\#' inside $(shell ...) on with its backslash; $(HASH) works
# in every version)
have_hdr = $(shell printf '$(HASH)include <$(1)>\nint main(void){return 0;}\n' | \
             $(CC) -x c - -o /dev/null $(2) >/dev/null 2>&1 && echo 1)
HAVE_OPENBLAS := $(call have_hdr,cblas.h,-lopenblas)
HAVE_CK       := $(call have_hdr,ck_ring.h,-lck)
HAVE_UTHASH   := $(call have_hdr,uthash.h,)
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
ifeq ($(HAVE_UTHASH),1)
BENCH_DEFS += -DFA_HAVE_UTHASH=1
endif

.PHONY: all test test-build test-run compile-check demo examples bench cuda test-cuda install clean fuzz

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

# ThreadSanitizer's runtime expects a fixed address layout; on recent kernels a randomized one
# can make it abort at start-up ("unexpected memory mapping"), so TSan binaries run with
# address-space randomization off when setarch is available. Races are still reported.
TSAN_RUN := $(shell setarch $$(uname -m) -R true >/dev/null 2>&1 && echo "setarch $$(uname -m) -R")

TEST_BINS := $(addprefix $(BUILD)/,$(TESTS)) $(addprefix $(BUILD)/,$(addsuffix .asan,$(TESTS))) \
             $(addprefix $(BUILD)/,$(addsuffix .tsan,$(TSAN_TESTS)))

# ---- fuzzers: tests/fuzz_<x>.c, libFuzzer targets built with clang when it has libFuzzer.
# `make test` runs each for FUZZ_TEST_RUNS inputs; `make fuzz` runs each for FUZZ_SECONDS.
FUZZ_TEST_RUNS ?= 100000
FUZZ_SECONDS   ?= 60
FUZZF := -std=c11 $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
HAVE_LIBFUZZER := $(if $(HAVE_CLANG),$(shell printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, \
                    unsigned long n) { (void)d; (void)n; return 0; }\n' | \
                    clang -x c - -fsanitize=fuzzer -o /dev/null >/dev/null 2>&1 && echo 1))
FUZZ_BINS := $(if $(HAVE_LIBFUZZER),$(addprefix $(BUILD)/,$(FUZZERS)))
$(BUILD)/fuzz_%: tests/fuzz_%.c $(DEPS) | $(BUILD)
	clang $(FUZZF) -I. $< -o $@

# ---- NEON: with an AArch64 cross compiler and qemu-user (.ci/run installs them when it can),
# the attention and fp8 tests are also built for aarch64 and run under qemu, beside the others.
NEON_TESTS := test_attn test_fp8
NEON_BINS  := $(if $(and $(AARCH64_CC),$(QEMU_AARCH64)),$(addprefix $(BUILD)/,$(addsuffix .arm64,$(NEON_TESTS))))
$(BUILD)/%.arm64: tests/%.c $(DEPS) | $(BUILD)
	$(AARCH64_CC) -std=c11 $(WARN) -O2 -static -DFA_TEST_SANITIZED=1 -I. $< -o $@ $(LDLIBS)

test-build: $(TEST_BINS) $(FUZZ_BINS) $(NEON_BINS)

fuzz: $(FUZZ_BINS)
	@if [ -z "$(FUZZ_BINS)" ]; then echo "fuzz: clang with libFuzzer not found"; exit 1; fi
	@for f in $(FUZZERS); do echo "== $$f ($(FUZZ_SECONDS) s)"; \
	  mkdir -p $(BUILD)/corpus_$$f; \
	  $(BUILD)/$$f -max_total_time=$(FUZZ_SECONDS) -max_len=1024 -artifact_prefix=$(BUILD)/ \
	    $(BUILD)/corpus_$$f || exit 1; done

# Header compile checks: C99/C11 with gcc and clang, C++17 with g++ and clang++, one program
# made of two translation units (one holding the implementation), FLASHATTN_STATIC, and the
# CUDA header with nvcc when it is installed.
COMPILE_CHECK_SRC := tests/compile/impl.c
# Probes that time the parts of a call: each builds against a copy of flashattn.h with hooks
# added by its instrument.py (python3). Run through bench/probe_*/run.sh.
PROBES := $(BUILD)/probe_causal $(BUILD)/probe_decode_phases
define PROBE_RECIPE
@mkdir -p $@_h
python3 $(dir $<)instrument.py flashattn.h $@_h/flashattn.h
$(CC) $(CSTD) $(WARN) -O3 -I$@_h $< -o $@ $(LDLIBS)
endef
$(BUILD)/probe_causal: bench/probe_causal/probe_causal.c bench/probe_causal/probe_common.h bench/probe_causal/instrument.py flashattn.h bench/bench_util.h | $(BUILD)
	$(PROBE_RECIPE)
$(BUILD)/probe_decode_phases: bench/probe_phases/probe_decode.c bench/probe_phases/instrument.py flashattn.h | $(BUILD)
	$(PROBE_RECIPE)
# x86-64 only (rdtsc): the tile's phase timers (phases.py) on top of instrument.py, and for
# probe_threads their atomic, per-unit form (threads.py) on top of both. Run through
# bench/probe_causal/phases.sh and threads.sh; PROBE_LDFLAGS=-static (with make -B) for a binary
# to carry to another machine.
PROBES_X86 := $(BUILD)/probe_phases $(BUILD)/probe_threads
PHASES_H := $(BUILD)/probe_phases_h/flashattn.h
$(PHASES_H): flashattn.h bench/probe_causal/instrument.py bench/probe_causal/phases.py | $(BUILD)
	@mkdir -p $(@D)
	python3 bench/probe_causal/instrument.py flashattn.h $(@D)/a.h
	python3 bench/probe_causal/phases.py $(@D)/a.h $@
$(BUILD)/probe_threads_h/flashattn.h: $(PHASES_H) bench/probe_causal/threads.py
	@mkdir -p $(@D)
	python3 bench/probe_causal/threads.py $< $@
# the probe's source first, its instrumented header second
PROBE_X86_RECIPE = $(CC) $(CSTD) $(WARN) -O3 -I$(dir $(word 2,$^)) $< -o $@ $(PROBE_LDFLAGS) $(LDLIBS)
$(BUILD)/probe_phases: bench/probe_causal/probe_phases.c $(PHASES_H) bench/probe_causal/probe_common.h bench/bench_util.h
	$(PROBE_X86_RECIPE)
$(BUILD)/probe_threads: bench/probe_causal/probe_threads.c $(BUILD)/probe_threads_h/flashattn.h bench/bench_util.h
	$(PROBE_X86_RECIPE)

compile-check: | $(BUILD)
	@set -e; \
	for cc in "gcc -std=c99" "gcc -std=c11" $(if $(HAVE_CLANG),"clang -std=c99" "clang -std=c11"); do \
	  $$cc $(WARN) -O2 -I. -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cc_impl.o; \
	  $$cc $(WARN) -I. -DFLASHATTN_STATIC -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cc_static.o; \
	  $$cc $(WARN) -I. -DFLASHATTN_NO_SIMD -DFLASHATTN_NO_THREADS -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cc_plain.o; \
	  echo "compile-check ok: $$cc"; \
	done; \
	for cxx in $(if $(HAVE_GXX),"g++ -std=c++17") $(if $(HAVE_CLANGXX),"clang++ -std=c++17"); do \
	  $$cxx $(WARN) -O2 -I. -x c++ -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cxx_impl.o; \
	  echo "compile-check ok: $$cxx"; \
	done; \
	$(CC) $(CSTD) $(WARN) -I. tests/compile/tu_a.c tests/compile/tu_b.c -o $(BUILD)/two_tu $(LDLIBS); \
	$(BUILD)/two_tu; echo "compile-check ok: two translation units"; \
	$(CC) $(CSTD) $(WARN) -O2 -I. bench/probe_deckern.c -o $(BUILD)/probe_deckern $(LDLIBS); \
	echo "compile-check ok: bench/probe_deckern.c"; \
	if command -v python3 > /dev/null 2>&1; then \
	  $(MAKE) -s $(PROBES); \
	  if [ "$$(uname -m)" = x86_64 ]; then $(MAKE) -s $(PROBES_X86); fi; \
	  echo "compile-check ok: bench/probe_causal, bench/probe_phases (instrumented copies of the header)"; \
	else echo "compile-check: python3 not found, the instrumented probes not built"; fi; \
	if [ "$$(uname -m)" = x86_64 ]; then tests/check_codegen.sh gcc $(if $(HAVE_CLANG),clang); fi; \
	if [ -n "$(AARCH64_CC)" ]; then \
	  $(AARCH64_CC) -std=c11 $(WARN) -I. -c $(COMPILE_CHECK_SRC) -o $(BUILD)/cc_arm64.o && \
	  echo "compile-check ok: $(AARCH64_CC) (NEON paths)"; \
	fi; \
	if [ -n "$(NVCC)" ]; then \
	  $(NVCC) -std=c++17 -I. -x cu -c tests/compile/cuda_check.cu -o $(BUILD)/cuda_check.o && \
	  $(NVCC) -std=c++17 -Xcompiler -Wall,-Wextra,-Werror -I. -Itests -c tests/test_cuda.cu -o $(BUILD)/test_cuda_check.o && \
	  echo "compile-check ok: nvcc flashattn_cuda.cuh, tests/test_cuda.cu"; \
	else echo "compile-check: nvcc not found, CUDA header not compiled"; fi

test-run: test-build examples
	@set -e; fail=0; \
	for b in $(NEON_BINS); do \
	  ( if $(QEMU_AARCH64) $$b > $$b.log 2>&1; then echo 0; else echo 1; fi > $$b.rc ) & \
	done; \
	for e in $(EXAMPLES); do \
	  echo "== example $$e"; \
	  if ! $(BUILD)/ex_$$e > $(BUILD)/ex_$$e.out 2>&1; then cat $(BUILD)/ex_$$e.out; echo "!! example $$e FAILED"; fail=1; fi; \
	done; \
	for t in $(TESTS); do \
	  for v in "" .asan; do \
	    echo "== $$t$$v"; \
	    if ! $(BUILD)/$$t$$v; then echo "!! $$t$$v FAILED"; fail=1; fi; \
	  done; \
	done; \
	for t in $(TSAN_TESTS); do \
	  echo "== $$t.tsan"; \
	  if ! TSAN_OPTIONS=halt_on_error=1 $(TSAN_RUN) $(BUILD)/$$t.tsan; then echo "!! $$t.tsan FAILED"; fail=1; fi; \
	done; \
	for f in $(if $(HAVE_LIBFUZZER),$(FUZZERS)); do \
	  echo "== $$f (libFuzzer, $(FUZZ_TEST_RUNS) runs)"; \
	  if ! $(BUILD)/$$f -runs=$(FUZZ_TEST_RUNS) -max_len=512 -artifact_prefix=$(BUILD)/ \
	       >$(BUILD)/$$f.log 2>&1; then tail -40 $(BUILD)/$$f.log; echo "!! $$f FAILED"; fail=1; \
	  else tail -1 $(BUILD)/$$f.log; fi; \
	done; \
	wait; \
	for b in $(NEON_BINS); do \
	  echo "== $$(basename $$b) (qemu-aarch64, NEON paths)"; tail -1 $$b.log; \
	  if [ "$$(cat $$b.rc)" != 0 ]; then grep -v "^ok " $$b.log | tail -40; echo "!! $$b FAILED"; fail=1; fi; \
	done; \
	if [ $$fail -ne 0 ]; then echo "TESTS FAILED"; exit 1; fi; echo "ALL TESTS PASSED"

test: compile-check
	@$(MAKE) test-run

# The NEON tests alone (make test runs them too when the tools are there).
.PHONY: test-neon
test-neon: $(NEON_BINS) | $(BUILD)
	@if [ -z "$(NEON_BINS)" ]; then echo "test-neon: needs aarch64-linux-gnu-gcc and qemu-aarch64"; exit 1; fi
	@for b in $(NEON_BINS); do echo "== $$b"; $(QEMU_AARCH64) $$b > $$b.log 2>&1 || { cat $$b.log; exit 1; }; \
	  tail -1 $$b.log; done

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

# ---- CUDA (flashattn_cuda.cuh): make cuda builds, make test-cuda runs on an sm_80+ GPU ----
NVCC_ARCH  ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a
NVCC_FLAGS ?= -std=c++17 -O3 -lineinfo $(NVCC_ARCH) -Xcompiler -Wall,-Wextra
CUDA_DEPS  := flashattn.h flashattn_cuda.cuh tests/harness.h
$(BUILD)/test_cuda: tests/test_cuda.cu $(CUDA_DEPS) | $(BUILD)
	@test -n "$(NVCC)" || { echo "nvcc not found: set NVCC=/path/to/nvcc"; exit 1; }
	$(NVCC) $(NVCC_FLAGS) -I. -Itests $< -o $@
$(BUILD)/bench_cuda: bench/bench_cuda.cu $(CUDA_DEPS) | $(BUILD)
	@test -n "$(NVCC)" || { echo "nvcc not found: set NVCC=/path/to/nvcc"; exit 1; }
	$(NVCC) $(NVCC_FLAGS) -I. $< -o $@
cuda: $(BUILD)/test_cuda $(BUILD)/bench_cuda
test-cuda: $(BUILD)/test_cuda
	$(BUILD)/test_cuda

install:
	install -d $(DESTDIR)$(PREFIX)/include
	install -m 644 flashattn.h flashattn_cuda.cuh $(DESTDIR)$(PREFIX)/include/

clean:
	rm -rf $(BUILD)
