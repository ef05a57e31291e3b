#!/bin/sh
# test.sh: install dependencies, build, and run every test that needs no GPU
# (make check), then the input-parsing suites again under ASan and UBSan,
# then each libFuzzer harness for 60 s (clang; make fuzz, tests/fuzz/).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/deps.sh
scripts/build.sh build
make -C build -j"$(nproc)" check
scripts/build.sh build-asan --without-cuda --enable-sanitizers
make -C build-asan -j"$(nproc)" check TESTS="$(cat tests/sanitizer-suites)"
mkdir -p build-fuzz
[ -f build-fuzz/Makefile ] || (cd build-fuzz && ../configure -q --without-cuda --enable-fuzz CC=clang)
make -C build-fuzz -j"$(nproc)" fuzz FUZZ_SECONDS=60 FUZZ_JOBS="$(nproc)"
echo "test.sh: all tests passed"
