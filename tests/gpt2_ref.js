// GPT-2's reference encoder (npm gpt-3-encoder) on a file, ids one per line on stdout,
// bytes, tokens and MB/s (by the clock and by CPU time) on stderr.
//   node tests/gpt2_ref.js PKGDIR FILE          encode() of the file read as UTF-8: each
//                                               ill-formed sequence becomes U+FFFD, as
//                                               every UTF-8 decoder (WHATWG) makes it
//   node tests/gpt2_ref.js PKGDIR FILE --raw    the same pieces from the reference's
//                                               pattern, but each piece's own bytes
//                                               through the reference's BPE, so
//                                               ill-formed bytes stay bytes
//   node tests/gpt2_ref.js PKGDIR FILE --utf8   prints the file as the reference reads it
// The text <|endoftext|> is the token 50256 (Hugging Face's reading, prep's): the
// encoders run on the pieces between.
'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');

const [pkg, file, mode] = process.argv.slice(2);
const src = path.join(pkg, 'Encoder.js');
// The package exports encode/decode only; --raw also needs its pattern and bpe().
const m = new Module(src, module);
m.filename = src;
m.paths = Module._nodeModulePaths(pkg);
m._compile(fs.readFileSync(src, 'utf8') +
           '\nmodule.exports.inner = {pat, bpe, encoder, byte_encoder};', src);
const { encode, inner } = m.exports;

// Length of the well-formed UTF-8 sequence at i (> 0), or minus the length of the
// maximal ill-formed subpart there (what a decoder replaces by one U+FFFD).
function utf8Step(b, i) {
  const c = b[i];
  if (c < 0x80) return 1;
  let need, lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) need = 1;
  else if (c >= 0xe0 && c <= 0xef) { need = 2; if (c === 0xe0) lo = 0xa0; if (c === 0xed) hi = 0x9f; }
  else if (c >= 0xf0 && c <= 0xf4) { need = 3; if (c === 0xf0) lo = 0x90; if (c === 0xf4) hi = 0x8f; }
  else return -1;
  for (let k = 1; k <= need; k++) {
    if (i + k >= b.length || b[i + k] < lo || b[i + k] > hi) return -k;
    lo = 0x80; hi = 0xbf;
  }
  return need + 1;
}

const buf = fs.readFileSync(file);
const text = new TextDecoder('utf-8').decode(buf);
if (mode === '--utf8') {
  process.stdout.write(text);
  process.exit(0);
}

// The decoded text again, by utf8Step, with the raw bytes behind each code unit.
const units = [];   // per UTF-16 code unit: [start, end) in buf of its code point
let rebuilt = '';
for (let i = 0; i < buf.length;) {
  const step = utf8Step(buf, i), len = Math.abs(step);
  const ch = step > 0 ? buf.subarray(i, i + len).toString('utf8') : '\ufffd';
  rebuilt += ch;
  for (let u = 0; u < ch.length; u++) units.push([i, i + len]);
  i += len;
}
if (rebuilt !== text) {
  console.error('gpt2_ref: the maximal-subpart decoding disagrees with TextDecoder');
  process.exit(1);
}

function rawPiece(start, end) {   // code units [start, end) -> their input bytes
  return buf.subarray(units[start][0], units[end - 1][1]);
}

const t0 = process.hrtime.bigint(), cpu0 = process.cpuUsage();
const ids = [];
const EOT = '<|endoftext|>';
for (let start = 0; start <= text.length;) {
  const hit = text.indexOf(EOT, start), end = hit < 0 ? text.length : hit;
  const doc = text.slice(start, end);
  if (mode === '--raw') {
    for (const match of doc.matchAll(inner.pat)) {
      const bytes = rawPiece(start + match.index, start + match.index + match[0].length);
      const word = Array.from(bytes, x => inner.byte_encoder[x]).join('');
      for (const t of inner.bpe(word).split(' ')) ids.push(inner.encoder[t]);
    }
  } else {
    // encode() concatenates arrays (quadratic in the text): feed it pieces cut after a
    // lone newline between two non-blanks, where GPT-2's pattern always ends a match.
    for (const piece of doc.split(/(?<=\S\n)(?=\S)/u))
      for (const id of encode(piece)) ids.push(id);
  }
  if (hit < 0)
    break;
  ids.push(inner.encoder[EOT]);
  start = hit + EOT.length;
}
const s = Number(process.hrtime.bigint() - t0) / 1e9, cpu = process.cpuUsage(cpu0);
const cpuS = (cpu.user + cpu.system) / 1e6;
console.error(`gpt2_ref: ${buf.length} bytes, ${ids.length} tokens, ` +
              `${(buf.length / s / 1e6).toFixed(3)} MB/s, ${(buf.length / cpuS / 1e6).toFixed(3)} MB/s of CPU time`);
process.stdout.write(ids.map(String).join('\n') + (ids.length ? '\n' : ''));
