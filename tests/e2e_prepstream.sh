#!/bin/sh
# End-to-end check of $BUILD/prep streaming its input in chunks (io/corpus.h):
#  - chunk edges change no id: train.tok, val.tok, tokenizer.json and manifest.json
#    are byte for byte those of one chunk per file (the whole text encoded at
#    once, as prep did before it streamed; and as $PREP_REF, an older prep, writes
#    them when given), at chunk sizes down to 5 bytes (GPT_PREP_CHUNK) and on 1 and
#    2 threads, for byte, bpe (both splits), gpt2 and gpt2 --hf with added tokens
#    (one holding a blank), on files with CRLF, blank runs, blank lines, long
#    lines, multibyte and ill-formed UTF-8, <|endoftext|>, an empty file, one
#    without a final newline and CJK text (cut only before its ASCII blanks);
#  - a text with no place to cut within 256 chunks is refused in one line (byte
#    cuts anywhere: it takes it); bpe, which reads its input twice, refuses a pipe;
#    a file that shrinks, grows or changes in place while it is read is refused in
#    one line; a full disk (a small tmpfs, as root) stops it with the OS reason;
#    none of them leaves DIR or DIR.tmp-*, and an existing dataset stays whole;
#  - memory stays flat: prep of 48 MB keeps its peak RSS under 100 MB, where
#    reading it whole took 240 MB (the text and 4 bytes of id per byte).
# The test can fail: a cut rule that changes an id fails the comparisons (a cut
# right after a newline does on "\n\n").  The gpt2 parts skip without GPT-2's
# vocabulary (make deps).
set -e
NAME=e2e_prepstream
. tests/lib_e2e.sh
PREP=$BUILD/prep

# The corpus: a directory of files with the cases above.
mkdir "$tmp/in"
$PY - "$tmp/in" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(5)
words = ["the", "river", "don't", "we'll", "caf\u00e9", "na\u00efve", "\u4e2d\u6587",
         "\U0001F600", "x", "42", "3.14", "!?", "--", "<|endoftext|>", "<|im_start|>",
         "<|im_end|>", "gpt-cpu", "<|im_sta", "\u00a0", "\u3000", "a\u00a0b", "I'm"]
