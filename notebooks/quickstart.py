# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: one method, one dataset, one evaluation
#
# This notebook walks through the smallest complete use of adbench from Python:
#
# 1. generate the built-in synthetic dataset (a few categories, 64 px images);
# 2. create a method from the registry with its CPU preset `tiny`;
# 3. train it on the normal images of all categories together (the unified multi-class
#    protocol);
# 4. evaluate it per category;
# 5. look at a few test images next to their anomaly maps and ground-truth masks.
#
# Everything runs on a laptop CPU in about a minute. The `tiny` preset trained for a handful of
# steps shows the pipeline, not the accuracy reported in the method's paper.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import adbench

# %matplotlib inline

# Settings kept small on purpose; raise STEPS (e.g. to 600) for a model that has converged.
METHOD = os.environ.get("ADBENCH_METHOD", "mddnet")
CATEGORIES = 3
STEPS = int(os.environ.get("ADBENCH_STEPS", "30"))
WORK = Path(os.environ.get("ADBENCH_WORK") or tempfile.mkdtemp(prefix="adbench_quickstart_"))
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
print("adbench", adbench.__version__, "| methods:", ", ".join(adbench.list_methods()))

# %% [markdown]
# ## 1. Data
#
# `make_synthetic` writes a dataset in the MVTec AD layout: each category is a distinct product
# (textures, objects, grids, prints) with several defect types and exact masks. The same
# arguments always give the same files. `load_index` reads any supported layout into a
# `SampleIndex`, a table with one row per image.

# %%
root = adbench.make_synthetic(WORK / "synthetic", n_categories=CATEGORIES, image_size=64,
                              n_train=12, n_test=8)
index = adbench.load_index("synthetic", root)
print(index.categories)
index.frame.groupby(["category", "split", "label"]).size().unstack(fill_value=0)

# %% [markdown]
# A `UnifiedDataModule` turns the index into Lightning data loaders: one training set with the
# normal images of every category, and a test set evaluated per category.

# %%
datamodule = adbench.UnifiedDataModule(index, image_size=64, batch_size=8)
print(datamodule)

# %% [markdown]
# ## 2. A method from the registry
#
# `adbench.create(name, preset=..., **overrides)` builds a method from its typed config. Presets
# are overlays on the paper's defaults; any field can be overridden with a dotted key, e.g.
# `adbench.create("mddnet", preset="tiny", **{"optim.lr": 1e-3})`. Class-aware parts (MDD-Net's
# memory of normal prototypes per class) are sized by `num_classes`, the number of training
# categories; `fit` checks it matches the data (methods without such parts ignore it).

# %%
spec = adbench.get_method_spec(METHOD)
print(f"{spec.name}: {spec.paper}")
print("presets:", ", ".join(spec.presets))
method = adbench.create(METHOD, preset="tiny", num_classes=len(index.categories))
print(f"{sum(p.numel() for p in method.parameters()):,} parameters "
      f"({sum(p.numel() for p in method.parameters() if p.requires_grad):,} trainable)")

# %% [markdown]
# ## 3. Train and evaluate
#
# `fit` is a thin wrapper around `lightning.Trainer.fit`; every Trainer argument can be passed
# through. `evaluate` scores the test split once and returns a `MetricTable`: seven metrics per
# category and their mean (see the metrics page of the documentation for the definitions).

# %%
adbench.fit(method, datamodule, seed=0, max_steps=STEPS, accelerator="cpu", devices=1,
            enable_progress_bar=False)
table = adbench.evaluate(method, datamodule, accelerator="cpu", devices=1,
                         enable_progress_bar=False)
(100 * table.to_frame()).round(1)

# %% [markdown]
# ## 4. Input, anomaly map and mask side by side
#
# A method's `forward` takes a batch of images in [0, 1] and returns an `AnomalyOutput`: one
# anomaly map per image (higher is more anomalous) and one image score. We pick the first
# anomalous test image of each category.

# %%
test = datamodule.dataset("test")
chosen = {}
for i in range(len(test)):
    sample = test[i]
    if sample.label == 1 and sample.category not in chosen:
        chosen[sample.category] = sample
samples = [chosen[c] for c in sorted(chosen)]

method.eval()
with torch.no_grad():
    output = method(torch.stack([s.image for s in samples]))

figure, axes = plt.subplots(len(samples), 3, figsize=(7.5, 2.5 * len(samples)), squeeze=False)
for row, (sample, anomaly_map, score) in enumerate(
        zip(samples, output.anomaly_map, output.score, strict=True)):
    name = datamodule.categories[sample.category]
    axes[row, 0].imshow(sample.image.permute(1, 2, 0).numpy())
    axes[row, 0].set_title(name, fontsize=9)
    axes[row, 1].imshow(anomaly_map[0].numpy(), cmap="inferno")
    axes[row, 1].set_title(f"anomaly map (score {score:.3g})", fontsize=9)
    axes[row, 2].imshow(sample.mask[0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[row, 2].set_title("ground-truth mask", fontsize=9)
    for axis in axes[row]:
        axis.set_axis_off()
figure.tight_layout()
plt.show()

# %% [markdown]
# ## Next steps
#
# - `adbench run benchmarks/quickstart.yaml` runs every registered method on the synthetic data
#   for two category counts and writes a leaderboard and scaling plots; the
#   `leaderboard_analysis` and `category_scaling` notebooks read such a results directory.
# - The `custom_method` notebook registers a new method from a cell and benchmarks it beside the
#   built-in ones.
