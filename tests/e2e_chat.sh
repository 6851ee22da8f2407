#!/bin/sh
# End to end: a GPT-2 chat fine-tune's chat template through import, fine-tuning
# and both exports.  The source folder: a random GPT-2 (tests/hf_gpt2.py) of 50259
# rows whose tokenizer (GPT-2's vocab.json + merges.txt, tokenizer_config.json)
# adds <|im_start|> and <|im_end|> (special) and has ChatML as its chat_template.
#  - import keeps the template in /tokenizer, byte for byte; the GGUF export holds it
#    as tokenizer.chat_template (tests/gguf_check.py's reader);
#  - llama.cpp applies it (llama_chat_apply_template on the template the GGUF file
#    gives, tests/llamacpp_chat.c): the prompt it makes of a conversation equals
#    jinja2's rendering of the template (what transformers' apply_chat_template
#    runs), and llama.cpp's tokenizer on the GGUF file (node-llama-cpp, special
#    parsing on) and prep --hf give it the same ids, each marker one token;
#  - prep --hf -> a 2-step fine-tune with --init-from -> the run's checkpoint ->
#    export hf: tokenizer_config.json's chat_template is the template, and the
#    folder imports back with it; chat_template.jinja wins over tokenizer_config.json;
#  - a list naming another template than "default" is refused, naming it.
# The test can fail: without the template the GGUF has no tokenizer.chat_template
# and the exported tokenizer_config.json no chat_template.
# Skips (exit 77) without python's ML packages or GPT-2's vocabulary (make deps);
# the llama.cpp part without node-llama-cpp, cmake or a C compiler for it.
set -e
NAME=e2e_chat
. tests/lib_e2e.sh
need_python_ml
need_gpt2_vocab
$PY -c "import jinja2" 2>/dev/null || skip "python's jinja2 is not installed"