blanks = [" ", " ", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n", "   \n  "]
def text(n):
    out = []
    while sum(map(len, out)) < n:
        out.append(r.choice(words))
        out.append(r.choice(blanks))
    return "".join(out)
open(f"{d}/a_mixed.txt", "w", encoding="utf-8", newline="").write(text(20000))
open(f"{d}/b_empty.txt", "w").close()
# ill-formed UTF-8 next to blanks and words, no final newline
raw = text(3000).encode() + b" \xff\xfe x\xe4\xb8 \xc3 \xed\xa0\x80 end"
open(f"{d}/c_bytes.txt", "wb").write(raw)
# long lines: a 20 kB line of words, one of 250 letters without a blank, CRLF
long = " ".join(r.choice(["alpha", "beta", "gamma", "\u00e9t\u00e9"]) for _ in range(4000))
open(f"{d}/d_long.txt", "w", encoding="utf-8", newline="").write(
    long + "\r\n" + "y" * 250 + "\r\n" + text(3000) + "\r\n")
open(f"{d}/e_start_blank.txt", "w", encoding="utf-8").write("  \n" + text(2000))
# CJK: no ASCII byte before a blank in 2 kB (its punctuation is not ASCII); lines
# indented with U+3000, ending in U+00A0 or U+3000 before the newline
cjk = ["\u4e2d\u6587\u3002", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff01",
       "\u300c\u4f60\u597d\u300d", "\u3000\u65e5\u672c\u8a9e", "\u00a0", "\u3000"]
open(f"{d}/f_cjk.txt", "w", encoding="utf-8").write(
    "".join(r.choice(cjk) + r.choice(["", "\n", "\n\n", " "]) for _ in range(300)) + "\n")
PY
[ "$(ls "$tmp/in" | wc -l)" -eq 6 ] || fail "corpus files: $(ls "$tmp/in")"

# Configurations: NAME then prep's tokenizer options.
configs="byte:--tokenizer byte
bpe:--tokenizer bpe --vocab 700
bytes:--tokenizer bpe --vocab 700 --split bytes"
if [ -f "$TOKDIR/encoder.json" ] && [ -f "$TOKDIR/vocab.bpe" ]; then
    # a Hugging Face folder: GPT-2's tokenizer.json with added tokens, one of them
    # (" gpt-cpu") starting with a blank after a word: a cut there would split it
    $PY - "$TOKDIR" "$tmp/hf" <<'PY'
import json, os, sys
src, d = sys.argv[1], sys.argv[2]
os.makedirs(d)
vocab = json.load(open(f"{src}/encoder.json"))
merges = [l for l in open(f"{src}/vocab.bpe", encoding="utf-8").read().split("\n")[1:] if l]
def tok(i, content, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": not special, "special": special}
added = [tok(50256, "<|endoftext|>", True), tok(50257, "<|im_start|>", True),
         tok(50258, "<|im_end|>", True), tok(50259, " gpt-cpu", False),
         tok(50260, "x 42", False)]
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
json.dump({"version": "1.0", "added_tokens": added, "normalizer": None, "pre_tokenizer": bl,
           "post_processor": None, "decoder": bl,
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": "", "end_of_word_suffix": "",
                     "fuse_unk": False, "vocab": vocab, "merges": merges}},
          open(f"{d}/tokenizer.json", "w"))
PY
    configs="$configs
gpt2:--tokenizer gpt2 --vocab-file $TOKDIR/encoder.json --merges $TOKDIR/vocab.bpe
hf:--tokenizer gpt2 --hf $tmp/hf"
else
    skip_part "gpt2" "no GPT-2 vocabulary in $TOKDIR (make deps)"
fi

same_dataset() {   # reference dir, dir, what
    for f in train.tok val.tok tokenizer.json manifest.json; do
        cmp -s "$1/$f" "$2/$f" || fail "$3: $f differs from the one-chunk dataset"
    done
}

while IFS=: read -r name opts; do
    # shellcheck disable=SC2086 # opts are words
    GPT_PREP_CHUNK=1073741824 OMP_NUM_THREADS=1 "$PREP" --input "$tmp/in" --out "$tmp/ref_$name" \
        $opts 2>"$tmp/log" || fail "$name, one chunk: $(cat "$tmp/log")"
    if [ -n "${PREP_REF:-}" ]; then
        # shellcheck disable=SC2086
        "$PREP_REF" --input "$tmp/in" --out "$tmp/old_$name" $opts 2>"$tmp/log" ||
            fail "$name: $PREP_REF: $(cat "$tmp/log")"
        same_dataset "$tmp/ref_$name" "$tmp/old_$name" "$name: $PREP_REF"
    fi
    for chunk in 5 16 100 4096; do
        for threads in 1 2; do
            # shellcheck disable=SC2086
            GPT_PREP_CHUNK=$chunk OMP_NUM_THREADS=$threads "$PREP" --input "$tmp/in" \
                --out "$tmp/s" $opts 2>"$tmp/log" ||
                fail "$name, chunks of $chunk, $threads threads: $(cat "$tmp/log")"
            grep -q "s, $threads thread" "$tmp/log" || fail "$name: not on $threads threads: $(cat "$tmp/log")"
            same_dataset "$tmp/ref_$name" "$tmp/s" "$name, chunks of $chunk bytes, $threads threads"
        done
    done
    echo "e2e_prepstream: $name: the same files at chunks of 5 to 4096 bytes, 1 and 2 threads"
done <<EOF
$configs
EOF

# fails with one line naming what is wrong, and leaves nothing: no DIR, no DIR.tmp-*
refused() {   # exit code, expected text, then the command (its env set by the caller)
    code=$1 want=$2
    shift 2
    set +e
    "$@" 2>"$tmp/err"
    rc=$?
    set -e
    [ "$rc" -eq "$code" ] || fail "$want: exit $rc, not $code: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$want: not one line: $(cat "$tmp/err")"
    grep -q "$want" "$tmp/err" || fail "no '$want' in: $(cat "$tmp/err")"
}
nothing_left() {   # dir: neither it nor a temporary folder beside it
    [ ! -e "$1" ] || fail "$1 was made"
    ! ls -d "$1".tmp-* >/dev/null 2>&1 || fail "left $(ls -d "$1".tmp-*)"
}

# no place to cut in 256 chunks of 5 bytes: refused (the byte tokenizer cuts anywhere)
head -c 1400 /dev/zero | tr '\0' 'z' >"$tmp/run.txt"
echo " tail" >>"$tmp/run.txt"
GPT_PREP_CHUNK=5 refused 1 "$tmp/run.txt: no place to cut the text within 1280 bytes" \
    "$PREP" --input "$tmp/run.txt" --out "$tmp/run" --tokenizer bpe --vocab 300
nothing_left "$tmp/run"
GPT_PREP_CHUNK=5 "$PREP" --input "$tmp/run.txt" --out "$tmp/run" 2>"$tmp/log" ||
    fail "byte on a long run: $(cat "$tmp/log")"
GPT_PREP_CHUNK=0 refused 2 "GPT_PREP_CHUNK must be a whole number of bytes, not '0'" \
    "$PREP" --input "$tmp/run.txt" --out "$tmp/run0"
echo "e2e_prepstream: a text with no place to cut is refused in one line; byte takes it"

# bpe reads its input twice: a pipe would give nothing the second time
mkfifo "$tmp/pipe"
cat "$tmp/in/a_mixed.txt" >"$tmp/pipe" &
writer=$!
refused 2 "$tmp/pipe is not a regular file, and --tokenizer bpe reads its input twice" \
    timeout 30 "$PREP" --input "$tmp/pipe" --out "$tmp/piped" --tokenizer bpe --vocab 300
nothing_left "$tmp/piped"
"$PREP" --input "$tmp/pipe" --out "$tmp/piped" 2>"$tmp/log" || fail "byte from a pipe: $(cat "$tmp/log")"
wait "$writer"
echo "e2e_prepstream: bpe refuses a pipe in one line (it reads its input twice); byte takes it"

# a /proc file says 0 bytes and holds text: it is read as its text, not refused as grown
if [ -r /proc/version ]; then
    cat /proc/version >"$tmp/version.txt"
    "$PREP" --input /proc/version --out "$tmp/procfs" 2>"$tmp/log" ||
        fail "a /proc file: $(cat "$tmp/log")"
    "$PREP" --input "$tmp/version.txt" --out "$tmp/procref" 2>"$tmp/log" ||
        fail "a copy of /proc/version: $(cat "$tmp/log")"
    same_dataset "$tmp/procref" "$tmp/procfs" "/proc/version"
    echo "e2e_prepstream: a /proc file (0 bytes by its size, text when read) is read as its text"
else
    skip_part "/proc file" "no readable /proc/version"
fi

# a file that changes while prep reads it: shrinks, grows, rewritten in place
$PY - "$tmp/big.txt" <<'PY'
import sys
words = ["alpha", "beta", "gamma", "delta", "the", "river"]
with open(sys.argv[1], "w") as f:
    for i in range(600000):
        f.write(words[i * 7 % 6] + (" " if i % 13 else "\n"))
PY
# run_changing FILE CHANGE ARGS...: prep (chunks of one byte, each its own write of
# one token: about 2 s for big.txt's 3.3 MB on the fastest machine met, where 400 kB
# were read whole before the change came) of a copy of FILE that CHANGE alters
# after its first reads; it must fail in one line naming the file, leaving nothing
run_changing() {
    change=$2
    cp "$1" "$tmp/moving.txt"
    shift 2
    touch -d "2001-01-01" "$tmp/moving.txt"
    GPT_PREP_CHUNK=1 OMP_NUM_THREADS=1 "$PREP" --input "$tmp/moving.txt" --out "$tmp/moved" \
        "$@" 2>"$tmp/err" &
    pid=$!
    sleep 0.3
    case $change in
    shrink) truncate -s 100000 "$tmp/moving.txt" ;;
    grow) echo "more text" >>"$tmp/moving.txt" ;;
    rewrite) printf 'OMEGA' | dd of="$tmp/moving.txt" bs=1 seek=10 conv=notrunc 2>/dev/null ;;
    touch) touch "$tmp/moving.txt" ;;
    esac
    set +e
    wait $pid
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || fail "$change: exit $rc, not 1: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$change: not one line: $(cat "$tmp/err")"
    grep -q "^prep: $tmp/moving.txt: changed while being read" "$tmp/err" ||
        fail "$change: $(cat "$tmp/err")"
    nothing_left "$tmp/moved"
}
for change in shrink grow rewrite; do
    run_changing "$tmp/big.txt" $change
