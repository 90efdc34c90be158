"""Reference pipelines of evaluation protocols, written from the official code, not from adbench.

For each protocol, ``*_inputs`` turns a category's anomaly maps and mask files into the evaluated
masks and maps, and ``*_metrics`` turns those into the seven reported numbers, the way its source
does:

- Dinomaly: guojiajeremy/Dinomaly ``dataset.py`` ``get_data_transforms`` (the masks) and
  ``utils.py`` ``evaluation_batch``, ``f1_score_max``, ``compute_pro``, ``get_gaussian_kernel``.
- GLAD: hyao1/GLAD ``dataset/dataset_multiclass.py`` ``transformer_compose`` (the masks),
  ``main_multi.py`` ``test()`` and ``utilize/utilize.py`` ``compute_pro``.
- adbench: its own rule (masks nearest and > 0.5, maps bilinear to the mask size, the method's
  score, exact AUPRO after Bergmann et al., IJCV 2021).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from skimage import measure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score
from torch import Tensor
from torchvision import transforms

METRICS = ("I-AUROC", "I-AP", "I-F1max", "P-AUROC", "P-AP", "P-F1max", "AUPRO")
MaskPaths = Sequence[Path | None]  # None: a normal image without a mask file


def compute_pro(masks: np.ndarray, amaps: np.ndarray, num_th: int = 200) -> float:
    """AUPRO over ``num_th`` thresholds (Dinomaly utils.py:651-698, GLAD utilize.py:39-70).

    As the official code, except that each mask's regions are found once rather than once per
    threshold (they do not depend on it).

    Args:
        masks: (N, H, W) binary ground truth (bool or int).
        amaps: (N, H, W) float32 anomaly maps.
        num_th: number of thresholds.
    """
    regions = [  # (image, rows, columns, area) of each region
        (i, region.coords[:, 0], region.coords[:, 1], region.area)
        for i, mask in enumerate(masks)
        for region in measure.regionprops(measure.label(mask))
    ]
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / num_th
    inverse_masks = 1 - masks
    pro, fpr = [], []
    for th in np.arange(min_th, max_th, delta):
        binary_amaps = amaps > th
        pros = [binary_amaps[i, rows, cols].sum() / area for i, rows, cols, area in regions]
        fp_pixels = np.logical_and(inverse_masks, binary_amaps).sum()
        pro.append(np.mean(pros))
        fpr.append(fp_pixels / inverse_masks.sum())
    pro, fpr = np.asarray(pro), np.asarray(fpr)
    kept = fpr < 0.3
    return float(auc(fpr[kept] / fpr[kept].max(), pro[kept]))


def get_gaussian_kernel(kernel_size: int = 3, sigma: float = 2, channels: int = 1):
    """The zero-padded 2-D Gaussian ``Conv2d`` of Dinomaly utils.py:701-734."""
    x_coord = torch.arange(kernel_size)
    x_grid = x_coord.repeat(kernel_size).view(kernel_size, kernel_size)
    y_grid = x_grid.t()
    xy_grid = torch.stack([x_grid, y_grid], dim=-1).float()
    mean = (kernel_size - 1) / 2.0
    variance = sigma**2.0
    gaussian_kernel = (1.0 / (2.0 * math.pi * variance)) * torch.exp(
        -torch.sum((xy_grid - mean) ** 2.0, dim=-1) / (2 * variance)
    )
    gaussian_kernel = gaussian_kernel / torch.sum(gaussian_kernel)
    gaussian_kernel = gaussian_kernel.view(1, 1, kernel_size, kernel_size)
    gaussian_kernel = gaussian_kernel.repeat(channels, 1, 1, 1)
    gaussian_filter = torch.nn.Conv2d(
        in_channels=channels,
        out_channels=channels,
        kernel_size=kernel_size,
        groups=channels,
        bias=False,
        padding=kernel_size // 2,
    )
    gaussian_filter.weight.data = gaussian_kernel
    gaussian_filter.weight.requires_grad = False
    return gaussian_filter


def dinomaly_f1_max(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """``f1_score_max`` of Dinomaly utils.py:284-289 (eps 1e-7, last point dropped)."""
    precs, recs, _ = precision_recall_curve(y_true, y_score)
    f1s = 2 * precs * recs / (precs + recs + 1e-7)
    return float(f1s[:-1].max())


def finite_f1_max(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """F1-max of GLAD main_multi.py:344-348: the largest finite ``2PR / (P + R)``."""
    precisions, recalls, _ = precision_recall_curve(y_true, y_score)
    with np.errstate(invalid="ignore"):
        f1 = (2 * precisions * recalls) / (precisions + recalls)
    return float(np.max(f1[np.isfinite(f1)]))


def dinomaly_inputs(maps: Tensor, mask_paths: MaskPaths) -> tuple[np.ndarray, np.ndarray]:
    """Dinomaly's evaluated masks and maps (``evaluation_batch(..., resize_mask=256)``).

    Args:
        maps: (N, 1, 392, 392) float32 maps at the crop size (the model's output).
        mask_paths: N mask files (None for normal images, whose gt is zeros).

    Returns:
        gt (N, 256, 256) bool and the smoothed maps (N, 256, 256) float32.
    """
    gt_transform = transforms.Compose(
        [transforms.Resize((448, 448)), transforms.CenterCrop(392), transforms.ToTensor()]
    )
    gt = torch.stack(
        [torch.zeros(1, 392, 392) if p is None else gt_transform(Image.open(p)) for p in mask_paths]
    )
    with torch.no_grad():
        anomaly_map = F.interpolate(maps, size=256, mode="bilinear", align_corners=False)
        gt = F.interpolate(gt, size=256, mode="nearest")
        anomaly_map = get_gaussian_kernel(kernel_size=5, sigma=4)(anomaly_map)
    return gt.bool()[:, 0].numpy(), anomaly_map[:, 0].numpy()


def dinomaly_scores(maps: np.ndarray) -> np.ndarray:
    """(N,) image scores of (N, H, W) evaluated maps: the mean of the top 1 % (max_ratio=0.01)."""
    flat = torch.from_numpy(maps).flatten(1)
    # the first int(n * 0.01) of torch.sort(descending=True): topk's values in the same order
    return torch.topk(flat, int(flat.shape[1] * 0.01), dim=1)[0].mean(dim=1).numpy()


def dinomaly_metrics(gt: np.ndarray, maps: np.ndarray, labels: np.ndarray) -> dict:
    """Dinomaly's numbers of evaluated (N, H, W) masks and maps."""
    pr_sp = dinomaly_scores(maps)
    aupro = compute_pro(gt, maps)
    gt_px, pr_px = gt.ravel(), maps.ravel()
    values = (
        roc_auc_score(labels, pr_sp), average_precision_score(labels, pr_sp),
        dinomaly_f1_max(labels, pr_sp), roc_auc_score(gt_px, pr_px),
        average_precision_score(gt_px, pr_px), dinomaly_f1_max(gt_px, pr_px), aupro,
    )  # fmt: skip
    return dict(zip(METRICS, map(float, values), strict=True))


def kornia_gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """kornia ``gaussian_blur2d`` as GLAD calls it (main_multi.py:300-301, 330).

    Kernel side ``2 int(4 sigma + 0.5) + 1``, the normalised 1-D Gaussian's outer product, the
    border extended with torch's ``reflect`` (kornia's default ``border_type``).

    Args:
        maps: (N, 1, H, W); the kernel is computed in their dtype, as kornia does.
    """
    kernel_size = 2 * int(4 * sigma + 0.5) + 1
    x = torch.arange(kernel_size, dtype=maps.dtype) - kernel_size // 2
    gauss = torch.exp(-(x**2) / (2 * sigma**2))
    gauss = gauss / gauss.sum()
    pad = kernel_size // 2
    padded = F.pad(maps, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, torch.outer(gauss, gauss)[None, None])


def glad_inputs(maps: Tensor, mask_paths: MaskPaths) -> tuple[np.ndarray, np.ndarray]:
    """GLAD's evaluated masks and maps (no foreground mask: an all-ones one).

    Args:
        maps: (N, 1, 256, 256) float32 anomaly maps before smoothing.
        mask_paths: N mask files (None for normal images, whose mask is zeros).

    Returns:
        masks (N, 256, 256) int (1 anomalous) and the smoothed maps (N, 256, 256) float32.
    """
    resize = transforms.Resize((256, 256), interpolation=transforms.InterpolationMode.BILINEAR)
    masks = [
        torch.zeros(1, 256, 256)
        if p is None
        else transforms.ToTensor()(resize(Image.open(p).convert("L")))
        for p in mask_paths
    ]
    with torch.no_grad():
        preds = kornia_gaussian_blur(maps, sigma=6)[:, 0]
    return np.array([m[0].numpy() for m in masks], dtype=np.int_), preds.numpy()


def glad_scores(preds: np.ndarray) -> np.ndarray:
    """(N,) image scores of (N, H, W) evaluated maps: the mean of the top 250 pixels."""
    flat = torch.flatten(torch.from_numpy(preds), start_dim=1)
    return torch.topk(flat, 250)[0].mean(dim=1).numpy()


def glad_metrics(masks: np.ndarray, preds: np.ndarray, labels: np.ndarray) -> dict:
    """GLAD's numbers of evaluated (N, H, W) masks and maps (before its rounding)."""
    scores = glad_scores(preds)
    scores = (scores - scores.min()) / (scores.max() - scores.min())  # utilize.py normalize
    values = (
        roc_auc_score(labels, scores), average_precision_score(labels, scores),
        finite_f1_max(labels, scores), roc_auc_score(masks.ravel(), preds.ravel()),
        average_precision_score(masks.ravel(), preds.ravel()),
        finite_f1_max(masks.ravel(), preds.ravel()), compute_pro(masks, preds),
    )  # fmt: skip
    return dict(zip(METRICS, map(float, values), strict=True))


def bilinear_matrix(size_out: int, size_in: int) -> np.ndarray:
    """(size_out, size_in) weights of 1-D linear interpolation with half-pixel centres.

    Output pixel ``i`` samples the input at ``(i + 0.5) size_in / size_out - 0.5``, clamped to
    the first and last input pixel (``align_corners=False``).
    """
    x = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(x).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    weights = np.zeros((size_out, size_in))
    np.add.at(weights, (np.arange(size_out), low), 1 - (x - low))
    np.add.at(weights, (np.arange(size_out), high), x - low)
    return weights


def exact_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """Exact AUPRO: every distinct map value a threshold (Bergmann et al., IJCV 2021).

    PRO(t) is the mean over the 8-connected regions of all masks of the fraction of the region
    at or above t, FPR(t) the fraction of normal pixels at or above t; the curve from (0, 0) is
    integrated up to FPR = ``limit`` (interpolated there) and divided by ``limit``.

    Args:
        maps: (N, H, W) anomaly maps.
        masks: (N, H, W) bool ground truth.
        limit: the FPR limit.
    """
    overlap, regions = np.zeros(masks.shape), 0
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        areas = np.bincount(labelled.ravel())
        overlap[i] = np.where(mask, 1.0 / areas[labelled], 0.0)
        regions += count
    order = np.argsort(-maps.ravel(), kind="stable")
    values = maps.ravel()[order]
    last_of_value = np.r_[values[1:] != values[:-1], True]
    fpr = np.cumsum(~masks.ravel()[order])[last_of_value] / (~masks).sum()
    pro = np.cumsum(overlap.ravel()[order])[last_of_value] / regions
    fpr, pro = np.r_[0.0, fpr], np.r_[0.0, pro]
    inside = int(np.searchsorted(fpr, limit, side="right"))
    x, y = fpr[:inside], pro[:inside]
    if inside < fpr.size:
        at_limit = np.interp(limit, fpr[inside - 1 : inside + 1], pro[inside - 1 : inside + 1])
        x, y = np.r_[x, limit], np.r_[y, at_limit]
    return float(np.trapezoid(y, x) / limit)


def adbench_inputs(
    maps: np.ndarray, mask_paths: MaskPaths, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """adbench's default rule: masks nearest-loaded at ``side`` and > 0.5, maps bilinear to it.

    Args:
        maps: (N, h, w) anomaly maps at the method's resolution.
        mask_paths: N mask files (None for normal images).
        side: the loaded image (and mask) side.

    Returns:
        masks (N, side, side) bool and maps (N, side, side) float64.
    """
    masks = np.stack(
        [
            np.zeros((side, side), bool)
            if p is None
            else np.asarray(Image.open(p).convert("L").resize((side, side), Image.NEAREST)) > 127
            for p in mask_paths
        ]
    )
    rows, cols = bilinear_matrix(side, maps.shape[1]), bilinear_matrix(side, maps.shape[2])
    return masks, rows @ maps.astype(np.float64) @ cols.T


def adbench_metrics(
    masks: np.ndarray, maps: np.ndarray, labels: np.ndarray, scores: np.ndarray
) -> dict:
    """adbench's numbers of (N, H, W) masks and maps with the method's (N,) scores."""
    gt_px, pr_px = masks.ravel(), maps.ravel()
    values = (
        roc_auc_score(labels, scores), average_precision_score(labels, scores),
        finite_f1_max(labels, scores), roc_auc_score(gt_px, pr_px),
        average_precision_score(gt_px, pr_px), finite_f1_max(gt_px, pr_px),
        exact_aupro(maps, masks),
    )  # fmt: skip
    return dict(zip(METRICS, map(float, values), strict=True))
