"""Errors raised by adbench, each naming the offending field, value or file and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AdbenchError(Exception):
    """Base class of every error adbench raises on purpose."""


class UnknownNameError(AdbenchError, KeyError):
    """A name (method, preset, format, launcher, category, config key) that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(AdbenchError, ValueError):
    """A configuration value or key that does not fit its schema."""


class DatasetNotFoundError(AdbenchError, FileNotFoundError):
    """A dataset root that does not exist."""


class DatasetFormatError(AdbenchError, ValueError):
    """A dataset root whose files do not match the expected layout."""


class WeightsNotFoundError(AdbenchError, FileNotFoundError):
    """Pretrained weights that cannot be found locally or in the model hub cache."""


class MissingDependencyError(AdbenchError, ImportError):
    """An optional dependency (an extra) needed by the requested feature is not installed."""


class InvalidInputError(AdbenchError, ValueError):
    """Values that cannot be evaluated: NaN/inf in a map or score, an out-of-range label or id."""


class NotFittedError(AdbenchError, ValueError):
    """A method scored before it was fitted or loaded from a fitted checkpoint."""


class CorruptFileError(AdbenchError, ValueError):
    """A file adbench wrote that cannot be read back: garbage or cut bytes, keys missing."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_name(
    kind: str, name: str, choices: Iterable[str], max_listed: int = 40
) -> UnknownNameError:
    """Build the standard error for an unknown ``name`` of ``kind`` listing the valid ``choices``.

    Example message: ``unknown method 'gald'; did you mean 'glad'? known: dpdiff_ad, glad, mddnet``.
    Long lists (e.g. every timm model) are cut to their first ``max_listed`` names.
    """
    known = sorted(choices)
    listing = ", ".join(known[:max_listed]) if known else "(none)"
    if len(known) > max_listed:
        listing += f", ... ({len(known) - max_listed} more)"
    hint = did_you_mean(name, known) or ";"
    return UnknownNameError(f"unknown {kind} '{name}'{hint} known: {listing}")
