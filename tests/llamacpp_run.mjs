// llama.cpp on a GGUF file, through the npm package node-llama-cpp (its
// prebuilt CPU binaries; never built from source here), for
// tests/e2e_llamacpp.sh:
//   node tests/llamacpp_run.mjs NODE_MODULES MODEL.gguf PROMPT N IDS OUT.f32 TEXT [VAL.tok W
//        [TEXTS OUT.ids]]
// - tokenizes PROMPT (no BOS: llama.cpp adds none for GPT-2) and generates N
//   tokens greedily with llama.cpp's own sampler (temperature 0), writing the
//   prompt and the generated text as llama.cpp detokenizes them (special
//   tokens as their text) to TEXT;
// - runs the ids in the file IDS (whitespace-separated) as one teacher-forced
//   sequence from position 0 and writes every position's logits, float32
//   [n, n_vocab], to OUT.f32;
// - with VAL.tok (prep's format) and W: the first W windows of n_ctx + 1
//   tokens at multiples of n_ctx, as build/infer --eval cuts them: mean
//   cross-entropy and greedy accuracy from llama.cpp's logits;
// - with TEXTS (a UTF-8 file) and OUT.ids: tokenizes the whole file as one
//   text, as PROMPT, and writes its ids to OUT.ids, one a line.
// Prints one JSON object: release, system_info, n_vocab, n_ctx, prompt,
// generated, eval.  The KV cache is F32 and flash attention off, so what
// differs from build/infer is the arithmetic of the products and of GELU
// (tests/e2e_llamacpp.sh says how).
// Exits 77 after "SKIP ..." when llama.cpp cannot run here.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, modelPath, prompt, nNew, idsPath, outPath, textPath, valPath, nWindows, textsPath,
       textIdsPath] = process.argv.slice(2);
const skip = (why) => {
    console.log("SKIP e2e_llamacpp: " + why);
    process.exit(77);
};

let lib;
try {
    lib = await import(pathToFileURL(join(modules, "node-llama-cpp/dist/index.js")).href);
} catch (e) {
    skip(`node-llama-cpp is not installed in ${modules} (make deps): ${e.message.split("\n")[0]}`);
}
let llama;
try {
    llama = await lib.getLlama({ gpu: false, build: "never", skipDownload: true, progressLogs: false,
                                 logLevel: "error" });
} catch (e) {
    skip("no prebuilt llama.cpp binary of node-llama-cpp runs here: " + e.message.split("\n")[0]);
}

const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const nCtx = model.trainContextSize;
const context = await model.createContext({
    // one more than the model holds: a full context would be shifted before the last
    // token.  One thread: ggml's threads spin-wait for each other, which on a
    // shared, busy machine made generation 100x slower.
    contextSize: nCtx + 1, batchSize: nCtx + 1, flashAttention: false, threads: 1,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
});
const seq = context.getSequence();

// ids run from position 0 (a fresh sequence), what next(i) asks of position i
async function teacherForced(ids, next) {
    await seq.clearHistory();
    return seq.controlledEvaluate(ids.map((t, i) => [t, { generateNext: next(i) }]));
}

const promptIds = model.tokenize(prompt);
const generated = [];
for await (const t of seq.evaluate(promptIds, { temperature: 0 })) {
    generated.push(t);
    if (generated.length >= Number(nNew)) break;
}
writeFileSync(textPath, model.detokenize([...promptIds, ...generated], true));

const ids = readFileSync(idsPath, "utf8").trim().split(/\s+/).map(Number);
const rows = await teacherForced(ids, () => ({ logits: true }));
const nVocab = rows[0].next.logits.size;
const all = new Float32Array(ids.length * nVocab);
rows.forEach((r, i) => {
    for (const [tok, v] of r.next.logits) all[i * nVocab + tok] = v;
});
writeFileSync(outPath, Buffer.from(all.buffer));

let evalOut = null;
if (valPath) {
    const buf = readFileSync(valPath);
    const width = buf.readUInt32LE(12), count = Number(buf.readBigUInt64LE(16));
    const token = (i) => (width === 2 ? buf.readUInt16LE(32 + 2 * i) : buf.readUInt32LE(32 + 4 * i));
    const windows = Math.min(Number(nWindows), Math.floor((count - 1) / nCtx));
    let loss = 0, correct = 0;
    for (let w = 0; w < windows; w++) {
        const win = Array.from({ length: nCtx + 1 }, (_, i) => token(w * nCtx + i));
        const out = await teacherForced(win.slice(0, nCtx), () => ({ logits: true }));
        for (let i = 0; i < nCtx; i++) {
            let maxTok = 0, maxLogit = -Infinity, sum = 0;
            for (const [tok, v] of out[i].next.logits)
                if (v > maxLogit || (v === maxLogit && tok < maxTok)) [maxTok, maxLogit] = [tok, v];
            for (const v of out[i].next.logits.values()) sum += Math.exp(v - maxLogit);
            loss += maxLogit + Math.log(sum) - out[i].next.logits.get(win[i + 1]);
            correct += maxTok === win[i + 1] ? 1 : 0;
        }
    }
    evalOut = { windows, tokens: windows * nCtx, loss: loss / (windows * nCtx),
                accuracy: correct / (windows * nCtx) };
}

if (textsPath)
    writeFileSync(textIdsPath, model.tokenize(readFileSync(textsPath, "utf8")).join("\n") + "\n");

console.log(JSON.stringify({
    release: llama.llamaCppRelease, system_info: llama.systemInfo, n_vocab: nVocab, n_ctx: nCtx,
    prompt: promptIds, generated, eval: evalOut,
}));
await llama.dispose();
