"""Statistics over a sweep's tidy results (`load_results`), all from scipy.stats.

* `confidence_intervals`: a seeded bootstrap 95 % interval of each method's mean, resampling the
  (seed, category) values of a cell group.
* `paired_test`: two methods on the same (category, seed) pairs, Wilcoxon signed-rank with the
  matched-pairs rank-biserial effect size.
* `average_ranks`: methods ranked per dataset, averaged, with the Friedman test and the Nemenyi
  critical difference (Demsar, JMLR 2006); `adbench.runner.plots.plot_critical_difference`
  draws it.
* `degradation_slopes`: the change of a metric per doubling of k, a least-squares fit of the
  mean over a cell's categories against log2 k over every seed, with its t interval.

Values are fractions, as in the results table (0.97, not 97 %).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from adbench.errors import ConfigError, unknown_name

MEAN = "mean"  # the category row holding the mean over a cell's categories
LEVEL = 0.95


def _metric_rows(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    known = sorted(set(results["metric"]))
    if metric not in known:
        raise unknown_name("metric", metric, known)
    return results[results["metric"] == metric]


def _largest_k(rows: pd.DataFrame, k: int | None) -> pd.DataFrame:
    """Each dataset's rows at ``k`` (default: the dataset's largest k)."""
    parts = []
    for dataset, group in rows.groupby("dataset", sort=False):
        chosen = group["k"].max() if k is None else k
        if chosen not in set(group["k"]):
            raise ConfigError(
                f"dataset '{dataset}' has no results for k={k}; available: "
                f"{', '.join(map(str, sorted(group['k'].unique())))}"
            )
        parts.append(group[group["k"] == chosen])
    return pd.concat(parts)


def confidence_intervals(
    results: pd.DataFrame,
    k: int | None = None,
    level: float = LEVEL,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Bootstrap confidence interval of each (dataset, k, method, metric) mean.

    The sample is the cell group's per-category values, one per (seed, category) pair; the
    statistic is their mean, which equals the mean over seeds of the mean over categories when
    every seed has the same categories. Percentile intervals from ``scipy.stats.bootstrap`` with
    ``n_resamples`` resamples drawn from ``numpy.random.default_rng(seed)``.

    Returns:
        Columns ``dataset, k, method, metric, mean, ci_low, ci_high, n`` (n = pairs; the interval
        is NaN for fewer than 2, and the mean itself when every value is equal).
    """
    rows = _largest_k(results[results["category"] != MEAN], k)
    records = []
    for (dataset, k_, method, metric), group in rows.groupby(
        ["dataset", "k", "method", "metric"], sort=False
    ):
        values = group["value"].to_numpy(dtype=float)
        low = high = np.nan
        if len(values) > 1 and np.ptp(values) == 0:
            low = high = float(values[0])
        elif len(values) > 1:
            interval = stats.bootstrap(
                (values,),
                np.mean,
                confidence_level=level,
                n_resamples=n_resamples,
                method="percentile",
                rng=np.random.default_rng(seed),
            ).confidence_interval
            low, high = float(interval.low), float(interval.high)
        records.append(
            {
                "dataset": dataset,
                "k": int(k_),
                "method": method,
                "metric": metric,
                "mean": float(values.mean()),
                "ci_low": low,
                "ci_high": high,
                "n": len(values),
            }
        )
    return pd.DataFrame.from_records(records)


def paired_test(
    results: pd.DataFrame,
    first: str,
    second: str,
    metric: str = "I-AUROC",
    dataset: str | None = None,
    k: int | None = None,
) -> dict[str, float | int | str]:
    """Wilcoxon signed-rank test of ``first`` against ``second`` on ``metric``.

    Over their shared (dataset, k, category, seed) values of ``metric`` (the per-category rows,
    not the means).

    The effect size is the matched-pairs rank-biserial correlation r = (R+ - R-) / (R+ + R-),
    where R+ and R- are the rank sums of the positive and negative differences first - second
    (zero differences dropped, as the test's default does): +1 when ``first`` wins every pair.

    Returns:
        ``first, second, metric, n_pairs, median_difference, statistic, p_value, effect_size``.
    """
    rows = _metric_rows(results, metric)
    rows = rows[rows["category"] != MEAN]
    if dataset is not None:
        rows = rows[rows["dataset"] == dataset]
    if k is not None:
        rows = rows[rows["k"] == k]
    keys = ["dataset", "k", "category", "seed"]
    sides = []
    for method in (first, second):
        side = rows[rows["method"] == method]
        if side.empty:
            raise unknown_name("method", method, sorted(set(rows["method"])))
        sides.append(side.groupby(keys)["value"].mean())
    paired = pd.concat(sides, axis=1, keys=["first", "second"], join="inner")
    difference = (paired["first"] - paired["second"]).to_numpy()
    nonzero = difference[difference != 0]
    if len(nonzero) < 2:
        raise ConfigError(
            f"{first} and {second} share {len(paired)} (category, seed) pairs of "
            f"{metric}, {len(nonzero)} with a difference: too few for a test"
        )
    test = stats.wilcoxon(paired["first"], paired["second"])
    ranks = stats.rankdata(np.abs(nonzero))
    positive, negative = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
    return {
        "first": first,
        "second": second,
        "metric": metric,
        "n_pairs": len(paired),
        "median_difference": float(np.median(difference)),
        "statistic": float(test.statistic),
        "p_value": float(test.pvalue),
        "effect_size": float((positive - negative) / (positive + negative)),
    }


