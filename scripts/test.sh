#!/usr/bin/env bash
# Installs dependencies, builds longquant and runs every test:
#   1. Release build (build/): the whole GoogleTest suite through CTest.
#   2. Debug build with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/):
#      the fast tests (everything except tests named *Slow*).
# Usage: scripts/test.sh            (from anywhere)
#        LQ_SKIP_ASAN=1 scripts/test.sh   to run only the Release suite.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"

./scripts/install-deps.sh

echo "== Release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS"
echo "== Release tests"
(cd build && ctest --output-on-failure --timeout 900 -j"$JOBS")

if [ "${LQ_SKIP_ASAN:-0}" != 1 ]; then
  echo "== Debug + ASan/UBSan build"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLQ_SANITIZE=ON -DLQ_BUILD_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$JOBS"
  echo "== ASan/UBSan tests (fast tests: names not ending in Slow; the CLI end-to-end tests run in Release only)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure --timeout 1200 -j"$JOBS" -E 'Slow|^Cli')
fi
if [ -x tests/render_report.sh ]; then
  echo "== report rendered in headless Chromium"
  ./tests/render_report.sh build
fi
echo "== all tests passed"
