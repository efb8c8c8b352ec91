// predict.mjs: node predict.mjs model.onnx sample.npy [more.npy ...] [--top-k N]
//             node predict.mjs model.onnx --text "a sentence" [--text "..."]  (a text model)
//
// Runs a netspec export with onnxruntime-node, its only dependency (npm install in this folder).
// onnxruntime-node exposes no metadata_props, so everything comes from the JSON sidecar that
// `netspec export` writes beside the model (model.onnx.json): the labels, the head and the
// preprocessing steps. Inputs are .npy files of raw samples as the sidecar's `raw_shape` says
// (one sample, or a batch with a leading axis), after any geometry steps (image decoding and
// resizing need an image library; see docs/sidecar.md for their exact definitions).
// A text model's sidecar has a `tokenizer` (docs/sidecar.md): --text inputs become token ids by
// the same rules as netspec's own tokenizer (netspec/data/tokenizer.py); `--ids` prints them.
// Prints the same JSON as `netspec predict --json` for classifiers.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url); // honours NODE_PATH, unlike `import`

function readNpy(path) {
  // The .npy format: magic, version, a little header dict, then the raw values (C order).
  const buf = readFileSync(path);
  if (buf.toString("latin1", 0, 6) !== "\x93NUMPY") throw new Error(`${path}: not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.toString("latin1", major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").filter((s) => s.trim()).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const readers = {
    "<f4": (i) => buf.readFloatLE(start + 4 * i),
    "<f8": (i) => buf.readDoubleLE(start + 8 * i),
    "|u1": (i) => buf.readUInt8(start + i),
    "<u2": (i) => buf.readUInt16LE(start + 2 * i),
    "<i4": (i) => buf.readInt32LE(start + 4 * i),
    "<i8": (i) => Number(buf.readBigInt64LE(start + 8 * i)),
  };
  if (!readers[descr]) throw new Error(`${path}: unsupported dtype ${descr}`);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = readers[descr](i);
  return { shape, values };
}

function preprocess(sample, pre) {
  // The value steps of the sidecar's preprocessing, on one raw sample (C, ...) as float32.
  const x = Float32Array.from(sample);
  const c = pre.raw_shape[0];
  const per = x.length / c;
  for (const step of pre.steps) {
    if (step.step === "scale") {
      for (let i = 0; i < x.length; i++) x[i] = Math.fround(x[i] * Math.fround(step.factor));
    } else if (step.step === "normalize") {
      for (let i = 0; i < x.length; i++) {
        const k = Math.floor(i / per);
        x[i] = (x[i] - step.mean[k]) / step.std[k];
      }
    } else if (step.step === "standardize_per_sample") {
      const mean = x.reduce((a, b) => a + b, 0) / x.length;
      const ss = x.reduce((a, b) => a + (b - mean) ** 2, 0);
      const std = x.length > 1 ? Math.sqrt(ss / (x.length - step.ddof)) : 0;
      for (let i = 0; i < x.length; i++) x[i] = (x[i] - mean) / (std + step.eps);
    }
  } // decode/geometry happen before (raw_shape); to_float32 and reshape: the Float32Array itself
  return x;
}

function tokens(text, tok) {
  // char: every code point; word: runs of letters, marks and digits, and each other character
  // that is not a separator (Unicode Z*, tab, newline, vertical tab, form feed, return).
  const t = tok.lowercase ? text.toLowerCase() : text;
  if (tok.level === "char") return Array.from(t);
  return t.match(/[\p{L}\p{M}\p{N}]+|[^\p{L}\p{M}\p{N}\p{Z}\t\n\v\f\r]/gu) ?? [];
}

function tokenIds(text, tok, ids) {
  // ids: 0 padding (on the right), 1 unknown, 2.. the vocabulary; cut at max_length.
  const row = new Float32Array(tok.max_length);
  tokens(text, tok).slice(0, tok.max_length).forEach((t, i) => { row[i] = ids.get(t) ?? tok.unknown_id; });
  return row;
}

function probabilities(scores, head) {
  if (head === "softmax" || head === "sigmoid") return scores;
  if (scores.length === 1) return [1 / (1 + Math.exp(-scores[0]))];
  const top = Math.max(...scores);
  const e = scores.map((s) => Math.exp(s - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

const args = process.argv.slice(2);
const k = args.indexOf("--top-k");
const topK = k >= 0 ? Number(args.splice(k, 2)[1]) : 5;
const texts = [];
for (let t = args.indexOf("--text"); t >= 0; t = args.indexOf("--text")) texts.push(args.splice(t, 2)[1]);
const d = args.indexOf("--ids");
const idsOnly = d >= 0 && args.splice(d, 1).length > 0;
const [modelPath, ...inputs] = args;
const card = JSON.parse(readFileSync(`${modelPath}.json`, "utf8")); // the sidecar
const pre = card.preprocessing;
const tok = card.tokenizer; // a text model's, else undefined
const samples = []; // [name, raw sample]: the files' samples, then the texts (as netspec)
const textSamples = [];
if (tok) {
  const ids = new Map(tok.vocab.map((t, i) => [t, i + 2]));
  texts.forEach((text, i) => textSamples.push([`text[${i}]`, tokenIds(text, tok, ids)]));
}
if (idsOnly) {
  console.log(JSON.stringify(textSamples.map(([, x]) => Array.from(x))));
  process.exit(0);
}
const sampleSize = pre.raw_shape.reduce((a, b) => a * b, 1);
for (const path of inputs) {
  const { shape, values } = readNpy(path);
  const batched = shape.length === pre.raw_shape.length + 1;
  const count = batched ? shape[0] : 1;
  if (values.length !== count * sampleSize) {
    throw new Error(`${path}: shape (${shape}) is not the raw sample shape (${pre.raw_shape})`);
  }
  for (let s = 0; s < count; s++) {
    samples.push([batched ? `${path}[${s}]` : path, values.subarray(s * sampleSize, (s + 1) * sampleSize)]);
  }
}
samples.push(...textSamples);
const ort = require("onnxruntime-node");
const session = await ort.InferenceSession.create(modelPath);
const results = [];
for (const [name, sample] of samples) {
  const x = preprocess(sample, pre);
  const feed = { [card.inputs[0].name]: new ort.Tensor("float32", x, [1, ...card.input_shape]) };
  const out = await session.run(feed);
  const p = probabilities(Array.from(out[card.outputs[0].name].data), card.head);
  let predictions;
  if (p.length === 1) { // one sigmoid unit: class 1 when p >= 0.5
    const one = p[0] >= 0.5;
    predictions = [{ label: card.classes[one ? 1 : 0], score: one ? p[0] : 1 - p[0] }];
  } else {
    predictions = p.map((score, i) => ({ label: card.classes[i], score }))
      .sort((a, b) => b.score - a.score).slice(0, topK);
  }
  results.push({ input: name, predictions });
}
console.log(JSON.stringify(results, null, 2));
