#!/bin/sh
# Runs each cmocka test binary given on the command line, then the end-to-end
# checks (tests/e2e_*.sh) against the programs in $BUILD.  A test that cannot
# run part of itself here prints "SKIP <what>: <reason>" on stdout; an e2e
# script that cannot run at all also exits 77.  Closes with the skipped items
# and their reasons, then "N passed, N failed, N skipped" (skipped counts the
# SKIP lines; an e2e script that exited 77 is not counted as passed), and
# exits non-zero if anything failed.
BUILD=${BUILD:-build}
passed=0
failed=0
failed_names=""
out=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$out" "$out.rc" "$skips"' EXIT
# library leaks listed in tests/lsan.supp (HDF5 error paths) are not ours
SUPP="suppressions=$(pwd)/tests/lsan.supp"

# A test that hangs fails after TEST_TIMEOUT seconds (default 20 minutes, far
# beyond the slowest, under the sanitizers too) instead of holding CI until its
# own limit with no name to show.
TEST_TIMEOUT=${TEST_TIMEOUT:-1200}

# run NAME COMMAND...: runs it with its output shown and kept; collects its SKIP
# lines; counts it passed (0), skipped (77: it printed why) or failed.
run() {
    name=$1
    shift
    echo "== $name"
    { timeout -k 10 "$TEST_TIMEOUT" "$@"; echo $? >"$out.rc"; } | tee "$out"
    rc=$(cat "$out.rc")
    [ "$rc" -eq 124 ] && echo "$name: timed out after $TEST_TIMEOUT s"
    grep '^SKIP ' "$out" | sort -u | sed "s|^|$name: |" >>"$skips"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
    elif [ "$rc" -eq 77 ] && grep -q '^SKIP ' "$out"; then
        :
    else
        failed=$((failed + 1))
        failed_names="$failed_names $name"
    fi
}

for t in "$@"; do
    run "$t" env LSAN_OPTIONS="$SUPP${LSAN_OPTIONS:+:$LSAN_OPTIONS}" "$t"
done
if [ -z "$SKIP_E2E" ]; then
    for t in tests/e2e_*.sh; do
        [ -f "$t" ] || continue
        # The programs under test initialise Open MPI, HDF5 and ZeroMQ, whose
        # one-time allocations LeakSanitizer reports (often from dlopen'ed
        # plugins it cannot name): leak checks stay on for the unit tests above,
        # address and UB checks stay on here.
        run "$t" env BUILD="$BUILD" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}" sh "$t"
    done
fi
skipped=$(wc -l <"$skips")
if [ "$skipped" -gt 0 ]; then
    echo "skipped:"
    sed 's/^/  /' "$skips"
fi
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
