"""Published rows beside the measured ones: the difference where the protocols agree.

`reference_blocks` renders, under a measured dataset's table, the published rows of the dataset
(`adbench.runner.reference.load_reference`); then each measured method beside the published row
it can be compared with, and the difference per metric (measured minus published, in points);
then one line for every other published row, saying why it is not compared.

A published row is compared with a measured method when:

1. the row names its protocol (``protocol`` is not null);
2. the method was measured at the row's k;
3. the method's cells were measured under that protocol: their card's ``protocol`` is the row's
   (a card without one, or a cell without a card, is ``adbench``'s) and their rules are the
   protocol's, the AUPRO FPR limit and the view pooling included
   (`adbench.protocols.differing_rules` finds none);
4. the method's registry name is the row's method, ignoring case and every character but letters,
   digits and ``+`` (``inp_former`` is ``INP-Former``; ``Dinomaly+`` is not ``Dinomaly``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from adbench.protocols import DEFAULT_PROTOCOL, PROTOCOLS, differing_rules
from adbench.runner.tables import PUBLISHED, Renderer, metric_order

DIFFERENCE = "difference (points)"  # the row of measured minus published


def card_rules(card: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The protocol name and the whole rules (`adbench.protocols.Protocol.fields`) of a card.

    The card's ``rules`` lack the AUPRO FPR limit and the view pooling, which it records as
    ``aupro_fpr_limit`` and ``view_pooling``. A card written before named protocols (neither
    ``protocol`` nor ``rules``), or no card at all (``{}``), is ``adbench``'s.
    """
    name = card.get("protocol") or DEFAULT_PROTOCOL
    rules = dict(card["rules"]) if "rules" in card else PROTOCOLS[DEFAULT_PROTOCOL].fields()
    rules["aupro"] = dict(rules["aupro"])
    if "aupro_fpr_limit" in card:
        rules["aupro"]["fpr_limit"] = card["aupro_fpr_limit"]
    if "view_pooling" in card:
        rules["view_pooling"] = card["view_pooling"]
    return name, rules


def reference_blocks(
    published: pd.DataFrame,
    results: pd.DataFrame,
    dataset: str,
    k: int,
    means: pd.DataFrame,
    digits: int,
    render: Renderer,
) -> list[str]:
    """The published rows of ``dataset`` and how they compare with the measured ones.

    Args:
        published: the `load_reference` table.
        results: the checked results (`adbench.runner.store.load_results` layout; its
            ``protocol`` column holds each cell's card, without it every cell is ``adbench``'s).
        dataset: the measured dataset's table name (under ``split_protocols`` it carries the
            protocol; the published rows are those of the cards' dataset).
        k: the category count of the measured table.
        means: the measured table, methods x metrics, mean over seeds as fractions.
        digits: decimals of the percentages.
        render: `adbench.runner.tables.markdown` or `adbench.runner.tables.latex`.

    Returns:
        No block when the dataset has no published rows; else the published table, then the
        comparison table and the table of rows not compared, each when it has rows.
    """
    rows = results[(results["dataset"] == dataset) & (results["k"] == k)]
    cards = _cards(rows)
    names = _registry_names(rows)
    original = next((str(c["dataset"]) for c in cards.values() if c.get("dataset")), dataset)
    rows = published[published["dataset"] == original]
    if rows.empty:
        return []
    groups = list(rows.groupby(["method", "k", "source"], sort=False))
    blocks = [_published_table(groups, dataset, list(means.columns), digits, render)]
    pairs, reasons = [], []
    for (method, row_k, _), group in groups:
        protocol = group["protocol"].iloc[0]
        matched, reason = _match(str(method), int(row_k), protocol, k, cards, names)
        values = group.set_index("metric")["value"]
        pairs += [(label, str(method), str(protocol), values) for label in matched]
        if reason:
            reasons.append((f"{method}{PUBLISHED}", str(row_k), reason))
    if pairs:
        blocks.append(_comparison_table(pairs, means, dataset, k, digits, render))
    if reasons:
        text = pd.DataFrame(
            [[row_k, reason] for _, row_k, reason in reasons],
            index=[name for name, _, _ in reasons],
            columns=["k", "why no difference"],
        )
        title = (
            f"{dataset}: published rows without a difference (one is shown only for the same "
            "method under the same protocol, dataset and k)"
        )
        blocks.append(render(title, text, "method"))
    return blocks


