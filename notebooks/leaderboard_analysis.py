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
# # Leaderboard analysis of a results directory
#
# `adbench run SWEEP.yaml --out DIR` leaves one folder per cell (a method on k categories of a
# dataset with one seed) plus tidy tables. This notebook reads such a directory and looks at it
# from four angles:
#
# 1. which cells finished, and what they cost;
# 2. the leaderboard as the runner prints it;
# 3. per-category tables and the rank of each method per category and per metric;
# 4. the gap between each method and the best one, with its spread over seeds.
#
# By default it opens the small results directory shipped with the repository (produced by
# `benchmarks/quickstart.yaml`); set the environment variable `ADBENCH_RESULTS` to read another.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import adbench

# %matplotlib inline

RESULTS = Path(os.environ.get("ADBENCH_RESULTS", "../examples/quickstart_results"))
METRIC = "I-AUROC"  # the metric the per-category tables and gaps are about
SUMMARY = "mAD"  # the metric that picks the reference (best) method
print("reading", RESULTS.resolve())

# %% [markdown]
# ## 1. Cells
#
# `load_cells` gives one row per cell with its status, timings (seconds), peak memory (MiB) and
# parameter count; `load_results` gives one row per (cell, category, metric), where the category
# `mean` holds the average over the cell's categories.

# %%
cells = adbench.load_cells(RESULTS)
results = adbench.load_results(RESULTS)
print(cells["status"].value_counts().to_string())
cells[["method", "dataset", "k", "seed", "status", "train_s", "inference_s", "peak_rss_mb",
       "params"]]

# %%
results.head()

# %% [markdown]
# ## 2. The leaderboard
#
# `adbench.leaderboard` renders, per dataset, the methods against the metrics at the largest
# category count (mean over seeds with the standard deviation when there are several seeds, the
# best value in bold), followed by per-category breakdowns. `fmt="latex"` and `fmt="csv"` give the
# same tables for a paper or a spreadsheet.

# %%
display(Markdown(adbench.leaderboard(RESULTS)))

# %% [markdown]
# ## 3. Per-category tables and ranks
#
# We keep one dataset and its largest k, average each (method, category, metric) over seeds and
# pivot to category x method.

# %%
DATASET = results["dataset"].iloc[0]
rows = results[results["dataset"] == DATASET]
K = int(rows["k"].max())
rows = rows[rows["k"] == K]
seeds = sorted(rows["seed"].unique().tolist())
print(f"dataset {DATASET}, k = {K}, seeds {seeds}")

per_seed = rows.pivot_table(index=["category", "seed"], columns=["metric", "method"],
                            values="value")
means = rows.groupby(["metric", "category", "method"])["value"].mean().unstack("method")
per_category = means.loc[METRIC]
(100 * per_category.drop(index="mean")).round(1)

# %% [markdown]
# The rank of each method per category (1 = best, ties share the better rank), then the mean
# rank per metric. A method with a good mean but a poor mean rank wins big on a few categories
# and loses on many.

# %%
category_ranks = per_category.drop(index="mean").rank(axis=1, ascending=False, method="min")
metric_means = means.xs("mean", level="category")
metric_ranks = metric_means.rank(axis=1, ascending=False, method="min")
order = metric_ranks.mean().sort_values().index.tolist()

figure, axes = plt.subplots(1, 2, figsize=(13, 0.45 * max(len(category_ranks), 8) + 2),
                            layout="constrained")
for axis, ranks, title in ((axes[0], category_ranks[order], f"{METRIC} rank per category"),
                           (axes[1], metric_ranks[order], "rank per metric (category mean)")):
    image = axis.imshow(ranks.to_numpy(), cmap="viridis_r", vmin=1, vmax=len(order),
                        aspect="auto")
    axis.set_xticks(range(len(order)), order, rotation=40, ha="right")
    axis.set_yticks(range(len(ranks)), ranks.index)
    middle = (1 + len(order)) / 2
    for (i, j), value in np.ndenumerate(ranks.to_numpy()):
        axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                  color="white" if value > middle else "black")
    axis.set_title(title)
figure.colorbar(image, ax=axes, label="rank (1 = best)", shrink=0.8)
plt.show()

# %%
summary = pd.DataFrame({
    f"mean {METRIC} rank over categories": category_ranks.mean(),
    "mean rank over metrics": metric_ranks.mean(),
    f"{SUMMARY} (%)": 100 * metric_means.loc[SUMMARY],
}).loc[order]
summary.round(2)

# %% [markdown]
# ## 4. The gap to the best method, with the seed spread
#
# The reference is the method with the highest mean `SUMMARY` metric. For every other method we
# take the difference to the reference **seed by seed** (both were trained on the same
# categories with the same seed), then report the mean and the sample standard deviation of that
# difference. A gap smaller than its spread is not a ranking one should trust.

# %%
cell_means = rows[rows["category"] == "mean"].pivot_table(index="seed",
                                                          columns=["metric", "method"],
                                                          values="value")
best = metric_means.loc[SUMMARY].idxmax()
gaps = {}
for metric in (METRIC, SUMMARY):
    difference = 100 * cell_means[metric].sub(cell_means[metric][best], axis=0)
    gaps[metric] = pd.DataFrame({"gap": difference.mean(), "std": difference.std(ddof=1),
                                 "seeds": difference.count()}).drop(index=best)
gap_table = pd.concat(gaps, axis=1).sort_values((SUMMARY, "gap"), ascending=False)
print(f"reference: {best}")
gap_table.round(2)

# %%
figure, axis = plt.subplots(figsize=(8, 0.45 * len(gap_table) + 1.5))
positions = np.arange(len(gap_table))
for offset, metric in ((-0.18, METRIC), (0.18, SUMMARY)):
    spread = gap_table[(metric, "std")].fillna(0).to_numpy()
    axis.errorbar(gap_table[(metric, "gap")], positions + offset, xerr=spread, fmt="o",
                  capsize=3, label=metric)
axis.axvline(0, color="grey", lw=1)
axis.set_yticks(positions, gap_table.index)
axis.invert_yaxis()
axis.set_xlabel(f"difference to {best} (percentage points)")
label = f"error bars: std over {len(seeds)} seeds" if len(seeds) > 1 else "one seed: no spread"
axis.set_title(f"{DATASET}, k = {K}; {label}")
axis.legend()
axis.grid(True, axis="x", alpha=0.3)
plt.show()

# %% [markdown]
# The verdict below is computed from the table above: a method is called *distinguishable* from
# the reference when its mean gap is larger than twice its seed standard deviation (with one
# seed there is no spread and no such claim is made).

# %%
lines = []
for method, row in gap_table.iterrows():
    gap, std, n = row[(SUMMARY, "gap")], row[(SUMMARY, "std")], int(row[(SUMMARY, "seeds")])
    if n < 2 or np.isnan(std):
        verdict = "single seed, spread unknown"
    elif abs(gap) > 2 * std:
        verdict = "distinguishable from the reference"
    else:
        verdict = "within the seed spread of the reference"
    spread = "" if np.isnan(std) else f" ± {std:.1f}"
    lines.append(f"- **{method}**: {gap:+.1f}{spread} points of {SUMMARY} ({verdict})")
reference = f"Reference **{best}** ({SUMMARY} {100 * metric_means.loc[SUMMARY, best]:.1f}%):"
display(Markdown(reference + "\n\n" + "\n".join(lines)))
