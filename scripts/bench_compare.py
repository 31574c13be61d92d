#!/usr/bin/env python3
"""Compares two JSON-lines files written by `scripts/bench.sh --all`: for every figure present in
both, the median of OLD, the median of NEW and NEW/OLD. A figure is named by the text fields of its
row (suite, scenario, impl, mode, ...) and the numeric field that holds it (`value` for the suites
that name it in `metric`). Whether higher is better depends on the figure: read the unit."""
import json
import statistics
import sys

# Numeric fields that describe a configuration: part of a figure's name, so that runs with
# different settings (1, 8 or 32 clients; a quick run against a full one) are never merged.
SETTINGS = {"threads", "total", "concurrency", "members", "players"}
# Numeric fields that count repetitions: neither a name nor a figure.
REPETITIONS = {"run", "reps", "runs"}
IGNORED_TEXT = {"commit", "run_started", "date", "unit"}


def figures(path):
    out = {}
    with open(path) as f:
        for text in f:
            if not text.strip():
                continue
            row = json.loads(text)
            name = tuple(
                f"{k}={v}" for k, v in sorted(row.items())
                if (isinstance(v, str) and k not in IGNORED_TEXT) or k in SETTINGS
            )
            for key, value in row.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if key in SETTINGS or key in REPETITIONS:
                    continue
                out.setdefault(name + (key,), []).append(float(value))
    return {k: statistics.median(v) for k, v in out.items()}


def main():
    if len(sys.argv) != 3:
        print("usage: bench_compare.py OLD.jsonl NEW.jsonl", file=sys.stderr)
        return 2
    old, new = figures(sys.argv[1]), figures(sys.argv[2])
    common = sorted(set(old) & set(new))
    if not common:
        print("no figure is in both files", file=sys.stderr)
        return 1
    width = max(len(" ".join(k)) for k in common)
    print(f"{'figure':<{width}} {'old':>14} {'new':>14} {'new/old':>8}")
    for key in common:
        o, n = old[key], new[key]
        ratio = f"{n / o:.2f}" if o else "-"
        print(f"{' '.join(key):<{width}} {o:>14.6g} {n:>14.6g} {ratio:>8}")
    only = sorted(set(old) ^ set(new))
    if only:
        print(f"\n{len(only)} figures are in one file only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
