"""Model files from other tools (Keras .keras/.h5, ONNX) read into a netspec spec and weights."""
