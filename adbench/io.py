"""Crash-safe file writes shared by every layer that persists results."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from adbench.errors import CorruptFileError


def write_atomic(path: str | Path, text: str | bytes) -> None:
    """Write ``text`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    On failure (e.g. a full disk) ``path`` keeps its previous content, no temp file is left and
    the `OSError` raised names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results are shared files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno is None or err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err  # name the file (disk full)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Persist a rename: fsync the directory entry where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as JSON (NaN/inf become null)."""
    write_atomic(path, json.dumps(_finite(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by `write_json`.

    Raises:
        CorruptFileError: naming ``path``, when it is not UTF-8 JSON (garbage or cut bytes).
    """
    try:
        return json.loads(Path(path).read_bytes().decode())
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError
        raise CorruptFileError(f"{path} is not UTF-8 JSON ({err})") from err


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
