"""The reproduction report: measured vs published per metric, the protocol, and what differed.

`build_report` reads the finished cells of a reproduction run and returns the comparison table
(one row per metric: measured mean over seeds, spread, published value, difference) and the
Markdown page that shows it with the protocol card and every setting that was not the paper's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import yaml

from adbench.protocols import get_protocol
from adbench.reproduce.plans import Reproduction
from adbench.runner.tables import metric_order

REPORT_COLUMNS = (
    "metric", "measured", "std", "min", "max", "seeds", "published", "difference",
)  # fmt: skip


def flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(paper: Mapping[str, Any], used: Mapping[str, Any]) -> dict[str, tuple]:
    """Dotted key -> (paper value, used value) for every config value that differs."""
    before, after = flat(paper), flat(used)
    keys = sorted(set(before) | set(after))
    return {k: (before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)}


def comparison(
    results: Sequence[Mapping[str, Any]], published: Mapping[str, float]
) -> pd.DataFrame:
    """One row per metric of the cells' category means; values in %.

    Args:
        results: the ``result.json`` contents of the seeds' cells.
        published: metric -> published value in %.
    """
    means = pd.DataFrame([r["metrics"]["mean"] for r in results], dtype=float) * 100
    metrics = [m for m in metric_order() if m in means.columns or m in published]
    rows = []
    for metric in metrics:
        values = means[metric].dropna() if metric in means.columns else pd.Series(dtype=float)
        measured = float(values.mean()) if len(values) else np.nan
        paper = published.get(metric, np.nan)
        rows.append(
            {
                "metric": metric,
                "measured": measured,
                "std": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                "min": float(values.min()) if len(values) else np.nan,
                "max": float(values.max()) if len(values) else np.nan,
                "seeds": len(values),
                "published": paper,
                "difference": measured - paper,
            }
        )
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def deviations(
    plan: Reproduction,
    results: Sequence[Mapping[str, Any]],
    changes: Mapping[str, tuple],
    published_row: Mapping[str, Any] | None,
) -> list[str]:
    """What was not the paper's setting, one sentence each."""
    first = results[0]
    protocol = get_protocol(plan.protocol)
    lines = []
    if first.get("random_weights"):
        lines.append("random weights (mechanics mode): the numbers say nothing about the method")
    for key, (paper, used) in changes.items():
        why = (
            " (the protocol smooths the map itself)"
            if key == "scoring.sigma" and protocol.smooths
            else ""
        )
        lines.append(f"config {key}: {paper!r} in the paper preset, {used!r} here{why}")
    kwargs = first.get("trainer", {}).get("kwargs", {})
    device = first.get("trainer", {}).get("device", "?")
    lines.append(
        f"ran on {device} with precision {kwargs.get('precision', 'the preset default')}, "
        f"{first.get('trainer', {}).get('global_step', '?')} optimiser steps"
    )
    if published_row is not None and int(published_row["k"]) != int(first["k"]):
        lines.append(f"k = {first['k']} categories here, {published_row['k']} in the paper")
    if published_row is None:
        lines.append(
            f"no published row of {plan.published} for {first['dataset']} with k = {first['k']}: "
            "nothing to compare with"
        )
    return lines


def markdown(
    plan: Reproduction,
    preset: str,
    table: pd.DataFrame,
    lines: Sequence[str],
    published_row: Mapping[str, Any] | None,
    digits: int = 1,
) -> str:
    """The report page."""
    protocol = get_protocol(plan.protocol)
    shown = table.copy()
    numeric = ["measured", "std", "min", "max", "published", "difference"]
    shown[numeric] = shown[numeric].round(digits)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
        for row in shown.itertuples(index=False)
    ]
    source = "" if published_row is None else published_row.get("source", "")
    return "\n".join(
        [
            f"# Reproduction: {plan.published} ({plan.method}, preset {preset})",
            "",
            f"Protocol **{protocol.name}**: {protocol.summary}.",
            "" if not source else f"\nPublished values: {source}.",
            "",
            "Values in %; measured = mean over seeds of the mean over categories; difference = "
            "measured - published.",
            "",
            header,
            rule,
            *body,
            "",
            "## Not the paper's setting",
            "",
            *[f"- {line}" for line in lines],
            "",
            "## Protocol card",
            "",
            "```yaml",
            yaml.safe_dump(
                {
                    "protocol": protocol.name,
                    "rules": protocol.fields(),
                    "sources": dict(protocol.sources),
                },
                sort_keys=False,
                width=100,
            ).rstrip(),
            "```",
            "",
        ]
    )
