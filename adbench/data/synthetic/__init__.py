"""The built-in synthetic dataset's generator.

Product scenes (`products`), their rendering from scikit-image photographs (`render`) and the
defects painted into them with exact masks (`defects`). The reader and the on-disk layout are
in `adbench.data.formats.synthetic`.
"""
