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
# # Category scaling: accuracy and cost against the number of categories
#
# The question adbench is built around: when one unified model has to cover more product
# categories, how much accuracy does each method lose, and what does the extra coverage cost?
# A sweep with several category counts `k` (nested subsets: every larger subset contains the
# smaller ones) answers it. This notebook reads such a results directory and draws, for every
# method:
#
# - accuracy (image AUROC, pixel AUROC and mAD, mean over categories) against k;
# - cost against k: training time, training time per training image, inference throughput,
#   peak memory and parameter count;
#
# and closes with an interpretation computed from those numbers. By default it reads the
# category-scaling study shipped with the repository (`examples/scaling_results`: 8 methods,
# k = 4 ... 64, 3 seeds, `benchmarks/scaling_synthetic.yaml`); set `ADBENCH_RESULTS` to read
# another results directory.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, Markdown, display

import adbench

# %matplotlib inline

RESULTS = Path(os.environ.get("ADBENCH_RESULTS", "../examples/scaling_results"))
ACCURACY = ["I-AUROC", "P-AUROC", "mAD"]
print("reading", RESULTS.resolve())

results = adbench.load_results(RESULTS)
cells = adbench.load_cells(RESULTS)
cells = cells[cells["status"] == "finished"].copy()
ks = results.groupby("dataset")["k"].nunique()
DATASET = ks.idxmax()  # the dataset with the most category counts
results = results[(results["dataset"] == DATASET) & (results["category"] == "mean")]
cells = cells[cells["dataset"] == DATASET]
K_VALUES = sorted(results["k"].unique().tolist())
SEEDS = sorted(results["seed"].unique().tolist())
METHODS = sorted(results["method"].unique())
print(f"dataset {DATASET}: k = {K_VALUES}, seeds {SEEDS}, {len(METHODS)} methods")

# %% [markdown]
# ## Accuracy against k
#
# Mean over seeds; the band is the range over seeds (absent with a single seed).

# %%
accuracy = (results[results["metric"].isin(ACCURACY)]
            .groupby(["metric", "method", "k"])["value"]
            .agg(["mean", "min", "max", "std"]) * 100)

colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(METHODS)}


def draw(axis, table, ylabel):
    """One line per method: mean over seeds with a min-max band."""
    for method in METHODS:
        if method not in table.index.get_level_values("method"):
            continue
        rows = table.loc[method]
        axis.plot(rows.index, rows["mean"], marker="o", color=colors[method], label=method)
        axis.fill_between(rows.index, rows["min"], rows["max"], color=colors[method],
                          alpha=0.15, lw=0)
    axis.set_xticks(K_VALUES)
    axis.set_xlabel("categories k")
    axis.set_ylabel(ylabel)
    axis.grid(True, alpha=0.3)


figure, axes = plt.subplots(1, len(ACCURACY), figsize=(5 * len(ACCURACY), 4),
                            layout="constrained")
for axis, metric in zip(axes, ACCURACY, strict=True):
    draw(axis, accuracy.loc[metric], f"{metric} (%)")
    axis.set_title(metric)
axes[0].legend(fontsize=8)
plt.show()

# %%
accuracy["mean"].unstack("k").round(1)

# %% [markdown]
# ## Cost against k
#
# More categories mean more training images, so the training time is shown both in total and
# per training image. Memory is the peak GPU memory when the cells ran on a GPU, else the peak
# resident memory of the process.

# %%
cells["train_s_per_image"] = cells["train_s"] / cells["n_train"]
memory = "peak_gpu_mb" if cells["peak_gpu_mb"].notna().any() else "peak_rss_mb"
COSTS = {
    "train_s": "training time (s)",
    "train_s_per_image": "training time per training image (s)",
    "images_per_s": "inference throughput (images/s)",
    memory: "peak GPU memory (MiB)" if memory == "peak_gpu_mb" else "peak CPU memory (MiB)",
    "params": "parameters",
}
for column in COSTS:
    cells[column] = pd.to_numeric(cells[column], errors="coerce")
cost = cells.groupby(["method", "k"])[list(COSTS)].agg(["mean", "min", "max"])

figure, axes = plt.subplots(2, 3, figsize=(15, 7.5), layout="constrained")
axes = axes.ravel()
axes[-1].set_axis_off()  # five panels on a 2 x 3 grid
for axis, (column, label) in zip(axes, COSTS.items(), strict=False):
    draw(axis, cost[column], label)
    axis.set_ylim(bottom=0)
    axis.set_title(label, fontsize=10)
axes[0].legend(fontsize=8)
plt.show()

# %%
cost.xs("mean", axis=1, level=1).round(3)

# %% [markdown]
# ## The runner's own figure
#
# `adbench.plot_scaling` draws the standard three-panel figure (a metric, training time, peak
# memory) that `adbench run` writes next to the leaderboard.

# %%
figures = Path(tempfile.mkdtemp(prefix="adbench_plots_"))
paths = adbench.plot_scaling(RESULTS, metric="I-AUROC", dataset=DATASET, save_dir=figures,
                             formats=["png"])
display(Image(filename=str(paths[0])))

# %% [markdown]
# ## Statistics: the degradation slope, intervals, paired tests and ranks
#
# `adbench.degradation_slopes` fits each method's mean over categories against log2 k over every
# seed: the slope is the change in points per doubling of k, the single number the scaling
# question asks for, with its 95 % t interval (NaN with fewer than 3 points).
# `adbench.confidence_intervals` bootstraps the mean over (seed, category) pairs at the largest k,
# `adbench.paired_test` compares two methods on the same (category, seed) pairs (Wilcoxon
# signed-rank, with the rank-biserial effect size), and `adbench.average_ranks` ranks the methods
# in every (dataset, k) block. See the leaderboard page of the documentation for the formulas.

