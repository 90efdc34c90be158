"""The generated tables of ``docs/reproduce.md``: the protocols and the published rows.

``test_reproduce_page.py`` checks that the page holds what these functions render. Regenerate
the tables with::

    python tests/foundation/reproduce_page.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reproduce.md"
BLOCKS = ("protocols-table", "published-table")


def protocols_table() -> str:
    """Every built-in protocol, one column each."""
    from adbench.protocols import PROTOCOLS
    from adbench.protocols.table import protocols_markdown

    return protocols_markdown(list(PROTOCOLS.values()))


def published_table() -> str:
    """The shipped rows of the methods with a reproduction plan, one line per (method, dataset)."""
    from adbench.reproduce.plans import PLANS
    from adbench.runner.reference import load_reference
    from adbench.runner.tables import metric_order

    rows = load_reference()
    rows = rows[rows["method"].isin({plan.published for plan in PLANS.values()})]
    metrics = [m for m in metric_order() if m in set(rows["metric"])]
    lines = [
        "| method | dataset | k | protocol | " + " | ".join(metrics) + " |",
        "|---|---|---|---|" + "---|" * len(metrics),
    ]
    for (method, dataset, k, protocol), group in rows.groupby(
        ["method", "dataset", "k", "protocol"], sort=True
    ):
        values = dict(zip(group["metric"], group["value"], strict=True))
        cells = [f"{values[m] * 100:.1f}" if m in values else "" for m in metrics]
        lines.append(f"| {method} | {dataset} | {k} | `{protocol}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` with each generated block replaced by its current content."""
    for name, content in zip(BLOCKS, (protocols_table(), published_table()), strict=True):
        pattern = re.compile(rf"(<!-- {name}:[^\n]*-->\n).*?(\n<!-- /{name} -->)", re.S)
        text = pattern.sub(lambda m, c=content: m.group(1) + c + m.group(2), text)
    return text


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text()))
    sys.exit(0)