src=$tmp/src
$PY tests/hf_gpt2.py make "$src" --tokenizer-dir "$TOKDIR" --dims 50259,16,32,1,2 >/dev/null
# transformers' ChatML template (as Hugging Face's chat fine-tunes carry it)
cat >"$tmp/chatml.jinja" <<'EOF'
{% for message in messages %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}
EOF
$PY - "$src" "$tmp/chatml.jinja" <<'PY'
import json, sys
d, tmpl = sys.argv[1], open(sys.argv[2], encoding="utf-8").read().rstrip("\n")
tok = lambda c: {"content": c, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
json.dump({"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>",
           "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
           "added_tokens_decoder": {"50256": tok("<|endoftext|>"), "50257": tok("<|im_start|>"),
                                    "50258": tok("<|im_end|>")},
           "chat_template": tmpl}, open(f"{d}/tokenizer_config.json", "w"))
open(sys.argv[2], "w", encoding="utf-8").write(tmpl)
PY

# chat_template FILE...: each file (a checkpoint, a GGUF, a tokenizer.json or
# tokenizer_config.json) holds the template
chat_template() {
    $PY - "$tmp/chatml.jinja" "$@" <<'PY'
import json, sys
sys.path.insert(0, "tests")
want = open(sys.argv[1], encoding="utf-8").read()
for f in sys.argv[2:]:
    if f.endswith(".h5"):
        import h5py
        got = h5py.File(f, "r")["tokenizer/chat_template"][()].tobytes().decode("utf-8")
    elif f.endswith(".gguf"):
        from gguf_check import Reader
        got = Reader(f).kv["tokenizer.chat_template"][1]
    else:
        got = json.load(open(f, encoding="utf-8"))["chat_template"]
    assert got == want, "%s: %r" % (f, got[:80])
PY
}

"$BUILD/import" --hf "$src" --out "$tmp/ck.h5" >/dev/null || fail "import"
"$BUILD/export" --ckpt "$tmp/ck.h5" --format gguf --out "$tmp/ck.gguf" >/dev/null || fail "export gguf"
chat_template "$tmp/ck.h5" "$tmp/ck.gguf" || fail "the template is not in the checkpoint and the GGUF"
echo "e2e_chat: import keeps the chat template, the GGUF holds it as tokenizer.chat_template"

# llama.cpp applies it: its prompt is jinja2's, and tokenizes as ours does
printf 'system\tYou are a helpful bot.\nuser\tHi there! <|im_end|> is a marker.\nassistant\tHello, how can I help?\nuser\tTell me a joke\n' \
    >"$tmp/chat.tsv"
$PY - "$tmp/chatml.jinja" "$tmp/chat.tsv" "$tmp/jinja.txt" <<'PY'
import sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
# transformers' environment for chat templates
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
msgs = [dict(zip(("role", "content"), l.rstrip("\n").split("\t")))
        for l in open(sys.argv[2], encoding="utf-8")]
out = env.from_string(open(sys.argv[1], encoding="utf-8").read()).render(
    messages=msgs, add_generation_prompt=True)
open(sys.argv[3], "w", encoding="utf-8").write(out)
PY
llama_part() {
    rc=0
    bin=$(BUILD=$BUILD sh tests/llamacpp_build.sh llama-completion) || rc=$?
    [ "$rc" -eq 77 ] && { skip_part llama.cpp "$bin"; return 0; }
    [ "$rc" -eq 0 ] || fail "llama.cpp could not be built (its log is named above)"
    lib=$(dirname "$bin")
    srcdir=$lib/../../src
    ${CC:-cc} -std=c11 -O1 -Wall -Werror -I"$srcdir/include" -I"$srcdir/ggml/include" \
        tests/llamacpp_chat.c -o "$tmp/llamacpp_chat" -L"$lib" -lllama -Wl,-rpath,"$lib" ||
        fail "tests/llamacpp_chat.c does not build against $srcdir"
    "$tmp/llamacpp_chat" "$tmp/ck.gguf" "$tmp/chat.tsv" "$tmp/llama.txt" >/dev/null 2>"$tmp/err" ||
        { tail -3 "$tmp/err"; fail "llama.cpp cannot apply the GGUF's chat template"; }
    cmp -s "$tmp/jinja.txt" "$tmp/llama.txt" || { diff "$tmp/jinja.txt" "$tmp/llama.txt" | head;
        fail "llama.cpp's prompt differs from jinja2's rendering of the template"; }
    "$BUILD/prep" --tokenizer gpt2 --hf "$src" --input "$tmp/llama.txt" --out "$tmp/prompt" \
        --val-fraction 0.5 2>/dev/null || fail "prep of llama.cpp's prompt"
    dump_tokens "$tmp/prompt" >"$tmp/ours.ids"
    llama_ids_match "$tmp/ck.gguf" "$tmp/llama.txt" "$tmp/ours.ids" || [ $? -eq 77 ]
    [ "$(grep -cx 50257 "$tmp/ours.ids")" -eq 5 ] && [ "$(grep -cx 50258 "$tmp/ours.ids")" -eq 5 ] ||
        fail "the prompt's markers are not 5 <|im_start|> and 5 <|im_end|> tokens"
    echo "e2e_chat: llama.cpp applies the GGUF's template as jinja2 does ($(wc -c <"$tmp/llama.txt") bytes), $(wc -l <"$tmp/ours.ids") ids as ours"
}
if command -v node >/dev/null 2>&1; then llama_part; else skip_part llama.cpp "node is not installed"; fi

# fine-tuning on prep --hf's data, and the run's checkpoint exported for transformers
printf 'Hello there, general Kenobi. <|im_start|>user\nhi<|im_end|>\n' >"$tmp/text.txt"
"$BUILD/prep" --tokenizer gpt2 --hf "$src" --input "$tmp/text.txt" "$tmp/chat.tsv" --out "$tmp/data" \
    --val-fraction 0.5 2>/dev/null || fail "prep --hf"
chat_template "$tmp/data/tokenizer.json" || fail "prep --hf's tokenizer.json has not the template"
cat >"$tmp/ft.json" <<JSON
{"batch_size": 1, "seq_len": 8, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 1, "max_steps": 2,
 "eval_every": 0, "log_every": 100, "precision": "fp32", "status_endpoint": "none",
 "control_endpoint": "none", "metrics_endpoint": "none", "data_dir": "$tmp/data"}
JSON
"$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/ck.h5" --set out_dir="$tmp/run" \
    >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "trainer --init-from on prep --hf's data"; }
