#!/usr/bin/env bash
# Build llama.cpp (llama-server, llama-bench, llama-quantize) from the llama-cpp-python sdist on
# the package registry, into a cache outside the repo. Idempotent: a finished build is reused.
# Usage: benchmarks/llama_cpp_build.sh   (env: SANTA_LLAMA_CACHE, default ~/.cache/santa-llama-cpp; JOBS, default 2)
set -euo pipefail
CACHE="${SANTA_LLAMA_CACHE:-$HOME/.cache/santa-llama-cpp}"
JOBS="${JOBS:-2}"
mkdir -p "$CACHE"
cd "$CACHE"
exec 9>.lock
flock 9  # a second caller waits for the first build instead of racing it
if [ -x build/bin/llama-server ] && [ -x build/bin/llama-bench ] && [ -x build/bin/llama-quantize ]; then
    echo "llama.cpp already built in $CACHE/build/bin"; exit 0
fi
if ! ls sdist/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    python3 -m pip download --no-binary :all: --no-deps -d sdist llama-cpp-python
fi
if [ ! -d src ]; then
    mkdir -p src.tmp && tar -xzf sdist/llama_cpp_python-*.tar.gz -C src.tmp --strip-components=1 && mv src.tmp src
fi
cmake -S src/vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON
nice -n 10 cmake --build build --config Release -j "$JOBS" --target llama-server llama-bench llama-quantize
echo "built: $CACHE/build/bin"
