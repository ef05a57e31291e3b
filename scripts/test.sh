#!/bin/sh
# test.sh: install dependencies, build, and run every test that needs no GPU
# (make check), then the input-parsing suites again under ASan and UBSan.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/deps.sh
scripts/build.sh build
make -C build -j"$(nproc)" check
scripts/build.sh build-asan --without-cuda --enable-sanitizers
make -C build-asan -j"$(nproc)" check TESTS="$(cat tests/sanitizer-suites)"
echo "test.sh: all tests passed"
