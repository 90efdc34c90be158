"""The built-in protocols side by side, as a Markdown table (``adbench protocols``, the docs)."""

from __future__ import annotations

from collections.abc import Sequence

from adbench.protocols.base import Protocol


def _text(protocol: Protocol) -> dict[str, str]:
    """One cell text per rule."""
    smoothing = protocol.smoothing
    score = protocol.image_score
    pixels = protocol.pixels
    return {
        "crop": "none"
        if protocol.crop_fraction >= 1
        else f"central {protocol.crop_fraction:.3f} of the side",
        "evaluation size": "the image size"
        if protocol.eval_size is None
        else f"{protocol.eval_size} x {protocol.eval_size}",
        "mask resize (load; to evaluation size)": f"{protocol.mask_load}; {protocol.mask_resize}",
        "mask anomalous where": f"> {protocol.mask_threshold:.4g}",
        "map resize": f"{protocol.map_resize} (align_corners=False)",
        "map smoothing": "the method's own"
        if smoothing is None
        else f"Gaussian sigma {smoothing.sigma:g}, kernel {smoothing.kernel_size}, "
        f"{smoothing.padding} border",
        "image score": {
            "method": "the method's own",
            "max": "max of the map",
            "top_fraction": f"mean of the top {score.value:.0%} of the map",
            "top_k": f"mean of the top {score.value:g} pixels",
        }[score.rule],
        "pixel metrics": "sorted (exact) or streaming"
        if pixels.kind == "sorted" and len(protocol.evaluation_modes) > 1
        else "sorted (exact)"
        if pixels.kind == "sorted"
        else f"ADEval, {pixels.strips} strips"
        + (
            ""
            if pixels.f1_thresholds is None
            else f"; P-F1max at {pixels.f1_thresholds} thresholds"
        ),
        "AUPRO": _aupro(protocol),
        "multi-view objects": "views pooled by " + protocol.view_pooling
        if protocol.view_pooling
        else "views scored as images",
    }


def _aupro(protocol: Protocol) -> str:
    aupro, limit = protocol.aupro, f"{protocol.aupro.fpr_limit:g}"
    if protocol.pixels.kind == "strips":
        return f"ADEval strips up to FPR {limit} (interpolated), divided by the limit"
    if aupro.thresholds is None:
        return f"exact area up to FPR {limit} (interpolated), divided by the limit"
    scale = "the limit" if aupro.fpr_normalisation == "limit" else "the largest kept FPR"
    return f"{aupro.thresholds} thresholds, points with FPR < {limit}, divided by {scale}"


def protocols_markdown(protocols: Sequence[Protocol]) -> str:
    """A table with one column per protocol and one row per rule."""
    texts = [_text(p) for p in protocols]
    lines = [
        "| rule | " + " | ".join(f"`{p.name}`" for p in protocols) + " |",
        "|---|" + "---|" * len(protocols),
    ]
    lines += [f"| {rule} | " + " | ".join(t[rule] for t in texts) + " |" for rule in texts[0]]
    return "\n".join(lines)
