"""ONNX export straight from the IR: folding, emission, the model and its checks, runs, inspection."""
