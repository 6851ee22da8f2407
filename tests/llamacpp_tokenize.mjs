// llama.cpp's tokenizer on a GGUF file, through the npm package node-llama-cpp
// (its prebuilt CPU binaries), for tests/e2e_added.sh:
//   node tests/llamacpp_tokenize.mjs NODE_MODULES MODEL.gguf TEXT OUT.ids
// tokenizes the UTF-8 file TEXT as one text with special parsing on (llama.cpp's
// parse_special: CONTROL tokens' texts are those tokens; USER_DEFINED ones always
// are), writes the ids to OUT.ids, one a line, and prints how many.  Exits 77
// after "SKIP ..." when llama.cpp cannot run here.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, modelPath, textPath, outPath] = process.argv.slice(2);
const skip = (why) => {
    console.log("SKIP llama.cpp's tokenizer: " + why);
    process.exit(77);
};
let lib, llama;
try {
    lib = await import(pathToFileURL(join(modules, "node-llama-cpp/dist/index.js")).href);
    llama = await lib.getLlama({ gpu: false, build: "never", skipDownload: true, progressLogs: false,
                                 logLevel: "error" });
} catch (e) {
    skip(`node-llama-cpp cannot run from ${modules} (make deps): ${e.message.split("\n")[0]}`);
}
const model = await llama.loadModel({ modelPath, gpuLayers: 0, vocabOnly: true });
const ids = model.tokenize(readFileSync(textPath, "utf8"), true);
writeFileSync(outPath, ids.join("\n") + "\n");
console.log(`llamacpp_tokenize: ${ids.length} ids`);
