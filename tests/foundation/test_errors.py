"""Every deliberate raise in the library is an adbench error, which the CLI prints as one line."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# builtin exceptions that stay builtin, each for a protocol that expects that exact class
ALLOWED = {
    "NotImplementedError",  # abstract hooks a subclass must override
    "AttributeError",  # a module's __getattr__ must raise it for hasattr/getattr to work
    "OSError",  # a system error re-raised with its errno and the file named
    "SystemExit",  # the command line's exit status
}
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
} - ALLOWED


def builtin_raises(source: str) -> list[tuple[int, str]]:
    """(line, exception name) of each ``raise X(...)`` / ``raise X`` of a builtin exception."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(target, ast.Name) and target.id in BUILTIN_EXCEPTIONS:
            found.append((node.lineno, target.id))
    return sorted(found)


def test_scanner_finds_builtin_raises_and_passes_adbench_errors():
    source = (
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError(f'bad {x}')\n"
        "    raise KeyError\n"
        "def g():\n"
        "    try:\n"
        "        pass\n"
        "    except OSError:\n"
        "        raise\n"
        "    raise ConfigError('x')\n"
        "def h():\n"
        "    raise RuntimeError('y') from None\n"
        "def i():\n"
        "    raise NotImplementedError\n"
    )
    assert builtin_raises(source) == [(3, "ValueError"), (4, "KeyError"), (12, "RuntimeError")]


def test_library_raises_only_adbench_errors():
    files = sorted([*(REPO / "adbench").rglob("*.py"), *(REPO / "methods").rglob("*.py")])
    assert len(files) > 50  # the scan reaches the whole library
    hits = [
        f"{path.relative_to(REPO)}:{line}: raise {name}"
        for path in files
        for line, name in builtin_raises(path.read_text())
    ]
    assert not hits, "raise an adbench.errors class instead of:\n" + "\n".join(hits)


def test_bad_inputs_raise_invalid_input_error_naming_the_value():
    import torch

    from adbench.data.index import concat
    from adbench.errors import InvalidInputError
    from adbench.metrics.ranking import auroc

    with pytest.raises(
        InvalidInputError,
        match=r"scores and labels must have the same length, "
        r"got 3 and 2",
    ):
        auroc(torch.rand(3), torch.tensor([0, 1]))
    with pytest.raises(
        InvalidInputError,
        match=r"labels must be one-dimensional, got shape "
        r"\(2, 1\)",
    ):
        auroc(torch.rand(2), torch.tensor([[0], [1]]))
    with pytest.raises(InvalidInputError, match="concat needs at least one SampleIndex"):
        concat([])
