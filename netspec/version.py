"""netspec's version: a leaf module, so the backends read it without importing the package's top."""

__version__ = "0.1.0"