run_ck=$(ls "$tmp"/run/ckpt_*.h5 | tail -1)
[ -f "$run_ck" ] || fail "the run wrote no checkpoint"
"$BUILD/export" --ckpt "$run_ck" --format hf --out "$tmp/ft.hf" >/dev/null || fail "export hf"
chat_template "$run_ck" "$tmp/ft.hf/tokenizer_config.json" ||
    fail "the run's checkpoint or its hf export has not the template"
"$BUILD/import" --hf "$tmp/ft.hf" --out "$tmp/back.h5" >/dev/null || fail "import of the export"
h5diff "$tmp/ck.h5" "$tmp/back.h5" /tokenizer /tokenizer >/dev/null ||
    fail "the export imported back has another /tokenizer"
echo "e2e_chat: $(basename "$run_ck") of a 2-step fine-tune exports the template to tokenizer_config.json"
# data whose tokenizer has no template (a folder without it): the run's
# checkpoints take the template of the model it starts from
cp -r "$src" "$tmp/plain"
$PY -c "import json,sys; c=json.load(open(sys.argv[1])); del c['chat_template']
json.dump(c, open(sys.argv[1], 'w'))" "$tmp/plain/tokenizer_config.json"
"$BUILD/prep" --tokenizer gpt2 --hf "$tmp/plain" --input "$tmp/text.txt" "$tmp/chat.tsv" \
    --out "$tmp/plain_data" --val-fraction 0.5 2>/dev/null || fail "prep --hf without a template"
! grep -q chat_template "$tmp/plain_data/tokenizer.json" || fail "prep made up a template"
"$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/ck.h5" --set out_dir="$tmp/plain_run" \
    --set data_dir="$tmp/plain_data" >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "trainer --init-from on data without a template"; }
chat_template "$(ls "$tmp"/plain_run/ckpt_*.h5 | tail -1)" ||
    fail "the run's checkpoint lost the template of the model it started from"
# and so do a resumed run's, from the checkpoint it resumes: init_from's file
# may have moved since the start
mv "$tmp/ck.h5" "$tmp/moved.h5"
"$BUILD/trainer" --config "$tmp/ft.json" --init-from "$tmp/ck.h5" --set out_dir="$tmp/plain_run" \
    --set data_dir="$tmp/plain_data" --set max_steps=3 --resume auto >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "the resume of a fine-tune whose init_from moved"; }
mv "$tmp/moved.h5" "$tmp/ck.h5"
chat_template "$tmp/plain_run/ckpt_000003.h5" ||
    fail "the resumed run's checkpoint lost the template of the model it started from"
echo "e2e_chat: on data without a template, the run's checkpoint keeps the model's"

# chat_template.jinja (transformers 4.47+) wins; a named template besides the default is refused
cp -r "$src" "$tmp/jinja"
printf '{{ "jinja file" }}' >"$tmp/jinja/chat_template.jinja"
"$BUILD/import" --hf "$tmp/jinja" --out "$tmp/jinja.h5" >/dev/null || fail "import with chat_template.jinja"
$PY -c "import h5py,sys; t=h5py.File(sys.argv[1])['tokenizer/chat_template'][()].tobytes()
assert t == b'{{ \"jinja file\" }}', t" "$tmp/jinja.h5" || fail "chat_template.jinja was not taken"
$PY - "$src/tokenizer_config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["chat_template"] = [{"name": "default", "template": c["chat_template"]},
                      {"name": "tool_use", "template": "{{ tools }}"}]
json.dump(c, open(sys.argv[1], "w"))
PY
if "$BUILD/import" --hf "$src" --out "$tmp/named.h5" 2>"$tmp/err"; then fail "a named template was accepted"; fi
grep -q "tokenizer_config.json: \"chat_template\" names a template \"tool_use\": only the default one is carried" \
    "$tmp/err" || { cat "$tmp/err"; fail "wrong refusal of a named template"; }
[ ! -e "$tmp/named.h5" ] || fail "a refused import left a checkpoint"
echo "e2e_chat: chat_template.jinja wins over tokenizer_config.json; a named template is refused"
echo "e2e_chat: PASS"
