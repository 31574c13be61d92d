#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz preset: clang, ASan+UBSan) and runs each for a while on a
# copy of its seed corpus in fuzz/corpus/<target>/.
#   scripts/fuzz.sh                       every target, 60 s each
#   scripts/fuzz.sh --seconds 10 cron     one target, 10 s
# Exits non-zero when a target finds a crash, a leak, a timeout or runs out of memory, and prints
# the input that reproduces it. Runs and findings stay in build/fuzz/runs/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"

bin_dir=build/fuzz/fuzz
if [ ${#targets[@]} -eq 0 ]; then
  for bin in "$bin_dir"/fuzz_*; do
    targets+=("$(basename "$bin" | sed 's/^fuzz_//')")
  done
fi

# Inputs larger than a real one only slow the search down.
max_len_of() {
  case "$1" in
    cron) echo 256 ;;           # a spec is one line
    wire_envelope) echo 4096 ;; # requests and events are small; the transport caps frames anyway
    transport_frames) echo 8192 ;; # a handshake is < 4 KiB; larger frames are claimed by their header
    *) echo 4096 ;;             # node_config: a real node.yaml is a few KB
  esac
}

passed=0
failed=0
for target in "${targets[@]}"; do
  bin="$bin_dir/fuzz_$target"
  if [ ! -x "$bin" ]; then
    echo "fuzz: no target '$target' (built: $(ls "$bin_dir" | grep '^fuzz_' | sed 's/^fuzz_//' | tr '\n' ' '))" >&2
    failed=$((failed + 1))
    continue
  fi
  run=build/fuzz/runs/$target
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/findings"
  if [ -d "fuzz/corpus/$target" ]; then
    cp -r "fuzz/corpus/$target/." "$run/corpus/"
  fi
  args=(-max_total_time="$seconds" -max_len="$(max_len_of "$target")" -timeout=10
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$run/findings/")
  if [ -f "fuzz/$target.dict" ]; then
    args+=(-dict="fuzz/$target.dict")
  fi
  echo "fuzz: $target for ${seconds}s"
  status=0
  # The outer bound catches a target that stops answering altogether.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
    timeout --kill-after=10 $((seconds + 300)) "$bin" "${args[@]}" "$run/corpus" >"$run/log" 2>&1 ||
    status=$?
  last=$(grep -E '^#[0-9]+' "$run/log" | tail -1 || true)
  echo "fuzz: $target: ${last:-no progress line}"
  findings=$(find "$run/findings" -type f | sort)
  if [ "$status" -ne 0 ] || [ -n "$findings" ]; then
    failed=$((failed + 1))
    echo "fuzz: $target FAILED (exit $status); log: $run/log" >&2
    grep -E 'ERROR: |runtime error|SUMMARY|fuzzer: ' "$run/log" | head -20 >&2 || true
    for input in $findings; do
      echo "fuzz: reproduce with: $bin $input" >&2
    done
  else
    passed=$((passed + 1))
  fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
