// Runs an exported Hugging Face folder's tokenizer.json and tokenizer_config.json
// in one of Hugging Face's implementations of their tokenizers library and
// compares it with our tokenizer:
//   node tests/hf_tokenizer_check.cjs PKG DIR OURS.ids TEXT...
// PKG is the npm package's folder: `tokenizers` (the Rust library itself, the
// one transformers runs, through its Node binding) or `@huggingface/tokenizers`
// (their JS port, which transformers.js runs).  DIR is the export, OURS.ids our
// ids (one a line) of the TEXT files as prep reads them: one after another, with
// the end-of-text token between them when the tokenizer has one
// (tokenizer_config.json's eos_token, which the text then holds as that token's
// text).  Checks that the ids are equal token for token, that they decode to the
// text, and that the configuration's special tokens are the tokenizer's.  Prints
// one line; exits 1 on any difference.
const fs = require("fs");
const lib = require(process.argv[2]);

const [dir, oursPath, ...texts] = process.argv.slice(3);
const load = (name) => JSON.parse(fs.readFileSync(`${dir}/${name}`, "utf8"));
const config = load("tokenizer_config.json"), model = load("config.json");
const die = (msg) => { console.log(`hf_tokenizer_check: ${dir}: ${msg}`); process.exit(1); };

// The two packages' APIs behind one shape: encode and decode return promises.
function open() {
    if (typeof lib.Tokenizer.fromFile === "function") {   // the Rust library
        const t = lib.Tokenizer.fromFile(`${dir}/tokenizer.json`);
        return { name: "tokenizers (Rust)", idToToken: (id) => t.idToToken(id),
                 encode: async (s) => (await t.encode(s)).getIds(),
                 decode: (ids) => t.decode(ids, false) };
    }
    const t = new lib.Tokenizer(load("tokenizer.json"), config);
    return { name: "@huggingface/tokenizers", idToToken: (id) => t.id_to_token(id),
             encode: async (s) => t.encode(s).ids, decode: async (ids) => t.decode(ids) };
}

async function main() {
    const tok = open();
    const eos = config.eos_token;
    if (eos !== (model.eos_token_id === null ? null : tok.idToToken(model.eos_token_id)))
        die(`tokenizer_config.json's eos_token ${eos} is not config.json's eos_token_id ${model.eos_token_id}`);
    for (const key of ["bos_token", "unk_token"])
        if (config[key] !== eos) die(`${key} ${config[key]} is not eos_token ${eos}`);

    const text = texts.map((f) => fs.readFileSync(f, "utf8")).join(eos ?? "");
    const theirs = await tok.encode(text);
    const ours = fs.readFileSync(oursPath, "utf8").split("\n").filter((l) => l !== "").map(Number);
    let first = -1;
    for (let i = 0; i < Math.max(ours.length, theirs.length) && first < 0; i++)
        if (ours[i] !== theirs[i]) first = i;
    if (first >= 0) {
        const around = async (ids) => JSON.stringify(await tok.decode(ids.slice(Math.max(0, first - 3), first + 4)));
        die(`${tok.name}: ${ours.length} ids ours, ${theirs.length} theirs; first difference at ${first}: ` +
            `ours ${ours[first]} theirs ${theirs[first]}, around ${await around(ours)} / ${await around(theirs)}`);
    }
    if ((await tok.decode(theirs)) !== text) die(`${tok.name}: the ids do not decode to the text`);
    console.log(`hf_tokenizer_check: ${dir}: ${tok.name}: ${ours.length} ids equal ours, decoded to ` +
                `the ${Buffer.byteLength(text)} bytes of text`);
}
main().catch((e) => die(String(e)));
