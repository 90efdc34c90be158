"""What reaches the terminal: adbench's messages, progress and errors, not third-party noise.

Dropped everywhere (`quiet_third_party`): Lightning's advertising tips (litlogger, litmodels)
and its Ctrl-C notice (the ``adbench`` command says ``adbench: interrupted`` itself),
deprecation warnings raised inside third-party packages (a user of adbench cannot act on them),
and two Lightning warnings about adbench's own design (frozen backbones kept in eval mode, an
empty validation split).

In the ``adbench`` command (`show_messages`), adbench's log messages go to stderr through tqdm, so
a progress bar stays whole, and a warning is one plain line without its file and source line.
While a sweep cell runs (`cell_logs`), the log records of adbench (its methods included) and
Lightning, and the warnings, go to the cell's ``run.log`` and to the terminal only when verbose.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

THIRD_PARTY = (
    r"(timm|anomalib|lightning|pytorch_lightning|torchmetrics|diffusers|transformers|"
    r"torchvision|kornia|huggingface_hub|ot)(\.|$)"
)
_BY_DESIGN = (
    r"Found .* module\(s\) in eval mode",  # AnomalyMethod.freeze keeps backbones in eval mode
    r"Total length of .* across ranks is zero",  # no validation split is the default
)
# loggers whose records are a cell's messages; "py.warnings" carries the captured warnings
CELL_LOGGERS = ("adbench", "py.warnings", "lightning.pytorch", "lightning.fabric")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RANK_ZERO_LOGGERS = tuple(
    f"{package}.utilities.rank_zero"
    for package in (
        "lightning.pytorch",
        "lightning.fabric",
        "pytorch_lightning",
        "lightning_fabric",
    )
)
_installed = False


class _Dropped(logging.Filter):
    """Drops Lightning's "Tip:" advertisements and its Ctrl-C notice."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "Tip:" not in message and "Detected KeyboardInterrupt" not in message


class _Terminal(logging.Handler):
    """Writes records to stderr with `tqdm.write`, which keeps a running progress bar whole."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's contract: a failing handler reports and goes on
            self.handleError(record)


TERMINAL = _Terminal()
TERMINAL.setFormatter(logging.Formatter("%(message)s"))


def quiet_third_party() -> None:
    """Install the filters once per process (called by the CLI and by `adbench.fit`)."""
    global _installed
    if _installed:
        return
    _installed = True
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY)
    for message in _BY_DESIGN:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    # a logger's filters see only the records logged on it: these are the loggers of both
    # notices (the standalone pytorch_lightning / lightning_fabric packages, once imported, make
    # lightning_utilities log on theirs)
    for name in RANK_ZERO_LOGGERS:
        logging.getLogger(name).addFilter(_Dropped())


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Print a warning as one plain line ("UserWarning: ..."), keeping a progress bar whole."""
    tqdm.write(f"{category.__name__}: {message}", file=sys.stderr)


def show_messages() -> None:
    """Show adbench's messages on the terminal, as the ``adbench`` command and its workers do.

    adbench's messages (INFO and up) go to stderr, and warnings to one plain line, without their
    file and source line.
    """
    logger = logging.getLogger("adbench")
    logger.setLevel(logging.INFO)
    if TERMINAL not in logger.handlers:
        logger.addHandler(TERMINAL)
    warnings.showwarning = _show_warning


@contextlib.contextmanager
def cell_logs(path: Path | None, verbose: bool = False) -> Iterator[None]:
    """Send the block's log records and warnings to ``path`` and, only if ``verbose``, stderr.

    During the block, `CELL_LOGGERS` (INFO and up) write to the file and `TERMINAL` only; other
    libraries' records reach the file through the root logger. ``path`` None (a DDP rank that
    writes no files) keeps just the terminal part.
    """
    file = None if path is None else logging.FileHandler(path, encoding="utf-8")
    sinks: list[logging.Handler] = [TERMINAL] if verbose else []
    if file is not None:
        file.setFormatter(logging.Formatter(FILE_FORMAT))
        sinks.append(file)
    sink = file or logging.NullHandler()  # with a handler, the root logger prints nothing itself
    loggers = [logging.getLogger(name) for name in CELL_LOGGERS]
    saved = [(logger.handlers, logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        logger.handlers = list(sinks) or [logging.NullHandler()]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    logging.getLogger().addHandler(sink)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        logging.getLogger().removeHandler(sink)
        for logger, (handlers, propagate, level) in zip(loggers, saved, strict=True):
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        if file is not None:
            file.close()
