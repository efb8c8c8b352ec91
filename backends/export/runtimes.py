"""One ONNX model in every runtime installed here: onnxruntime (Python, CPU), the onnx reference
evaluator, OpenCV's DNN module, and onnxruntime-node and onnxruntime-web (its wasm backend, in
node) when node can load them (from the working directory's node_modules or NODE_PATH).

Each runtime runs a float32 batch through the model's first input and returns its first output;
`Unavailable` says a runtime is not installed, `RuntimeFailed` that it could not run the model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.errors import first_line

NODE_TIMEOUT = 300  # seconds for node to load a runtime, the model, and run one batch


class Unavailable(Exception):
    """The runtime is not installed here (the message says what is missing)."""


class RuntimeFailed(Exception):
    """The runtime is installed but could not load or run the model (its first line)."""


@dataclass(frozen=True)
class Runtime:
    """A runtime: its name, and how to run a model's bytes on a batch (output, version)."""

    name: str
    run: Callable[[bytes, np.ndarray], tuple[np.ndarray, str | None]]
    slow: bool = False  # plain numpy: seconds per sample for a U-Net, so run on fewer samples


def _onnxruntime(model: bytes, x: np.ndarray) -> tuple[np.ndarray, str | None]:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        out = session.run(None, {session.get_inputs()[0].name: x})[0]
    except Exception as exc:  # onnxruntime raises its own exception types
        raise RuntimeFailed(first_line(exc)) from None
    return np.asarray(out), ort.__version__


def _reference(model: bytes, x: np.ndarray) -> tuple[np.ndarray, str | None]:
    import onnx
    from onnx.reference import ReferenceEvaluator

    try:
        proto = onnx.load_from_string(model)
        evaluator = ReferenceEvaluator(proto)
        out = evaluator.run(None, {proto.graph.input[0].name: x})[0]
    except Exception as exc:  # the evaluator raises plain exceptions for missing operators
        raise RuntimeFailed(first_line(exc)) from None
    return np.asarray(out), onnx.__version__


def _opencv(model: bytes, x: np.ndarray) -> tuple[np.ndarray, str | None]:
    try:
        import cv2
    except ImportError:
        raise Unavailable("opencv-python is not installed") from None
    try:
        net = cv2.dnn.readNetFromONNX(np.frombuffer(model, np.uint8))
        net.setInput(x)
        out = np.asarray(net.forward())
    except cv2.error as exc:
        # "OpenCV(5.1.0) /path/file.cpp:334: error: (-215:Assertion failed) ... in function 'f'"
        raise RuntimeFailed(str(exc).strip().splitlines()[-1].split(" error: ")[-1]) from None
    return out, cv2.__version__


NOT_FOUND = 3  # NODE_RUN's exit status when node cannot load the runtime's module

# Reads the model and the batch from files (argv), writes the output's dims and version as JSON
# to stdout and its float32 values to a file: large batches would not fit an argument list.
NODE_RUN = """
let ort;
try {
  ort = require(process.argv[1]);
} catch (e) {  // not installed: a status of its own, rather than a probe's node process first
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes(process.argv[1])) {
    process.exit(3);  // NOT_FOUND
  }
  throw e;
}
const fs = require('fs');
if (ort.env && ort.env.wasm) ort.env.wasm.numThreads = 1;  // web: no worker threads in node
(async () => {
  const [, , model, xFile, dims, yFile] = process.argv;
  const buf = fs.readFileSync(xFile);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const session = await ort.InferenceSession.create(model);
  const out = await session.run({[session.inputNames[0]]: new ort.Tensor('float32', x, JSON.parse(dims))});
  const y = out[session.outputNames[0]];
  fs.writeFileSync(yFile, Buffer.from(Float32Array.from(y.data, Number).buffer));
  const v = (ort.env && ort.env.versions) || {};
  process.stdout.write(JSON.stringify({dims: y.dims, version: v.node || v.web || v.common || null}));
})().catch((e) => { process.stderr.write(String((e && e.message) || e)); process.exit(1); });
"""


def _javascript(module: str) -> Callable[[bytes, np.ndarray], tuple[np.ndarray, str | None]]:
    missing = f"node cannot load {module} (npm install it, or set NODE_PATH)"

    def run(model: bytes, x: np.ndarray) -> tuple[np.ndarray, str | None]:
        node = shutil.which("node")
        if node is None:
            raise Unavailable(missing)
        with tempfile.TemporaryDirectory(prefix="netspec-node-") as tmp:
            files = [Path(tmp) / name for name in ("model.onnx", "x.bin", "y.bin")]
            files[0].write_bytes(model)
            files[1].write_bytes(np.ascontiguousarray(x, np.float32).tobytes())
            args = [str(files[0]), str(files[1]), json.dumps(list(x.shape)), str(files[2])]
            try:
                done = subprocess.run(
                    [node, "-e", NODE_RUN, module, *args],
                    capture_output=True,
                    text=True,
                    timeout=NODE_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                raise RuntimeFailed(f"no answer within {NODE_TIMEOUT} s") from None
            except OSError as exc:  # node there a moment ago, and not runnable now
                raise Unavailable(f"node cannot run: {exc.strerror or exc}") from None
            if done.returncode == NOT_FOUND:
                raise Unavailable(missing)
            if done.returncode != 0:
                raise RuntimeFailed(first_line(done.stderr.strip() or "node failed"))
            meta = json.loads(done.stdout)
            out = np.fromfile(files[2], np.float32).reshape(meta["dims"])
        return out, meta.get("version")

    return run


# The first is the reference that the others are compared with.
RUNTIMES: tuple[Runtime, ...] = (
    Runtime("onnxruntime", _onnxruntime),
    Runtime("onnx-reference", _reference, slow=True),
    Runtime("opencv", _opencv),
    Runtime("onnxruntime-node", _javascript("onnxruntime-node")),
    Runtime("onnxruntime-web", _javascript("onnxruntime-web")),
)
RUNTIME_NAMES = tuple(r.name for r in RUNTIMES)
