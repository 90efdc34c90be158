"""Two toy methods with a preset no other method has, "terminal" (for test_terminal_output.py).

A sweep of ``methods: all`` with that preset runs just these two and leaves out every other
method. Each logs a message through Lightning's ``rank_zero_info`` and raises a warning, as
third-party methods do; ``toy_terminal_fails`` then fails in its first training step.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info

import adbench
from adbench.runner.plugins import load_plugins

toy = load_plugins([str(Path(__file__).with_name("toy_plugin.py"))])[0]
MESSAGE, WARNING = "toy_terminal: training starts", "toy_terminal: a warning of the method"


class _Talking(toy.Toy):
    """The toy method, logging a message and raising a warning when training starts."""

    def on_train_start(self) -> None:
        rank_zero_info(MESSAGE)
        warnings.warn(WARNING, UserWarning, stacklevel=1)


@adbench.method("toy_terminal", config=toy.ToyConfig, presets={"terminal": toy.TINY})
class ToyTerminal(_Talking):
    """Trains and scores."""


@adbench.method(
    "toy_terminal_fails", config=toy.ToyConfig, presets={"terminal": {**toy.TINY, "fail": True}}
)
class ToyTerminalFails(_Talking):
    """Fails in its first training step."""
