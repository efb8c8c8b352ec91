"""`netspec predict`: run an exported .onnx file with onnxruntime alone (no torch, no spec)."""
