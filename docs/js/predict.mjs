// predict.mjs: node predict.mjs model.onnx sample.npy [more.npy ...] [--top-k N]
//             node predict.mjs model.onnx photo.jpg [scan.png ...]    (an export with --preprocess)
//             node predict.mjs model.onnx --text "a sentence" [--text "..."]  (a text model)
//
// Runs a netspec export with onnxruntime-node (npm install in this folder). onnxruntime-node
// exposes no metadata_props, so everything comes from the JSON sidecar that `netspec export`
// writes beside the model (model.onnx.json): the labels, the head, the input's dtype and the
// preprocessing steps (docs/sidecar.md; docs/sidecar.schema.json is its schema).
// - An export with its preprocessing inside (`--preprocess`, `preprocessing_in_graph`) takes
//   decoded uint8 images (H, W, C) of any size: .png and .jpg files are decoded here with the
//   pure-JS pngjs and jpeg-js (optional dependencies; no EXIF orientation: turn photos first), or
//   .npy files hold the pixels as uint8 (H, W, C), or (N, H, W, C) for a batch of one size.
// - Otherwise inputs are .npy files of raw samples as the sidecar's `raw_shape` says (one
//   sample, or a batch with a leading axis), after any geometry steps: this script applies the
//   value steps only (image decoding and resizing: docs/sidecar.md gives their exact maths).
// - Every precision: float32 and int8 models take float32; a `--fp16-io` export takes and gives
//   float16, converted here (`inputs[0].dtype`).
// A text model's sidecar has a `tokenizer` (docs/sidecar.md): --text inputs become token ids by
// the same rules as netspec's own tokenizer (netspec/data/tokenizer.py); `--ids` prints them.
// Prints the same JSON as `netspec predict --json` for classifiers.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url); // honours NODE_PATH, unlike `import`

function readNpy(path, Values = Float32Array) {
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
  const values = new Values(n);
  for (let i = 0; i < n; i++) values[i] = readers[descr](i);
  return { shape, values };
}

function decodeImage(path) {
  // A .png or .jpg as RGBA pixels (H, W, 4) with the pure-JS decoders (the graph drops alpha).
  const buf = readFileSync(path);
  let img;
  try {
    img = /\.png$/i.test(path)
      ? require("pngjs").PNG.sync.read(buf)
      : require("jpeg-js").decode(buf, { useTArray: true, formatAsRGBA: true });
  } catch (e) {
    if (e.code === "MODULE_NOT_FOUND") throw new Error(`${path}: decoding images needs pngjs and jpeg-js (npm install in docs/js), or give the pixels as a uint8 .npy`);
    throw e;
  }
  return { shape: [img.height, img.width, 4], values: Uint8Array.from(img.data) };
}

function toHalf(x) {
  // float32 values as IEEE float16 bits, rounded to nearest even (a --fp16-io model's input).
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    f[0] = x[i];
    const b = u[0], sign = (b >>> 16) & 0x8000, exp = (b >>> 23) & 0xff, man = b & 0x7fffff;
    let h;
    if (exp === 0xff) h = sign | 0x7c00 | (man ? 0x200 : 0); // inf, nan
    else if (exp > 142) h = sign | 0x7c00; // too large: inf
    else if (exp > 112) { // normal
      h = ((exp - 112) << 10) | (man >>> 13);
      const rest = man & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h += 1;
      h |= sign;
    } else if (exp > 101) { // subnormal
      const m = man | 0x800000, shift = 126 - exp;
      h = m >>> shift;
      const rest = m & ((1 << shift) - 1), half = 1 << (shift - 1);
      if (rest > half || (rest === half && (h & 1))) h += 1;
      h |= sign;
    } else h = sign;
    out[i] = h;
  }
  return out;
}

function fromHalf(bits) {
  // IEEE float16 bits as numbers (a --fp16-io model's output).
  return Array.from(bits, (h) => {
    const sign = h & 0x8000 ? -1 : 1, exp = (h >>> 10) & 0x1f, man = h & 0x3ff;
    if (exp === 0) return sign * man * 2 ** -24;
    if (exp === 31) return man ? NaN : sign * Infinity;
    return sign * (1 + man / 1024) * 2 ** (exp - 15);
  });
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
const input = card.inputs[0]; // its dtype: float32, float16 (--fp16-io) or uint8 (--preprocess)
const inside = card.preprocessing_in_graph === true; // the graph takes decoded images itself
const sampleSize = pre.raw_shape.reduce((a, b) => a * b, 1);
for (const path of inside ? inputs : []) { // images (H, W, C) of any size, one sample each
  if (/\.(png|jpe?g)$/i.test(path)) {
    samples.push([path, decodeImage(path)]);
    continue;
  }
  const { shape, values } = readNpy(path, Uint8Array); // uint8 pixels (H, W, C) or (N, H, W, C)
  const batched = shape.length === 4;
  const one = batched ? shape.slice(1) : shape;
  const size = one.reduce((a, b) => a * b, 1);
  for (let s = 0; s < (batched ? shape[0] : 1); s++) {
    const name = batched ? `${path}[${s}]` : path;
    samples.push([name, { shape: one, values: values.subarray(s * size, (s + 1) * size) }]);
  }
}
for (const path of inside ? [] : inputs) {
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
function tensor(x, dims) {
  // One sample as the model's input: its dtype, and its batch size when the export fixed one.
  const n = typeof input.shape[0] === "number" && input.shape[0] > 1 ? input.shape[0] : 1;
  const Values = input.dtype === "uint8" ? Uint8Array : Float32Array;
  const data = new Values(x.length * n);
  for (let i = 0; i < n; i++) data.set(x, i * x.length); // copies of the sample fill the batch
  if (input.dtype === "float16") return new ort.Tensor("float16", toHalf(data), [n, ...dims]);
  return new ort.Tensor(input.dtype === "uint8" ? "uint8" : "float32", data, [n, ...dims]);
}

function scores(out) {
  // The first sample's outputs as numbers (float16 bits converted).
  const n = out.dims[0];
  const data = out.type === "float16" && out.data instanceof Uint16Array ? fromHalf(out.data) : Array.from(out.data);
  return data.slice(0, data.length / n);
}

for (const [name, sample] of samples) {
  const feed = {
    [input.name]: inside ? tensor(sample.values, sample.shape) : tensor(preprocess(sample, pre), card.input_shape),
  };
  const out = await session.run(feed);
  const p = probabilities(scores(out[card.outputs[0].name]), card.head);
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
