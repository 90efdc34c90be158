"""``evaluate``: the metric table of arrays already in memory (notebooks, other tools' outputs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from adbench.batch import AnomalyOutput
from adbench.errors import InvalidInputError
from adbench.metrics.evaluator import Evaluator

ArrayLike = np.ndarray | Tensor


class _Targets(NamedTuple):
    """The fields of a `Batch` that the Evaluator reads."""

    mask: Tensor
    label: Tensor
    category: Tensor
    index: Tensor


def _images(values: ArrayLike, name: str, count: int) -> Tensor:
    """(N, H, W) or (N, 1, H, W) -> (N, 1, H, W) tensor."""
    tensor = torch.as_tensor(values)
    if tensor.ndim == 3:
        tensor = tensor[:, None]
    if tensor.ndim != 4 or tensor.shape[1] != 1:
        raise InvalidInputError(
            f"{name} must have shape (N, H, W) or (N, 1, H, W), got {tuple(tensor.shape)}"
        )
    if tensor.shape[0] != count:
        raise InvalidInputError(f"{name} has {tensor.shape[0]} entries but scores has {count}")
    return tensor


def evaluate(
    scores: ArrayLike,
    labels: ArrayLike,
    maps: ArrayLike,
    masks: ArrayLike,
    categories: Sequence[str],
    mode: str = "streaming",
    *,
    objects: Sequence[str | None] | None = None,
    batch_size: int = 32,
    **evaluator_kwargs: Any,
) -> pd.DataFrame:
    """Per-category metric table of N test images, with the ``mean`` row.

    Args:
        scores: (N,) image scores, higher = more anomalous.
        labels: (N,) 0 normal, 1 anomalous.
        maps: (N, H, W) or (N, 1, H, W) anomaly maps; resized bilinearly to the mask size when
            their size differs.
        masks: (N, H, W) or (N, 1, H, W) ground truth; pixels > 0.5 are anomalous (under the
            default protocol; ``protocol=`` in ``evaluator_kwargs`` applies another's rules).
        categories: N category names; rows follow their order of first appearance.
        mode: ``"streaming"`` or ``"exact"`` (see `Evaluator`).
        objects: N object ids (None for an image without one) of a multi-view dataset; adds the
            object-level S-AUROC, S-AP and S-F1max (pooled with ``view_pooling``, default max).
        batch_size: images fed to the Evaluator at a time.
        **evaluator_kwargs: further `Evaluator` arguments (``bins``, ``view_pooling``, ...).

    Returns:
        DataFrame indexed by category plus ``"mean"``, with the columns I-AUROC, I-AP, I-F1max,
        P-AUROC, P-AP, P-F1max, AUPRO, mAD (then S-AUROC, S-AP, S-F1max with ``objects``) as
        fractions in [0, 1].
    """
    scores_t = torch.as_tensor(scores).reshape(-1)
    if not scores_t.is_floating_point():
        scores_t = scores_t.to(torch.float32)
    count = scores_t.numel()
    labels_t = torch.as_tensor(labels).reshape(-1).to(torch.int64)
    maps_t, masks_t = _images(maps, "maps", count), _images(masks, "masks", count)
    names = [str(c) for c in categories]
    if labels_t.numel() != count or len(names) != count:
        raise InvalidInputError(
            f"scores, labels and categories must have one entry per image, got {count}, "
            f"{labels_t.numel()} and {len(names)}"
        )
    if objects is not None and len(objects) != count:
        raise InvalidInputError(f"objects has {len(objects)} entries but scores has {count}")
    order = list(dict.fromkeys(names))
    ids = {name: i for i, name in enumerate(order)}
    category_t = torch.tensor([ids[n] for n in names], dtype=torch.int64)
    keys = None if objects is None else dict(enumerate(objects))
    evaluator = Evaluator(order, mode=mode, objects=keys, **evaluator_kwargs)
    for start in range(0, count, batch_size):
        part = slice(start, start + batch_size)
        chunk_maps = maps_t[part]
        if not chunk_maps.is_floating_point():
            chunk_maps = chunk_maps.to(torch.float32)
        output = AnomalyOutput(chunk_maps, scores_t[part])
        index = torch.arange(start, start + chunk_maps.shape[0], dtype=torch.int64)
        targets = _Targets(masks_t[part], labels_t[part], category_t[part], index)
        evaluator.update(output, targets)  # type: ignore[arg-type]
    return evaluator.compute().to_frame()