def _cards(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Method label -> the protocol card (its ranked fields) of its cells; {} without one."""
    keys = rows["protocol"].fillna("") if "protocol" in rows else pd.Series("", index=rows.index)
    cards: dict[str, dict[str, Any]] = {}
    for label, key in dict.fromkeys(zip(rows["method"], keys, strict=True)):
        if key or label not in cards:
            cards[str(label)] = json.loads(key) if key else {}
    return cards


def _registry_names(rows: pd.DataFrame) -> dict[str, str]:
    """Method label -> the method's registry name (the label itself without a ``name`` column)."""
    column = "name" if "name" in rows else "method"
    return {str(label): str(name) for label, name in zip(rows["method"], rows[column], strict=True)}


def _key(method: str) -> str:
    """A method name reduced to lower-case letters, digits and ``+``."""
    return re.sub(r"[^0-9a-z+]", "", method.lower())


def _match(
    method: str,
    row_k: int,
    protocol: Any,
    k: int,
    cards: Mapping[str, Mapping[str, Any]],
    names: Mapping[str, str],
) -> tuple[list[str], str]:
    """The measured labels a published row is compared with, or the reason it is compared with none.

    Returns:
        ``(labels, "")``, or ``([], reason)`` naming the first condition that fails: no protocol,
        another k, another protocol (its name and the differing rules), no method of that name.
    """
    if not isinstance(protocol, str):
        return [], "the paper's evaluation protocol is not recorded (protocol: null)"
    if row_k != k:
        return [], f"published at k = {row_k}, measured at k = {k}"
    same = [label for label in cards if _key(names[label]) == _key(method)]
    wanted = PROTOCOLS[protocol].fields()
    verdicts = {}
    for label in same or list(cards):
        name, rules = card_rules(cards[label])
        verdicts[label] = (name, differing_rules(wanted, rules))
    matched = [label for label in same if verdicts[label] == (protocol, [])]
    if matched:
        return matched, ""
    differences = [
        f"measured under {name}, published under {protocol}: "
        + (f"the rules differ in {', '.join(differ)}" if differ else "the same rules")
        for name, differ in verdicts.values()
        if (name, differ) != (protocol, [])
    ]
    return [], "; ".join(dict.fromkeys(differences)) or f"no measured method is {method}"


def _published_table(
    groups: list, dataset: str, metrics: list[str], digits: int, render: Renderer
) -> str:
    """The published rows as their own table: metrics, k, protocol and source; nothing bold."""
    shown = {*metrics, *(m for _, group in groups for m in group["metric"])}
    columns = [m for m in metric_order() if m in shown]
    text = pd.DataFrame(
        "-", index=range(len(groups)), columns=[*columns, "k", "protocol", "source"]
    )
    names = []
    for i, ((method, k, source), group) in enumerate(groups):
        names.append(f"{method}{PUBLISHED}")
        for metric, value in zip(group["metric"], group["value"], strict=True):
            text.at[i, metric] = f"{100 * value:.{digits}f}"
        protocol = group["protocol"].iloc[0]
        text.at[i, "k"], text.at[i, "source"] = str(k), str(source)
        text.at[i, "protocol"] = protocol if isinstance(protocol, str) else "-"
    text.index = names
    title = (
        f"{dataset}: published reference rows (reported by their papers, not measured "
        "here, not ranked); values in %"
    )
    return render(title, text, "method")


def _comparison_table(
    pairs: list[tuple[str, str, str, pd.Series]],
    means: pd.DataFrame,
    dataset: str,
    k: int,
    digits: int,
    render: Renderer,
) -> str:
    """Each compared pair as three rows: measured, published, and measured minus published."""
    columns = [
        m
        for m in metric_order()
        if m in means.columns and any(m in values.index for *_, values in pairs)
    ]
    lines, index = [], []
    for label, method, _, values in pairs:
        measured = 100 * means.loc[label].reindex(columns).astype(float)
        reported = 100 * values.reindex(columns).astype(float)
        for name, numbers, sign in (
            (label, measured, ""),
            (f"{method}{PUBLISHED}", reported, ""),
            (DIFFERENCE, measured - reported, "+"),
        ):
            index.append(name)
            lines.append([_number(v, digits, sign) for v in numbers.round(digits)])
    protocols = ", ".join(dict.fromkeys(protocol for _, _, protocol, _ in pairs))
    title = (
        f"{dataset}: measured beside published under the same protocol ({protocols}) at "
        f"k = {k}; values in %, difference = measured - published in points"
    )
    return render(title, pd.DataFrame(lines, index=index, columns=columns), "method")


def _number(value: float, digits: int, sign: str) -> str:
    """``value`` with ``digits`` decimals (``+`` before a signed one); ``-`` for NaN."""
    return "-" if np.isnan(value) else f"{value + 0.0:{sign}.{digits}f}"  # + 0.0: no -0.0
