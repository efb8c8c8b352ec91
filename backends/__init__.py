"""Lowerings of the netspec IR to frameworks (installed as `netspec.backends`)."""
