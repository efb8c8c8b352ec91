"""Training with PyTorch: the loop and its parts (device, data on the device, objective, optimizer, state, reports)."""
