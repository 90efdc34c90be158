"""Evaluation protocols: named rules from a method's output to reported numbers, and their cards.

``adbench`` (the default, used for ranking) and the official protocols of papers
(`adbench.protocols.builtin`) are `Protocol` objects chosen by name: ``protocol: NAME`` in a
sweep, ``--protocol NAME`` on the CLI, ``protocol=`` in the API. A result records its protocol in
its card (`protocol_card`, ``protocol.yaml``).
"""

from __future__ import annotations

import dataclasses

from adbench.errors import ConfigError, unknown_name
from adbench.protocols.base import (
    AuproRule,
    ImageScore,
    PixelRule,
    Protocol,
    Smoothing,
    differing_rules,
)
from adbench.protocols.builtin import ADBENCH, BUILTIN
from adbench.protocols.card import (
    AUPRO_FPR_LIMIT,
    EVALUATION_MODES,
    PROTOCOL_FILE,
    RANKED_FIELDS,
    check_aupro_fpr_limit,
    differing_fields,
    index_hash,
    protocol_card,
    write_protocol,
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in BUILTIN}
DEFAULT_PROTOCOL = ADBENCH.name


def get_protocol(
    name: str | Protocol,
    *,
    aupro_fpr_limit: float | None = None,
    view_pooling: str | None = None,
) -> Protocol:
    """The protocol called ``name`` (or ``name`` itself), with the FPR limit and pooling given.

    Raises:
        ConfigError: for an unknown name (listing the known ones), or view pooling asked of a
            protocol that scores views as independent images.
    """
    if isinstance(name, Protocol):
        protocol = name
    elif name in PROTOCOLS:
        protocol = PROTOCOLS[name]
    else:
        raise unknown_name("protocol", str(name), sorted(PROTOCOLS))
    if aupro_fpr_limit is not None:
        limit = check_aupro_fpr_limit(aupro_fpr_limit)
        protocol = dataclasses.replace(
            protocol, aupro=dataclasses.replace(protocol.aupro, fpr_limit=limit)
        )
    if view_pooling is not None and view_pooling != protocol.view_pooling:
        if protocol.view_pooling is None:
            raise ConfigError(
                f"protocol {protocol.name!r} scores the views of an object as independent images; "
                f"view_pooling: {view_pooling} cannot be used with it"
            )
        protocol = dataclasses.replace(protocol, view_pooling=view_pooling)
    return protocol


__all__ = [
    "AUPRO_FPR_LIMIT",
    "DEFAULT_PROTOCOL",
    "EVALUATION_MODES",
    "PROTOCOLS",
    "PROTOCOL_FILE",
    "RANKED_FIELDS",
    "AuproRule",
    "ImageScore",
    "PixelRule",
    "Protocol",
    "Smoothing",
    "check_aupro_fpr_limit",
    "differing_fields",
    "differing_rules",
    "get_protocol",
    "index_hash",
    "protocol_card",
    "write_protocol",
]
