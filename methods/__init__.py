"""The built-in methods, installed as ``adbench.methods`` (one sub-package per method)."""
