"""Synthetic anomaly maps and independent reference metrics for the metric tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from adbench.batch import AnomalyOutput, Batch


@dataclass
class Maps:
    """N test images of several categories, as the functional API takes them."""

    scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray  # (N, H, W) float32 in {0, 1}
    categories: list[str]  # N names
    ids: np.ndarray | None = None  # (N,) sample indices; 0..N-1 when None

    @property
    def index(self) -> np.ndarray:
        """(N,) sample indices."""
        return np.arange(len(self.scores)) if self.ids is None else self.ids

    def subset(self, keep: np.ndarray) -> Maps:
        """The images where the boolean ``keep`` is True, keeping their sample indices."""
        names = [c for c, k in zip(self.categories, keep, strict=True) if k]
        return Maps(
            self.scores[keep], self.labels[keep], self.maps[keep], self.masks[keep], names,
            self.index[keep],
        )  # fmt: skip

    def quantised(self, levels: int) -> Maps:
        """The same images with maps rounded to ``levels`` values (ties, few thresholds)."""
        lo, hi = self.maps.min(), self.maps.max()
        maps = np.round((self.maps - lo) / (hi - lo) * (levels - 1)).astype(np.float32)
        return Maps(self.scores, self.labels, maps, self.masks, self.categories)

    def batches(self, names: list[str], size: int = 8):
        """Yield (AnomalyOutput, Batch) pairs in order; categories index into ``names``."""
        ids = {n: i for i, n in enumerate(names)}
        for start in range(0, len(self.scores), size):
            part = slice(start, start + size)
            maps = torch.from_numpy(self.maps[part])[:, None]
            count = maps.shape[0]
            batch = Batch(
                image=torch.zeros(count, 3, *self.masks.shape[1:]),
                mask=torch.from_numpy(self.masks[part])[:, None],
                label=torch.from_numpy(self.labels[part]).long(),
                category=torch.tensor([ids[c] for c in self.categories[part]]),
                index=torch.from_numpy(self.index[part]).long(),
            )
            yield AnomalyOutput(maps, torch.from_numpy(self.scores[part]).float()), batch


def blobs(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """(size, size) float32 mask with ``count`` random discs and rectangles."""
    mask = np.zeros((size, size), np.float32)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(count):
        cy, cx = rng.integers(0, size, 2)
        r = rng.integers(max(2, size // 12), max(3, size // 4))
        if rng.random() < 0.5:
            mask[((yy - cy) ** 2 + (xx - cx) ** 2) < r * r] = 1
        else:
            mask[cy : cy + r, cx : cx + 2 * r] = 1
    return mask


def structured_maps(
    seed: int,
    per_category: int = 16,
    size: int = 48,
    categories: tuple[str, ...] = ("bottle", "cable", "grid"),
    normal_first: bool = True,
) -> Maps:
    """Smooth noise maps with blurred, elevated defect regions; each category its own scale."""
    rng = np.random.default_rng(seed)
    scores, labels, maps, masks, names = [], [], [], [], []
    for k, name in enumerate(categories):
        scale, offset = 1.0 + k, 0.5 * k
        for i in range(per_category):
            anomalous = i >= per_category // 2 if normal_first else i < per_category // 2
            mask = (
                blobs(rng, size, int(rng.integers(1, 4)))
                if anomalous
                else np.zeros((size, size), np.float32)
            )
            noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), 2) * 3
            lift = rng.uniform(0.5, 2.5) * ndimage.gaussian_filter(mask, 1.5)
            amap = ((noise + lift + rng.normal(0, 0.1, (size, size))) * scale + offset).astype(
                np.float32
            )
            scores.append(float(amap.max()))
            labels.append(int(anomalous))
            maps.append(amap)
            masks.append(mask)
            names.append(name)
    return Maps(np.array(scores), np.array(labels), np.stack(maps), np.stack(masks), names)


def random_maps(
    seed: int, count: int = 24, size: int = 32, categories: tuple[str, ...] = ("a", "b")
) -> Maps:
    """Independent uniform pixel scores with random masks (hardly any structure)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 2).astype(np.int64)
    masks = np.stack(
        [blobs(rng, size, 2) if y else np.zeros((size, size), np.float32) for y in labels]
    )
    maps = (rng.random((count, size, size)) + 0.3 * masks).astype(np.float32)
    names = [categories[i % len(categories)] for i in range(count // 2) for _ in (0, 1)]
    return Maps(rng.random(count) + 0.2 * labels, labels, maps, masks, names)


def f1_max_reference(labels: np.ndarray, scores: np.ndarray) -> float:
    """F1-max from sklearn's precision-recall curve."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(precision),
        where=precision + recall > 0,
    )
    return float(f1.max())


def aupro_reference(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """AUPRO by a direct loop over every distinct threshold (Bergmann et al., IJCV 2021).

    Regions are the 8-connected components of each mask; PRO(t) is the mean over all regions of
    the fraction of the region at or above t; FPR(t) the fraction of all normal pixels at or above
    t. The curve from (0, 0) is integrated with the trapezoid rule up to FPR = limit, interpolated
    there, and divided by limit.
    """
    masks = masks > 0.5
    regions = []  # the scores of each region's pixels
    for amap, mask in zip(maps, masks, strict=True):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [amap[labels == r] for r in range(1, count + 1)]
    normal = maps[~masks]
    fpr, pro = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fpr.append(np.mean(normal >= t))
        pro.append(np.mean([np.mean(region >= t) for region in regions]))
    area = 0.0
    for k in range(1, len(fpr)):
        if fpr[k] <= limit:
            area += (fpr[k] - fpr[k - 1]) * (pro[k] + pro[k - 1]) / 2
        else:
            edge = pro[k - 1] + (pro[k] - pro[k - 1]) * (limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
            area += (limit - fpr[k - 1]) * (pro[k - 1] + edge) / 2
            break
    return area / limit


def reference_table(data: Maps, aupro: bool = True) -> dict[str, dict[str, float]]:
    """Every metric of every category from sklearn and (unless ``aupro`` is False, as the loop
    takes a while on many distinct scores) `aupro_reference`."""
    table = {}
    for name in dict.fromkeys(data.categories):
        keep = np.array([c == name for c in data.categories])
        y, s = data.labels[keep], data.scores[keep]
        pixels = data.masks[keep].ravel() > 0.5
        values = data.maps[keep].ravel()
        table[name] = {
            "I-AUROC": roc_auc_score(y, s),
            "I-AP": average_precision_score(y, s),
            "I-F1max": f1_max_reference(y, s),
            "P-AUROC": roc_auc_score(pixels, values),
            "P-AP": average_precision_score(pixels, values),
            "P-F1max": f1_max_reference(pixels, values),
            "AUPRO": aupro_reference(data.maps[keep], data.masks[keep]) if aupro else np.nan,
        }
    return table