done
# bpe reads the text twice: a file touched while it is counted is refused too (its
# chunks are words, not bytes: a larger file)
run_changing "$tmp/big.txt" touch --tokenizer bpe --vocab 270 --split bytes
echo "e2e_prepstream: a file that shrinks, grows or is rewritten while read: one line, exit 1, nothing left"

# memory: 48 MB of text in chunks of 1 MiB on 2 threads keeps the peak RSS under
# 100 MB (about 35 MB): reading it whole took 48 MB of text and 192 MB of ids.  Under
# AddressSanitizer, freed chunks wait in its quarantine (256 MB): kept to 1 MB here
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do cat "$tmp/big.txt"; done | head -c 48000000 \
    >"$tmp/mem.txt"
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1" GPT_PREP_CHUNK=1048576 \
    OMP_NUM_THREADS=2 /usr/bin/time -f "%M" "$PREP" --input "$tmp/mem.txt" \
    --out "$tmp/mem" 2>"$tmp/log" || fail "48 MB: $(cat "$tmp/log")"
rss=$(tail -n 1 "$tmp/log")
[ "$rss" -lt 100000 ] || fail "48 MB of text: peak RSS $rss kB"
[ "$(od -An -t u8 -j 16 -N 8 "$tmp/mem/train.tok" | tr -d ' ')" -eq 43200000 ] || fail "48 MB: train count"
echo "e2e_prepstream: 48 MB of text prepared with a peak RSS of $rss kB"
rm -rf "$tmp/mem" "$tmp/mem.txt"

# a full disk: the OS reason in one line; the dataset there before stays whole
if [ "$(id -u)" -ne 0 ]; then
    skip_part "full disk" "need root to mount a tmpfs"
    exit 0
fi
mkdir "$tmp/small"
if ! mount -t tmpfs -o size=400k tmpfs "$tmp/small" 2>/dev/null; then
    skip_part "full disk" "mount -t tmpfs is not permitted here"
    exit 0
fi
on_exit "umount '$tmp/small'"
"$PREP" --input "$tmp/in/e_start_blank.txt" --out "$tmp/small/data" 2>"$tmp/log" ||
    fail "small dataset: $(cat "$tmp/log")"
before=$(cat "$tmp/small/data/manifest.json")
GPT_PREP_CHUNK=4096 refused 1 "No space left on device" \
    "$PREP" --input "$tmp/big.txt" --out "$tmp/small/data"
[ "$(cat "$tmp/small/data/manifest.json")" = "$before" ] || fail "full disk: the old dataset changed"
[ "$(ls "$tmp/small")" = "data" ] || fail "full disk: left $(ls "$tmp/small")"
echo "e2e_prepstream: a full disk: one line with the OS reason, exit 1, the old dataset whole"
echo "e2e_prepstream: PASS"
