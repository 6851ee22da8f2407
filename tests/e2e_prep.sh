#!/bin/sh
# End-to-end check of $BUILD/prep on a corpus made here: byte and BPE outputs
# (GPT-2's split by default, --split bytes as datasets made before it; on text
# where they cut differently, other ids), token-file sizes against their headers, the train/val split, directory inputs
# (skipping *.dat, *.u8 and links to files already read), and one-line errors
# (an input that is the output dataset or inside it among them), and the
# temporary folder a killed prep leaves removed by the next one.
set -e
NAME=e2e_prep
. tests/lib_e2e.sh
PREP=$BUILD/prep

# Token count from a token file's header (u64 at byte 16), after checking its size.
# Called inside $(...): the reason goes to stderr, the exit trap reports the failure.
count_of() {
    [ -f "$1" ] || fail "$1 missing" >&2
    n=$(od -An -t u8 -j 16 -N 8 "$1" | tr -d ' ')
    w=$(od -An -t u4 -j 12 -N 4 "$1" | tr -d ' ')
    [ "$(wc -c <"$1")" -eq $((32 + w * n)) ] || fail "$1: size is not 32 + $w * $n" >&2
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
}' >"$tmp/corpus.txt"
bytes=$(size_of "$tmp/corpus.txt")

# Byte tokenizer: one token per byte, nanoGPT's split (train = floor(0.9 n)).
"$PREP" --input "$tmp/corpus.txt" --out "$tmp/byte" --tokenizer byte 2>"$tmp/log" || fail "byte run: $(cat "$tmp/log")"
train=$(count_of "$tmp/byte/train.tok")
val=$(count_of "$tmp/byte/val.tok")
[ $((train + val)) -eq "$bytes" ] || fail "byte: $train + $val tokens for $bytes bytes"
[ "$train" -eq "$(awk -v n="$bytes" 'BEGIN { printf "%d", n * 0.9 }')" ] || fail "byte: train split $train"
[ "$(od -An -t u4 -j 12 -N 4 "$tmp/byte/train.tok" | tr -d ' ')" -eq 2 ] || fail "byte: width is not 2"
grep -q '"type":"byte"' "$tmp/byte/tokenizer.json" || fail "byte: tokenizer.json"
[ "$(wc -l <"$tmp/log")" -eq 1 ] || fail "byte: summary is not one line"

# BPE at vocab 300: fewer tokens than bytes, and the counts add up to the total reported.
"$PREP" --input "$tmp/corpus.txt" --out "$tmp/bpe" --tokenizer bpe --vocab 300 --val-fraction 0.2 \
    2>"$tmp/log" || fail "bpe run: $(cat "$tmp/log")"
train=$(count_of "$tmp/bpe/train.tok")
val=$(count_of "$tmp/bpe/val.tok")
total=$(sed -n 's/.*-> \([0-9]*\) tokens.*/\1/p' "$tmp/log")
[ $((train + val)) -eq "$total" ] || fail "bpe: $train + $val != $total"
[ "$total" -lt "$bytes" ] || fail "bpe: $total tokens for $bytes bytes"
grep -q '"type":"bpe","split":"gpt2","vocab_size":300' "$tmp/bpe/tokenizer.json" || fail "bpe: tokenizer.json"
grep -q "(bpe, split gpt2, vocab 300)" "$tmp/log" || fail "bpe: the summary does not name the split"
# --split bytes: the byte classes of bpe datasets made before GPT-2's split, whose
# tokenizer.json had no split (docs/design.md); on ASCII prose the two cut alike,
# where a non-ASCII symbol meets a letter they do not
"$PREP" --input "$tmp/corpus.txt" --out "$tmp/bytes" --tokenizer bpe --vocab 300 --val-fraction 0.2 \
    --split bytes 2>"$tmp/log" || fail "bpe --split bytes: $(cat "$tmp/log")"
grep -q '"type":"bpe","split":"bytes","vocab_size":300' "$tmp/bytes/tokenizer.json" ||
    fail "bpe --split bytes: tokenizer.json"
cmp -s "$tmp/bpe/train.tok" "$tmp/bytes/train.tok" || fail "bpe: the splits differ on ASCII prose"
awk '{ gsub(/ the /, " the\342\200\224"); gsub(/ river /, " river\360\237\214\212"); print }' \
    "$tmp/corpus.txt" >"$tmp/symbols.txt"
for split in gpt2 bytes; do
    "$PREP" --input "$tmp/symbols.txt" --out "$tmp/sym_$split" --tokenizer bpe --vocab 1000 \
        --split $split 2>"$tmp/log" || fail "bpe --split $split: $(cat "$tmp/log")"
