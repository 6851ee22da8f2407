// Lists a GGUF file as the npm package @huggingface/gguf reads it: one JSON
// object {version, metadata: {key: {type, value}}, tensors: [{name, shape,
// dtype, offset}], data_offset}, big integers as decimal strings and long
// arrays as their length, first and last elements.  tests/gguf_check.py
// compares it with what our writer put there.
//   NODE_PATH=.../node_modules node tests/gguf_list.cjs FILE.gguf
const { gguf } = require("@huggingface/gguf");

const plain = (v) => (typeof v === "bigint" ? v.toString() : v);
const brief = (v) =>
    Array.isArray(v) ? { length: v.length, first: plain(v[0]), last: plain(v[v.length - 1]) } : plain(v);

gguf(process.argv[2], { allowLocalFile: true, typedMetadata: true }).then((out) => {
    const metadata = {};
    for (const [key, entry] of Object.entries(out.typedMetadata)) {
        if (["version", "tensor_count", "kv_count"].includes(key)) continue;
        metadata[key] = { type: entry.type, sub: entry.subType, value: brief(entry.value) };
    }
    const tensors = out.tensorInfos.map((t) => ({
        name: t.name, shape: t.shape.map(plain), dtype: t.dtype, offset: plain(t.offset),
    }));
    console.log(JSON.stringify({ version: plain(out.metadata.version), metadata, tensors,
                                 data_offset: plain(out.tensorDataOffset) }));
}).catch((e) => { console.error("gguf_list: " + e.message); process.exit(1); });
