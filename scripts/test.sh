#!/usr/bin/env bash
# Builds and runs the whole test suite under ASan+UBSan, then the concurrency tests under TSan,
# then builds a project outside the checkout against an installed Ember (scripts/consumer_test.sh).
#   scripts/test.sh              all three
#   scripts/test.sh --asan       only the ASan+UBSan pass
#   scripts/test.sh --tsan       only the TSan pass
#   scripts/test.sh --consumer   only the installed-package pass
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-all}"
case "$mode" in
  all|--asan|--tsan|--consumer) ;;
  *) echo "test.sh: unknown mode '$mode' (--asan, --tsan or --consumer)" >&2; exit 2 ;;
esac
jobs="$(nproc)"
status=0

if [ "$mode" = all ] || [ "$mode" = --asan ]; then
  cmake --preset dev >/dev/null
  cmake --build --preset dev -j "$jobs"
  ASAN_OPTIONS="abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" \
    ctest --preset dev -j "$jobs" || status=1
fi

if [ "$mode" = all ] || [ "$mode" = --tsan ]; then
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j "$jobs"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
    ctest --preset tsan -j "$jobs" || status=1
fi

if [ "$mode" = all ] || [ "$mode" = --consumer ]; then
  bash scripts/consumer_test.sh || status=1
fi

exit "$status"
