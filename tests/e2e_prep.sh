#!/bin/sh
# End-to-end check of $BUILD/prep on a corpus made here: byte and BPE outputs,
# token-file sizes against their headers, the train/val split, directory inputs
# (skipping *.dat, *.u8 and links to files already read), and one-line errors.
set -e
BUILD=${BUILD:-build}
PREP=$BUILD/prep
T=$(mktemp -d "${TMPDIR:-/tmp}/e2e_prep.XXXXXX")
trap 'rc=$?; rm -rf "$T"; [ $rc -eq 0 ] || echo "e2e_prep: FAIL"' EXIT

# Also called inside $(...), so the reason goes to stderr and the exit trap reports.
fail() {
    echo "e2e_prep: $*" >&2
    exit 1
}

# Token count from a token file's header (u64 at byte 16), after checking its size.
count_of() {
    [ -f "$1" ] || fail "$1 missing"
    n=$(od -An -t u8 -j 16 -N 8 "$1" | tr -d ' ')
    w=$(od -An -t u4 -j 12 -N 4 "$1" | tr -d ' ')
    [ "$(wc -c <"$1")" -eq $((32 + w * n)) ] || fail "$1: size is not 32 + $w * $n"
    echo "$n"
}

size_of() {
    wc -c <"$1" | tr -d ' '
}

# A deterministic English-like corpus of about 40 KB.
awk 'BEGIN {
    split("the of and hunter river stone over under quickly slowly was is light dark", w, " ");
    s = 1;
    for (i = 0; i < 7000; i++) {
        s = (s * 1103515245 + 12345) % 2147483648;
        printf "%s%s", w[int(s / 65536) % 14 + 1], (i % 11 == 10) ? ".\n" : " ";
    }
}' >"$T/corpus.txt"
bytes=$(size_of "$T/corpus.txt")

# Byte tokenizer: one token per byte, nanoGPT's split (train = floor(0.9 n)).
"$PREP" --input "$T/corpus.txt" --out "$T/byte" --tokenizer byte 2>"$T/log" || fail "byte run: $(cat "$T/log")"
train=$(count_of "$T/byte/train.tok")
val=$(count_of "$T/byte/val.tok")
[ $((train + val)) -eq "$bytes" ] || fail "byte: $train + $val tokens for $bytes bytes"
[ "$train" -eq "$(awk -v n="$bytes" 'BEGIN { printf "%d", n * 0.9 }')" ] || fail "byte: train split $train"
[ "$(od -An -t u4 -j 12 -N 4 "$T/byte/train.tok" | tr -d ' ')" -eq 2 ] || fail "byte: width is not 2"
grep -q '"type":"byte"' "$T/byte/tokenizer.json" || fail "byte: tokenizer.json"
[ "$(wc -l <"$T/log")" -eq 1 ] || fail "byte: summary is not one line"

# BPE at vocab 300: fewer tokens than bytes, and the counts add up to the total reported.
"$PREP" --input "$T/corpus.txt" --out "$T/bpe" --tokenizer bpe --vocab 300 --val-fraction 0.2 \
    2>"$T/log" || fail "bpe run: $(cat "$T/log")"
train=$(count_of "$T/bpe/train.tok")
val=$(count_of "$T/bpe/val.tok")
total=$(sed -n 's/.*-> \([0-9]*\) tokens.*/\1/p' "$T/log")
[ $((train + val)) -eq "$total" ] || fail "bpe: $train + $val != $total"
[ "$total" -lt "$bytes" ] || fail "bpe: $total tokens for $bytes bytes"
grep -q '"type":"bpe","vocab_size":300' "$T/bpe/tokenizer.json" || fail "bpe: tokenizer.json"

# Directory input: sorted regular files; index, .u8 and duplicate links skipped.
mkdir "$T/dir" "$T/dir/sub"
printf 'Alpha text\n' >"$T/dir/a"
printf 'Beta text\n' >"$T/dir/b"
printf '\000\001\002\003junk' >"$T/dir/a.dat"
ln -s a "$T/dir/a.u8"
ln -s a "$T/dir/c.link"
printf 'ignored\n' >"$T/dir/sub/x"
"$PREP" --input "$T/dir" --out "$T/fromdir" --val-fraction 0.5 2>"$T/log" || fail "dir run: $(cat "$T/log")"
want=$(($(size_of "$T/dir/a") + $(size_of "$T/dir/b")))
got=$(($(count_of "$T/fromdir/train.tok") + $(count_of "$T/fromdir/val.tok")))
[ "$got" -eq "$want" ] || fail "dir: $got tokens, want $want (a + b only)"
[ "$(od -An -t u2 -j 32 -N 2 "$T/fromdir/train.tok" | tr -d ' ')" -eq 65 ] || fail "dir: a is not first"

# Bad input: non-zero exit (2 for usage, 1 for I/O) and exactly one line on stderr.
expect_error() {
    code=$1
    shift
    if "$PREP" "$@" >/dev/null 2>"$T/err"; then fail "accepted: $*"; else rc=$?; fi
    [ "$rc" -eq "$code" ] || fail "exit $rc (want $code) for: $*"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "not one line of error for: $*"
}
expect_error 2 --input "$T/corpus.txt" --out "$T/x" --bogus
expect_error 2 --input "$T/corpus.txt" --out
expect_error 2 --out "$T/x"
expect_error 2 --input --out "$T/x"
expect_error 2 --input "$T/corpus.txt" --out "$T/x" --tokenizer bpe --vocab 256
expect_error 2 --input "$T/corpus.txt" --out "$T/x" --tokenizer bpe --vocab 2000000
expect_error 2 --input "$T/corpus.txt" --out "$T/x" --tokenizer wordpiece
expect_error 2 --input "$T/corpus.txt" --out "$T/x" --val-fraction 1
expect_error 2 --input "$T/corpus.txt" --out "$T/x" --val-fraction abc
expect_error 1 --input "$T/no-such-file" --out "$T/x"
printf 'abc' >"$T/tiny.txt"
expect_error 1 --input "$T/tiny.txt" --out "$T/x"
"$PREP" --help | grep -q 'usage:' || fail "--help"

leftover=$(find "$T" -name '*.tmp')
[ -z "$leftover" ] || fail "temporary files left: $leftover"
echo "e2e_prep: PASS"
