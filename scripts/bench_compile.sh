#!/usr/bin/env bash
# Compile time and peak memory of a user's translation units, with the flags a user builds with:
#   include    only #include <ember/ember.hpp>
#   service    a typical service file (bench/compile/service.cpp: two handlers, a call, a send,
#              a small generated proto)
#   service+pch  the same with <ember/ember.hpp> precompiled (what target_precompile_headers does)
#   protobuf   floor: only <google/protobuf/message.h>
#   std        floor: <string> <vector> <memory> <functional>
# each at "-std=c++20 -O2" and "-std=c++20 -O0 -g". Every case is compiled RUNS times (default 5),
# interleaved, and the medians of elapsed time, CPU time (user + system: steadier than elapsed when
# other work shares the cores) and peak RSS (/usr/bin/time) are reported. One JSON object per case
# is appended to bench-results-compile.jsonl (or --out FILE).
#   scripts/bench_compile.sh [--runs N] [--out FILE] [--label TEXT]
# CXX picks the compiler (default g++). Measure on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

runs=5
out="$root/bench-results-compile.jsonl"
label=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
cxx="${CXX:-g++}"
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
protoc --cpp_out="$work" -I bench/compile bench/compile/service.proto
cp bench/compile/service.cpp "$work/"
echo '#include <ember/ember.hpp>' >"$work/include.cpp"
echo '#include <google/protobuf/message.h>' >"$work/protobuf.cpp"
printf '#include <string>\n#include <vector>\n#include <memory>\n#include <functional>\n' >"$work/std.cpp"
echo '#include <ember/ember.hpp>' >"$work/ember_pch.hpp"

declare -A flagsets=([O2]="-std=c++20 -O2" [O0g]="-std=c++20 -O0 -g")
cases=(include service service+pch protobuf std)

# The precompiled header is built once per flag set (its cost is reported, not counted per TU).
declare -A pch_cost
for fs in O2 O0g; do
  mkdir -p "$work/pch-$fs"
  cp "$work/ember_pch.hpp" "$work/pch-$fs/"
  /usr/bin/time -f "%e %M" -o "$work/pch-$fs.time" \
    $cxx ${flagsets[$fs]} -I include -x c++-header "$work/pch-$fs/ember_pch.hpp" \
    -o "$work/pch-$fs/ember_pch.hpp.gch"
  pch_cost[$fs]=$(cat "$work/pch-$fs.time")
done

compile() {  # case flagset -> "elapsed-seconds cpu-seconds kilobytes"
  local c=$1 fs=$2 src extra=()
  case "$c" in
    service+pch) src=service.cpp; extra=(-include "$work/pch-$fs/ember_pch.hpp" -Winvalid-pch) ;;
    *) src="$c.cpp" ;;
  esac
  /usr/bin/time -f "%e %U %S %M" -o "$work/t" \
    $cxx ${flagsets[$fs]} -I include -I "$work" "${extra[@]}" -c "$work/$src" -o "$work/out.o"
  awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}' "$work/t"
}

declare -A secs cpu rss
for ((i = 0; i < runs; i++)); do
  for fs in O2 O0g; do
    for c in "${cases[@]}"; do
      read -r s u k < <(compile "$c" "$fs")
      secs[$c/$fs]+="$s "
      cpu[$c/$fs]+="$u "
      rss[$c/$fs]+="$k "
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$([[ -n "$(git status --porcelain -- include 2>/dev/null)" ]] && echo true || echo false)
version=$($cxx --version | head -1)
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '%-12s %-5s %10s %10s %10s   %s\n' case flags "elapsed s" "cpu s" "peak MB" "runs, elapsed (s)"
for fs in O2 O0g; do
  for c in "${cases[@]}"; do
    m=$(echo "${secs[$c/$fs]}" | median)
    u=$(echo "${cpu[$c/$fs]}" | median)
    r=$(echo "${rss[$c/$fs]}" | median)
    mb=$(awk -v k="$r" 'BEGIN {printf "%.0f", k/1024}')
    printf '%-12s %-5s %10.2f %10.2f %10s   %s\n' "$c" "$fs" "$m" "$u" "$mb" "${secs[$c/$fs]}"
    all=$(echo "${secs[$c/$fs]}" | xargs | tr ' ' ',')
    printf '{"date":"%s","commit":"%s","headers_modified":%s,"label":"%s","compiler":"%s","case":"%s","flags":"%s","runs":%d,"median_s":%s,"median_cpu_s":%s,"median_peak_rss_mb":%s,"all_s":[%s]}\n' \
      "$date" "$commit" "$dirty" "$label" "$version" "$c" "${flagsets[$fs]}" "$runs" "$m" "$u" "$mb" "$all" >>"$out"
  done
  read -r ps pk <<<"${pch_cost[$fs]}"
  printf '%-12s %-5s %10.2f %10s %10s   (building the precompiled header, once)\n' "pch build" "$fs" "$ps" "" \
    "$(awk -v k="$pk" 'BEGIN {printf "%.0f", k/1024}')"
done
echo "appended to $out"
