#!/bin/sh
# Run every fuzz target for SECONDS each on a working copy of its seed corpus,
# after replaying the inputs of fuzz/regressions/<target>/ (crashes found
# before, kept so that they stay fixed).
# Usage: sh fuzz/run.sh BUILD_DIR SECONDS
# Crashes are written to BUILD_DIR/fuzz-artifacts/; any crash fails the run.
set -eu
build=$1
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
work="$build/fuzz-work"
artifacts="$build/fuzz-artifacts"
mkdir -p "$work" "$artifacts"
status=0
for bin in "$build"/fuzz/*_fuzzer; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    corpus="$work/$name"
    mkdir -p "$corpus"
    if [ -d "$here/corpus/$name" ]; then
        cp -n "$here/corpus/$name"/* "$corpus"/ 2>/dev/null || true
    fi
    regressions="$here/regressions/$name"
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
        echo "fuzz: $name: replaying $(ls "$regressions" | wc -l) regression inputs"
        if ! ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="halt_on_error=1" \
            "$bin" -timeout=10 "$regressions"/* >"$work/$name.regressions.log" 2>&1; then
            echo "fuzz: $name FAILED on a regression input; last lines of its log:"
            tail -40 "$work/$name.regressions.log"
            status=1
            continue
        fi
    fi
    echo "fuzz: $name for ${seconds}s"
    log="$work/$name.log"
    if ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="halt_on_error=1" \
        "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$name-" "$corpus" "$here/corpus/$name" >"$log" 2>&1; then
        grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 | sed "s/^/fuzz: $name: /"
        grep -E "stat::number_of_executed_units" "$log" | sed "s/^/fuzz: $name: /"
    else
        echo "fuzz: $name FAILED; last lines of its log ($log):"
        tail -40 "$log"
        status=1
    fi
done
exit $status
