#!/bin/sh
# usage: tests/llamacpp_build.sh [PROGRAM]   (default llama-bench)
# One of llama.cpp's programs, built for this CPU from the source
# node-llama-cpp bundles (the release tests/e2e_llamacpp.sh runs; make deps
# installs the package): llama-bench for make bench's decode rows (llama.cpp
# at its best is a native build, as its users build it), llama-completion
# for e2e_llamacpp.  Prints the binary's path; builds it the first time
# (cmake) into $BUILD/llamacpp/KEY, one directory per source and CPU model
# and feature set, since the build directory outlives a change of machine (a
# native binary may not run on another CPU) and an update of the package;
# the programs share it, so a second one builds only its own files.
# Nothing of it is committed.  Exits 77 after "SKIP ..." without the
# package, git or cmake.
#
# AMX is left out of the build: this release's AMX kernels die on SIGILL at
# their first tile instruction on a Xeon with AMX (llama-bench on a q8_0 file;
# its tile configuration does not reach the thread that computes, which
# ggml-org/llama.cpp pull request 26954 mends), so llama.cpp runs its
# AVX512-VNNI kernels there, the fastest of its paths that runs.
set -e
BUILD=${BUILD:-build}
MODULES=${NODE_MODULES:-build/npm/node_modules}   # where make deps installs it
bundle="$MODULES/node-llama-cpp/llama/gitRelease.bundle"
skip() { echo "SKIP llama.cpp build: $*"; exit 77; }
[ -f "$bundle" ] || skip "no llama.cpp source in $bundle (make deps installs node-llama-cpp)"
command -v cmake >/dev/null && command -v git >/dev/null || skip "needs cmake and git (make deps)"

program=${1:-llama-bench}
flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
key=$({ grep -m2 -E "^(model name|flags)" /proc/cpuinfo; md5sum <"$bundle"; echo "$flags"; } | md5sum | cut -c1-12)
dir="$BUILD/llamacpp/$key"
bin="$dir/build/bin/$program"
failed() { tail -20 "$dir/log" >&2; echo "llama.cpp build failed (log: $dir/log)" >&2; exit 1; }
if [ ! -x "$bin" ]; then
    if [ ! -f "$dir/build/CMakeCache.txt" ]; then   # not configured yet, or a broken start
        rm -rf "$dir"
        mkdir -p "$dir"
        git clone -q "$bundle" "$dir/src" 2>"$dir/log" || { cat "$dir/log" >&2; exit 1; }
        cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
            -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
            -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >"$dir/log" 2>&1 ||
            { rm -f "$dir/build/CMakeCache.txt"; failed; }
    fi
    cmake --build "$dir/build" -j"$(nproc)" --target "$program" >>"$dir/log" 2>&1 || failed
fi
echo "$bin"
