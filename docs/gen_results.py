"""MkDocs hook: fill the results page from the results directory shipped with the repository.

``docs/results.md`` holds the marker ``<!-- results -->``. At build time this hook reads
``examples/quickstart_results`` (made by ``adbench run benchmarks/quickstart.yaml --out
examples/quickstart_results --set checkpoints=false``), renders its leaderboard and a cost
table as Markdown and draws the category-scaling figures, which are added to the site as
generated files (nothing is written into the repository). Without that directory the page
says how to produce it, and the build still succeeds.

Run it as a script to write the same Markdown and figures to a folder instead:
``python docs/gen_results.py OUT_DIR [RESULTS_DIR]``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "examples" / "quickstart_results"
MARKER = "<!-- results -->"
PAGE = "results.md"
FIGURE_DIR = "assets/results"
METRICS = ("I-AUROC", "P-AUROC", "mAD")

log = logging.getLogger("mkdocs.hooks.gen_results")
_rendered: dict[str, str] = {}  # the page text of this build, made once in on_files


def _missing(results: Path) -> str:
    shown = results.relative_to(ROOT) if results.is_relative_to(ROOT) else results
    return (
        '!!! note "No results directory yet"\n\n'
        f"    This page is filled from `{shown}`, which does not exist in this checkout. "
        "Produce it with\n\n"
        "    ```bash\n"
        "    adbench run benchmarks/quickstart.yaml --out examples/quickstart_results \\\n"
        "        --set checkpoints=false\n"
        "    ```\n\n"
        "    and build the documentation again.\n"
    )


def _cost_table(results: Path) -> str:
    import adbench

    cells = adbench.load_cells(results)
    cells = cells[cells["status"] == "finished"]
    if cells.empty:
        return ""
    memory = "peak_gpu_mb" if cells["peak_gpu_mb"].notna().any() else "peak_rss_mb"
    table = (
        cells.groupby(["method", "k"])[["train_s", "images_per_s", memory, "params"]]
        .mean()
        .reset_index()
        .sort_values(["method", "k"])
    )
    header = [
        "method",
        "k",
        "training (s)",
        "inference (images/s)",
        "peak GPU memory (MiB)" if memory == "peak_gpu_mb" else "peak CPU memory (MiB)",
        "parameters",
    ]
    lines = ["| " + " | ".join(header) + " |", "|:---|---:|---:|---:|---:|---:|"]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.method} | {row.k} | {row.train_s:.1f} | {row.images_per_s:.1f} "
            f"| {getattr(row, memory):.0f} | {row.params:,.0f} |"
        )
    return "\n".join(lines)


def render(results: Path = RESULTS) -> tuple[str, dict[str, bytes]]:
    """The Markdown that replaces the marker and the figures it links to (name -> bytes)."""
    if not results.is_dir():
        return _missing(results), {}
    import adbench

    figures: dict[str, bytes] = {}
    parts = ["### Leaderboard", "", adbench.leaderboard(results)]
    with tempfile.TemporaryDirectory() as tmp:
        for metric in METRICS:
            try:
                paths = adbench.plot_scaling(results, metric=metric, save_dir=tmp, formats=["svg"])
            except Exception as err:  # a metric or dataset without data: leave it out, say so
                log.info("gen_results: no scaling figure for %s: %s", metric, err)
                continue
            for path in paths:
                figures[path.name] = path.read_bytes()
    if figures:
        parts += ["### Scaling with the number of categories", ""]
        for name in sorted(figures):
            parts += [f"![{Path(name).stem}]({FIGURE_DIR}/{name})", ""]
    costs = _cost_table(results)
    if costs:
        parts += [
            "### Cost per cell",
            "",
            "Mean over seeds of each cell's training time, inference throughput, peak "
            "memory and parameter count.",
            "",
            costs,
        ]
    return "\n".join(parts) + "\n", figures


# -- MkDocs hook events ------------------------------------------------------------------------
def on_files(files, config):
    """Render the results once per build and add the figures to the site."""
    from mkdocs.structure.files import File

    text, figures = render()
    _rendered[PAGE] = text
    for name, content in figures.items():
        files.append(File.generated(config, f"{FIGURE_DIR}/{name}", content=content))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the marker of the results page with the rendered results."""
    if page.file.src_uri != PAGE or MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _rendered.get(PAGE) or render()[0])


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__)
        return 2
    out = Path(argv[0])
    results = Path(argv[1]).resolve() if len(argv) == 2 else RESULTS
    text, figures = render(results)
    (out / FIGURE_DIR).mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    for name, content in figures.items():
        (out / FIGURE_DIR / name).write_bytes(content)
    print(f"wrote {out / 'results.md'} and {len(figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
