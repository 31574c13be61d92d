#!/usr/bin/env bash
# Ember's benchmarks, built in release mode.
#   scripts/bench.sh [--quick] [ember_vs_caf options]
#       local scenarios, Ember and CAF side by side (same thread count, interleaved repetitions):
#       a table of medians with the Ember/CAF ratio, JSON lines in bench-results.jsonl (--out FILE)
#   scripts/bench.sh --all [--quick] [--out FILE]
#       every suite in turn: local vs CAF, remote (against the raw TCP floor, gRPC and CAF),
#       events, autoscaling, the admin listener's overhead, the gateway, and the seed's load test
#       (two node processes over etcd). One JSON object per figure, each with its suite and
#       commit, goes to FILE (default bench-results-all.jsonl, replaced). Once built, --quick
#       takes about 7 minutes on two cores and the full run about 12 (more where the descriptor
#       limit lets the gateway suite hold all of its idle sessions).
#   scripts/bench.sh --compare OLD.jsonl NEW.jsonl
#       the figures of two --all runs side by side, with NEW/OLD
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [[ "${1:-}" == "--compare" ]]; then
  [[ $# -eq 3 ]] || { echo "usage: $0 --compare OLD.jsonl NEW.jsonl" >&2; exit 2; }
  exec python3 "$root/scripts/bench_compare.py" "$2" "$3"  # paths as the caller gave them
fi

all=0 quick=0 out=bench-results-all.jsonl
rest=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --all) all=1; shift ;;
    --quick) quick=1; rest+=("$1"); shift ;;
    --out) out="$(realpath -m "$2")"; rest+=("$1" "$out"); shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
if [[ "$all" == 1 && ${#rest[@]} -gt 0 ]]; then
  for arg in "${rest[@]}"; do
    [[ "$arg" == --quick || "$arg" == --out || "$arg" == "$out" ]] ||
      { echo "bench: --all takes only --quick and --out FILE, not '$arg'" >&2; exit 2; }
  done
fi
cd "$root"

cmake --preset bench >/dev/null
if [[ "$all" == 0 ]]; then
  cmake --build --preset bench -j "$(nproc)" --target ember_vs_caf
  exec ./build/bench/bench/ember_vs_caf "${rest[@]}"
fi

cmake --build --preset bench -j "$(nproc)" --target ember_vs_caf ember_remote_bench \
  ember_events_bench ember_scaling_bench ember_admin_overhead_bench load_test >/dev/null
EMBER_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
export EMBER_COMMIT
quick_flag=()
[[ "$quick" == 1 ]] && quick_flag=(--quick)
work="$(mktemp -d /tmp/ember-bench-all.XXXXXX)"
started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
failed=()

# suite NAME COMMAND...: runs one suite, its JSON lines into $work/NAME.jsonl.
suite() {
  local name="$1"; shift
  printf '\n########## %s ##########\n' "$name"
  if ! "$@"; then
    echo "bench: the $name suite failed" >&2
    failed+=("$name")
  fi
}

bin=build/bench/bench
suite local "$bin/ember_vs_caf" "${quick_flag[@]}" --out "$work/local.jsonl"
suite remote "$bin/ember_remote_bench" "${quick_flag[@]}" --out "$work/remote.jsonl"
suite events "$bin/ember_events_bench" "${quick_flag[@]}" --out "$work/events.jsonl"
suite scaling "$bin/ember_scaling_bench" "${quick_flag[@]}" --out "$work/scaling.jsonl"
suite admin "$bin/ember_admin_overhead_bench" "${quick_flag[@]}" --out "$work/admin.jsonl"
suite gate bash scripts/bench_gate.sh "${quick_flag[@]}" --out "$work/gate.jsonl"
if [[ "$quick" == 1 ]]; then load_total=20000; else load_total=100000; fi
for run in 1 2 3; do
  suite "load_test (run $run)" bash examples/06_load_test/run.sh --bin "$bin/load_test" \
    --total "$load_total" --concurrency 500 --mode all --json "$work/load_test.jsonl"
done

# A line a suite wrote badly is reported and skipped; the suites' own files stay in $work until
# the merged file is in place.
if python3 - "$work" "$out" "$EMBER_COMMIT" "$started_at" <<'PY'
import json, os, pathlib, sys
work, out, commit, started = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
lines, bad = 0, 0
with open(out + ".partial", "w") as sink:
    for path in sorted(work.glob("*.jsonl")):
        for number, text in enumerate(path.read_text().splitlines(), 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                print(f"bench: {path.name}:{number} is not JSON ({e}): {text[:120]}", file=sys.stderr)
                bad += 1
                continue
            row.setdefault("suite", path.stem)
            row.setdefault("commit", commit)
            row["run_started"] = started
            sink.write(json.dumps(row) + "\n")
            lines += 1
os.replace(out + ".partial", out)
print(f"\n{lines} figures in {out}" + (f", {bad} bad lines skipped" if bad else ""))
PY
then
  rm -rf "$work"
else
  echo "bench: merging failed; the suites' own files are in $work" >&2
  failed+=(merge)
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "bench: failed suites: ${failed[*]}" >&2
  exit 1
fi
