"""`netspec bench`: PyTorch eager against onnxruntime on the same model and input, interleaved."""
