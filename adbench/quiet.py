"""Keep third-party noise out of adbench's output; adbench's own progress bars and messages stay.

Dropped: Lightning's advertising tips (litlogger, litmodels), deprecation warnings raised inside
third-party packages (a user of adbench cannot act on them), and two Lightning warnings about
adbench's own design (frozen backbones kept in eval mode, an empty validation split).
"""

from __future__ import annotations

import logging
import warnings

THIRD_PARTY = r"(timm|anomalib|lightning|pytorch_lightning|torchmetrics|diffusers|transformers|" \
              r"torchvision|kornia|huggingface_hub|ot)(\.|$)"
_BY_DESIGN = (
    r"Found .* module\(s\) in eval mode",  # AnomalyMethod.freeze keeps backbones in eval mode
    r"Total length of .* across ranks is zero",  # no validation split is the default
)
_installed = False


class _NoTips(logging.Filter):
    """Drops Lightning's "Tip:" advertisements."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


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
    # a logger's filters see only the records logged on it: these are the loggers that print tips
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_NoTips())