def average_ranks(
    results: pd.DataFrame, metric: str = "I-AUROC", level: float = LEVEL
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Average ranks of the methods over the (dataset, k) blocks, with the Friedman test.

    Methods are ranked within each (dataset, k) block by their mean over seeds of ``metric``
    (rank 1 = best, ties share the average rank), then averaged over the blocks.

    Only methods present in every block are ranked. The Friedman test (``scipy.stats``) needs
    3 or more methods and 2 or more blocks; the Nemenyi critical difference is
    CD = q_alpha sqrt(m (m + 1) / (6 N)) with q_alpha the studentized range quantile over sqrt 2
    (Demsar 2006, Sec. 3.2.2), for m methods and N blocks.

    Returns:
        (table with columns ``method, average_rank, n_blocks``, best first;
        {"n_blocks", "n_methods", "friedman_statistic", "friedman_p", "critical_difference"}).
    """
    rows = _metric_rows(results, metric)
    means = (
        rows[rows["category"] == MEAN]
        .groupby(["dataset", "k", "method"])["value"]
        .mean()
        .unstack("method")
    )
    means = means.dropna(axis=1)
    if means.shape[1] < 2:
        raise ConfigError(f"fewer than 2 methods have {metric} in every (dataset, k) block")
    ranks = means.rank(axis=1, ascending=False)
    blocks, methods = means.shape
    table = (
        ranks.mean()
        .rename("average_rank")
        .sort_values()
        .rename_axis("method")
        .reset_index()
        .assign(n_blocks=blocks)
    )
    summary = {
        "n_blocks": blocks,
        "n_methods": methods,
        "friedman_statistic": np.nan,
        "friedman_p": np.nan,
        "critical_difference": np.nan,
    }
    if methods >= 3 and blocks >= 2:
        friedman = stats.friedmanchisquare(*(means[m] for m in means.columns))
        summary["friedman_statistic"] = float(friedman.statistic)
        summary["friedman_p"] = float(friedman.pvalue)
    if blocks >= 2:
        q = stats.studentized_range.ppf(level, methods, np.inf) / np.sqrt(2)
        summary["critical_difference"] = float(q * np.sqrt(methods * (methods + 1) / (6 * blocks)))
    return table, summary


def degradation_slopes(
    results: pd.DataFrame, metric: str = "I-AUROC", level: float = LEVEL
) -> pd.DataFrame:
    """Change of ``metric`` per doubling of k, per (dataset, method).

    The least-squares slope of the cells' mean over categories against log2 k, one point per
    (k, seed) (``scipy.stats.linregress``), with its two-sided t interval on n - 2 degrees of
    freedom.

    Returns:
        Columns ``dataset, method, metric, slope, ci_low, ci_high, n_points, k_min, k_max``;
        the interval is NaN with fewer than 3 points, and the slope with fewer than 2 k values.
    """
    rows = _metric_rows(results, metric)
    rows = rows[rows["category"] == MEAN]
    records = []
    for (dataset, method), group in rows.groupby(["dataset", "method"], sort=False):
        x, y = np.log2(group["k"].to_numpy(dtype=float)), group["value"].to_numpy(dtype=float)
        slope = low = high = np.nan
        if len(np.unique(x)) >= 2:
            fit = stats.linregress(x, y)
            slope = float(fit.slope)
            if len(x) >= 3:
                half = stats.t.ppf(0.5 + level / 2, len(x) - 2) * fit.stderr
                low, high = slope - half, slope + half
        records.append(
            {
                "dataset": dataset,
                "method": method,
                "metric": metric,
                "slope": slope,
                "ci_low": low,
                "ci_high": high,
                "n_points": len(x),
                "k_min": int(group["k"].min()),
                "k_max": int(group["k"].max()),
            }
        )
    return pd.DataFrame.from_records(records)