# %%
all_results = adbench.load_results(RESULTS)
all_results = all_results[all_results["dataset"] == DATASET]
slopes = adbench.degradation_slopes(all_results, "mAD").set_index("method")
(100 * slopes[["slope", "ci_low", "ci_high"]]).round(2).join(slopes[["n_points"]])

# %%
intervals = adbench.confidence_intervals(all_results)
intervals = intervals[intervals["metric"].isin(ACCURACY)]
table = intervals.assign(**{c: 100 * intervals[c] for c in ("mean", "ci_low", "ci_high")})
table.pivot(index="method", columns="metric", values=["mean", "ci_low", "ci_high"]).round(1)

# %%
by_map = all_results[(all_results["category"] == "mean") & (all_results["metric"] == "mAD")
                     & (all_results["k"] == K_VALUES[-1])].groupby("method")["value"].mean()
leader, runner_up = by_map.sort_values(ascending=False).index[:2]
test = adbench.paired_test(all_results, leader, runner_up, "mAD", k=K_VALUES[-1])
ranks, rank_summary = adbench.average_ranks(all_results, "mAD")
display(Markdown(
    f"At k = {K_VALUES[-1]}, **{leader}** against **{runner_up}** on mAD: "
    f"{test['n_pairs']} (category, seed) pairs, median difference "
    f"{100 * test['median_difference']:+.1f} points, Wilcoxon p = {test['p_value']:.3g}, "
    f"rank-biserial r = {test['effect_size']:+.2f}. Average ranks over "
    f"{rank_summary['n_blocks']} (dataset, k) blocks (Nemenyi critical difference "
    f"{rank_summary['critical_difference']:.2f}):"))
display(ranks)

# %%
paths = adbench.plot_ranks(RESULTS, metric="mAD", save_dir=figures, formats=["png"])
display(Image(filename=str(paths[0])))

# %% [markdown]
# ## Interpretation
#
# The text below is generated from the tables above, so it stays true when the results change.
# For each method it compares the smallest and the largest k: the change in mAD and image AUROC
# (and whether that change is larger than the spread over seeds), how the training time grew
# relative to the number of training images, and the memory.

# %%
k_low, k_high = K_VALUES[0], K_VALUES[-1]
mean_acc = accuracy["mean"].unstack("k")
std_acc = accuracy["std"].unstack("k")
mean_cost = cost.xs("mean", axis=1, level=1)
images = cells.groupby("k")["n_train"].mean()


def change(metric, method):
    """(value at k_low, value at k_high, change, seed std at k_high or NaN)."""
    low, high = mean_acc.loc[(metric, method), k_low], mean_acc.loc[(metric, method), k_high]
    return low, high, high - low, std_acc.loc[(metric, method), k_high]


finished_ks = results.groupby("method")["k"].agg(set)
COMPARED = [m for m in METHODS if {k_low, k_high} <= finished_ks[m]]
lines = [f"From k = {k_low} to k = {k_high} categories on `{DATASET}` "
         f"({len(SEEDS)} seed{'s' if len(SEEDS) > 1 else ''}; the training set grows from "
         f"{images[k_low]:.0f} to {images[k_high]:.0f} images):", ""]
if len(COMPARED) < len(METHODS):
    lines += [f"(not compared, no finished cell at k = {k_low} or k = {k_high}: "
              f"{', '.join(sorted(set(METHODS) - set(COMPARED)))})", ""]
summary = []
for method in COMPARED:
    low, high, delta, spread = change("mAD", method)
    i_low, i_high, i_delta, _ = change("I-AUROC", method)
    if np.isnan(spread):
        significance = "one seed, so the spread is unknown"
    elif abs(delta) > 2 * spread:
        significance = f"more than twice the seed spread ({spread:.1f})"
    else:
        significance = f"within twice the seed spread ({spread:.1f})"
    time_ratio = mean_cost.loc[(method, k_high), "train_s"] / mean_cost.loc[(method, k_low),
                                                                             "train_s"]
    mem_low, mem_high = (mean_cost.loc[(method, k), memory] for k in (k_low, k_high))
    lines.append(
        f"- **{method}**: mAD {low:.1f} → {high:.1f} ({delta:+.1f} points, {significance}); "
        f"I-AUROC {i_low:.1f} → {i_high:.1f} ({i_delta:+.1f}). Training time x{time_ratio:.2f} "
        f"for x{images[k_high] / images[k_low]:.2f} training images; peak memory "
        f"{mem_low:.0f} → {mem_high:.0f} MiB.")
    summary.append({"method": method, "mAD_high": high, "delta": delta,
                    "train_s_high": mean_cost.loc[(method, k_high), "train_s"]})
summary = pd.DataFrame(summary).set_index("method")
best = summary["mAD_high"].idxmax()
steadiest = summary["delta"].idxmax()
cheapest = summary["train_s_high"].idxmin()
lines += ["",
          f"At k = {k_high} the most accurate method by mAD is **{best}** "
          f"({summary.loc[best, 'mAD_high']:.1f}); the one that holds its mAD best from "
          f"k = {k_low} (the largest change, gain or smallest loss) is **{steadiest}** "
          f"({summary.loc[steadiest, 'delta']:+.1f} points); the fastest to train is "
          f"**{cheapest}** ({summary.loc[cheapest, 'train_s_high']:.1f} s)."]
if len(SEEDS) < 2:
    lines.append("With a single seed these differences carry no error bar; add seeds to the "
                 "sweep before reading a trend into them.")
if len(K_VALUES) < 3:
    lines.append(f"With only {len(K_VALUES)} category counts the curves are straight lines "
                 "between two points: a trend needs more values of k.")
display(Markdown("\n".join(lines)))
