#!/bin/sh
# Runs each libFuzzer target named on the command line (build-fuzz/fuzz/fuzz_NAME)
# for FUZZ_S seconds, one after another.  The working corpus grows in
# build-fuzz/corpus/NAME from the seeds (tests/fuzz/corpus/NAME) and the kept
# regression inputs (tests/fuzz/regress/NAME); an input that crashes, leaks,
# trips UBSan or hangs is written into tests/fuzz/regress/NAME/, where
# `make test` replays it from then on.  Prints one line per target and exits
# non-zero if any target failed.
FUZZ_S=${FUZZ_S:-60}
OUT=${FUZZ_BUILD:-build-fuzz}
failed=""
for name in "$@"; do
    bin=$OUT/fuzz/fuzz_$name
    work=$OUT/corpus/$name
    regress=tests/fuzz/regress/$name
    log=$OUT/logs/$name.log
    mkdir -p "$work" "$regress" "$OUT/logs"
    start=$(date +%s)
    # -close_fd_mask=1: the targets' own printing (the monitor's view) is not wanted
    LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp" \
    "$bin" -max_total_time="$FUZZ_S" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -close_fd_mask=1 -artifact_prefix="$regress/" "$work" "tests/fuzz/corpus/$name" "$regress" \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
    secs=$(($(date +%s) - start))
    if [ "$rc" -eq 0 ]; then
        echo "fuzz_$name: ${execs:-0} executions in ${secs} s, no failure"
    else
        echo "fuzz_$name: FAILED after ${execs:-0} executions (input kept in $regress/; log $log):"
        grep -aE 'ERROR|SUMMARY|runtime error|fuzz property|Test unit written' "$log" | head -n 8 | sed 's/^/  /'
        failed="$failed $name"
    fi
done
[ -z "$failed" ] || { echo "fuzz: failed:$failed"; exit 1; }