done
! cmp -s "$tmp/sym_gpt2/train.tok" "$tmp/sym_bytes/train.tok" ||
    fail "bpe: --split bytes and gpt2 give the same ids where a symbol meets a word"

# Directory input: sorted regular files; index, .u8 and duplicate links skipped.
mkdir "$tmp/dir" "$tmp/dir/sub"
printf 'Alpha text\n' >"$tmp/dir/a"
printf 'Beta text\n' >"$tmp/dir/b"
printf '\000\001\002\003junk' >"$tmp/dir/a.dat"
ln -s a "$tmp/dir/a.u8"
ln -s a "$tmp/dir/c.link"
printf 'ignored\n' >"$tmp/dir/sub/x"
"$PREP" --input "$tmp/dir" --out "$tmp/fromdir" --val-fraction 0.5 2>"$tmp/log" || fail "dir run: $(cat "$tmp/log")"
want=$(($(size_of "$tmp/dir/a") + $(size_of "$tmp/dir/b")))
got=$(($(count_of "$tmp/fromdir/train.tok") + $(count_of "$tmp/fromdir/val.tok")))
[ "$got" -eq "$want" ] || fail "dir: $got tokens, want $want (a + b only)"
[ "$(od -An -t u2 -j 32 -N 2 "$tmp/fromdir/train.tok" | tr -d ' ')" -eq 65 ] || fail "dir: a is not first"

# Many files, with links to some of them among them: each file is read once,
# however large the table of files seen has grown (links named last, "z*").
python3 - "$tmp/many" <<'PY' || fail "making a directory of 20000 files"
import os, sys
os.mkdir(sys.argv[1])
for i in range(20000):
    with open(os.path.join(sys.argv[1], "f%05d" % i), "w") as f:
        f.write("document %d\n" % i)
for i in range(0, 20000, 997):
    os.symlink("f%05d" % i, os.path.join(sys.argv[1], "z%05d" % i))
PY
"$PREP" --input "$tmp/many" --out "$tmp/many-out" 2>"$tmp/log" || fail "many: $(cat "$tmp/log")"
want=$(cat "$tmp"/many/f* | wc -c)
got=$(($(count_of "$tmp/many-out/train.tok") + $(count_of "$tmp/many-out/val.tok")))
[ "$got" -eq "$want" ] || fail "many: $got tokens, want $want (each file once)"
rm -rf "$tmp/many" "$tmp/many-out"

# Bad input: non-zero exit (2 for usage, 1 for I/O) and exactly one line on stderr.
expect_error() {
    code=$1
    shift
    if "$PREP" "$@" >/dev/null 2>"$tmp/err"; then fail "accepted: $*"; else rc=$?; fi
    [ "$rc" -eq "$code" ] || fail "exit $rc (want $code) for: $*"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "not one line of error for: $*"
}
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --bogus
expect_error 2 --input "$tmp/corpus.txt" --out
expect_error 2 --out "$tmp/x"
expect_error 2 --input --out "$tmp/x"
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --tokenizer bpe --vocab 256
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --tokenizer bpe --vocab 2000000
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --tokenizer wordpiece
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --tokenizer bpe --split unicode
grep -q "split must be gpt2 or bytes, not 'unicode'" "$tmp/err" || fail "--split unicode: $(cat "$tmp/err")"
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --split bytes
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --val-fraction 1
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --val-fraction abc
expect_error 2 --input "$tmp/corpus.txt" --out "$tmp/x" --out "$tmp/y"
grep -q "^prep: --out given twice$" "$tmp/err" || fail "--out twice: $(cat "$tmp/err")"
[ ! -e "$tmp/x" ] && [ ! -e "$tmp/y" ] || fail "prep with --out twice made a dataset"
expect_error 1 --input "$tmp/no-such-file" --out "$tmp/x"
printf 'abc' >"$tmp/tiny.txt"
expect_error 1 --input "$tmp/tiny.txt" --out "$tmp/x"
# an --input that is the --out dataset or inside it (by real path): exit 2, the dataset unchanged
sum=$(cat "$tmp/byte"/* | cksum)
ln -s byte "$tmp/bytelink"
for args in "$tmp/byte --out $tmp/byte" "$tmp/corpus.txt $tmp/byte/train.tok --out $tmp/byte/" \
            "$tmp/bytelink/../byte --out $tmp/bytelink"; do
    # shellcheck disable=SC2086 # $tmp (mktemp -d) has no spaces
    expect_error 2 --input $args
    grep -q "is the --out directory or inside it" "$tmp/err" || fail "own dataset as input: $(cat "$tmp/err")"
done
[ "$(cat "$tmp/byte"/* | cksum)" = "$sum" ] || fail "prep of its own dataset changed it"
"$PREP" --help | grep -q 'usage:' || fail "--help"
# an --out directory holding a file that is not a dataset's (notes, the corpus):
# refused with exit 1 and one line naming it, the file untouched
mkdir "$tmp/notes"
printf 'my notes\n' >"$tmp/notes/notes.txt"
expect_error 1 --input "$tmp/corpus.txt" --out "$tmp/notes"
grep -q "prep: $tmp/notes holds notes.txt, which is not a dataset file: --out must be a new directory or a dataset to replace" \
    "$tmp/err" || fail "--out with another file: $(cat "$tmp/err")"
[ "$(cat "$tmp/notes/notes.txt" 2>/dev/null)" = "my notes" ] || fail "prep deleted or changed notes.txt in --out"
[ "$(ls "$tmp/notes")" = notes.txt ] || fail "prep wrote into a refused --out: $(ls "$tmp/notes")"
# prep over an existing dataset (the BPE one, now with the byte tokenizer):
# the new dataset replaces it whole, and nothing is left beside it (the
# DIR.tmp-XXXXXX it was built in holds the old one after the exchange)
old_manifest=$(cat "$tmp/bpe/manifest.json")
"$PREP" --input "$tmp/corpus.txt" --out "$tmp/bpe" --tokenizer byte 2>"$tmp/log" || fail "re-prep: $(cat "$tmp/log")"
[ "$(cat "$tmp/bpe/manifest.json")" != "$old_manifest" ] || fail "re-prep: manifest.json is the old one"
grep -q '"type":"byte"' "$tmp/bpe/tokenizer.json" || fail "re-prep: tokenizer.json is the old one"
[ $(($(count_of "$tmp/bpe/train.tok") + $(count_of "$tmp/bpe/val.tok"))) -eq "$bytes" ] ||
    fail "re-prep: the token files are not the byte-level ones"
[ "$(ls "$tmp/bpe" | tr '\n' ' ')" = "manifest.json tokenizer.json train.tok val.tok " ] ||
    fail "re-prep: the dataset holds $(ls "$tmp/bpe")"
python3 - "$tmp/bpe" <<'PY' || fail "re-prep: manifest.json does not describe the files beside it"
import json, os, sys
files = json.load(open(os.path.join(sys.argv[1], "manifest.json")))["files"]
assert sorted(files) == ["tokenizer.json", "train.tok", "val.tok"], files
for name, f in files.items():
    assert f["bytes"] == os.path.getsize(os.path.join(sys.argv[1], name)), (name, f)
PY
left=$(ls -d "$tmp"/bpe.tmp-* 2>/dev/null || true)
[ -z "$left" ] || fail "re-prep left a temporary directory: $left"
# an --out that is a link to a dataset (data on another disk, say): the dataset it
# names is replaced, and the link stays a link to it
ln -s bpe "$tmp/bpelink"
"$PREP" --input "$tmp/corpus.txt" --out "$tmp/bpelink" --tokenizer bpe --vocab 300 2>"$tmp/log" ||
    fail "prep through a link to a dataset: $(cat "$tmp/log")"
[ -L "$tmp/bpelink" ] || fail "prep replaced the --out link"
grep -q '"type":"bpe"' "$tmp/bpe/tokenizer.json" || fail "prep through a link: the dataset is the old one"
# a prep killed while writing leaves its DIR.tmp-XXXXXX (a copy of the dataset,
# unlocked once its writer is dead): the next prep on DIR removes it and says so
# in one line; the folder of a prep still writing (its lock held) stays
real=$(realpath "$tmp")
mkdir "$tmp/byte.tmp-dead01" "$tmp/byte.tmp-live01"
printf x >"$tmp/byte.tmp-dead01/train.tok.tmp"
hold_lock "$tmp/byte.tmp-live01"
"$PREP" --input "$tmp/corpus.txt" --out "$tmp/byte" --tokenizer byte 2>"$tmp/log" ||
    fail "prep beside a killed one's folder: $(cat "$tmp/log")"
grep -qxF "prep: removed $real/byte.tmp-dead01: left by an interrupted write of $real/byte" "$tmp/log" ||
    fail "prep beside a killed one's folder said: $(cat "$tmp/log")"
[ ! -e "$tmp/byte.tmp-dead01" ] || fail "prep left a killed prep's folder"
[ -d "$tmp/byte.tmp-live01" ] || fail "prep removed the folder of a prep still writing"
kill "$holder"
rmdir "$tmp/byte.tmp-live01"

leftover=$(find "$tmp" -name '*.tmp')
[ -z "$leftover" ] || fail "temporary files left: $leftover"
echo "e2e_prep: PASS"
