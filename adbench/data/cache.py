"""Resized caches of huge datasets (``adbench data prepare``) and their use by the datamodule.

A cache holds every image and mask of a dataset resized to ``size`` x ``size`` as PNG under
``<out>/files/<path relative to the root>.png`` and a ``manifest.json`` (source root, size,
per-file byte count and SHA-256). Files are written to a temporary name and renamed, so a killed
run leaves only complete files; a new run verifies and keeps them. The manifest is written last,
atomically, so a cache without one is unfinished and never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from adbench.data.dataset import as_size, read_mask, read_rgb
from adbench.data.formats import load_index
from adbench.data.index import optional
from adbench.errors import DatasetFormatError, DatasetNotFoundError
from adbench.io import write_atomic

MANIFEST = "manifest.json"
CACHE_VERSION = 1


@dataclass(frozen=True)
class PrepareResult:
    """What `prepare_cache` did."""

    out: Path
    total: int  # files in the cache (images and masks)
    written: int  # files written by this run
    reused: int  # complete files of an earlier run, verified and kept
    seconds: float


def default_cache_dir(root: str | Path, size: int) -> Path:
    """Where `prepare_cache` writes and the datamodule looks: ``<root>_adbench_cache/<size>px``."""
    root = Path(root).resolve()
    return root.parent / f"{root.name}_adbench_cache" / f"{size}px"


def _job_list(index_frame: pd.DataFrame, root: Path) -> list[tuple[str, str, str, str]]:
    """(relative source path, absolute source path, kind, image of a mask or "") per file."""
    jobs = {}
    for column, kind in (("path", "image"), ("mask_path", "mask")):
        for value, image in zip(index_frame[column], index_frame["path"], strict=True):
            path = optional(value)
            if path is not None:
                owner = image if kind == "mask" else ""
                jobs[Path(path).relative_to(root).as_posix()] = (path, kind, owner)
    return [(rel, src, kind, owner) for rel, (src, kind, owner) in sorted(jobs.items())]


def _encode(src: str, kind: str, size: int, owner: str) -> bytes:
    """PNG bytes of one resized file; a mask must have the size of its image ``owner``."""
    if kind == "image":
        resized = read_rgb(src, (size, size))
    else:
        resized = read_mask(src, (size, size), owner)
    buffer = io.BytesIO()
    resized.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _is_complete(data: bytes, kind: str, size: int) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size == (size, size) and image.mode == ("RGB" if kind == "image" else "L")
    except (OSError, ValueError, SyntaxError):
        return False


def _process(job: tuple[str, str, str, str, int, str]) -> tuple[str, str, int, str, str]:
    """Write (or verify and keep) one cached file: (rel, status, bytes, sha256, error)."""
    rel, src, kind, dst, size, owner = job
    target = Path(dst)
    if target.is_file():
        data = target.read_bytes()
        if _is_complete(data, kind, size):
            return rel, "reused", len(data), hashlib.sha256(data).hexdigest(), ""
    try:
        data = _encode(src, kind, size, owner)
    except DatasetFormatError as err:
        return rel, "error", 0, "", str(err)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)
    return rel, "written", len(data), hashlib.sha256(data).hexdigest(), ""


def prepare_cache(
    root: str | Path,
    format: str,
    out: str | Path | None = None,
    size: int = 256,
    workers: int | None = None,
    categories: Iterable[str] | None = None,
    progress: bool = True,
    **options: Any,
) -> PrepareResult:
    """Build (or resume) the resized cache of a dataset and write its manifest.

    Args:
        root: the dataset root, read with ``load_index(format, root, categories, **options)``.
        format: the dataset format.
        out: cache folder; `default_cache_dir` when ``None``.
        size: side of the cached square images.
        workers: worker processes (``None``: all CPUs; 0 or 1: in this process).
        categories: categories to cache (all when ``None``).
        progress: show a progress bar.
        **options: reader options.
    """
    start = time.perf_counter()
    index = load_index(format, root, categories, **options)
    root = Path(root).expanduser().resolve()
    out = Path(out).expanduser().resolve() if out is not None else default_cache_dir(root, size)
    files = out / "files"
    jobs = [
        (rel, src, kind, str(files / f"{rel}.png"), size, owner)
        for rel, src, kind, owner in _job_list(index.frame, root)
    ]
    (out / MANIFEST).unlink(missing_ok=True)  # the cache is unfinished until the manifest exists
    for leftover in files.rglob(".*.tmp"):  # partial writes of a killed run
        leftover.unlink()
    if workers is None:
        workers = os.cpu_count() or 1
    entries, errors, counts = {}, [], {"written": 0, "reused": 0}
    bar = tqdm(
        total=len(jobs), desc=f"prepare {root.name} @ {size}px", unit="file", disable=not progress
    )
    with bar:
        for rel, status, n_bytes, digest, error in _run(jobs, workers):
            bar.update()
            if status == "error":
                errors.append(error)
                continue
            counts[status] += 1
            entries[rel] = {"cache": f"files/{rel}.png", "bytes": n_bytes, "sha256": digest}
    if errors:
        raise DatasetFormatError(
            f"{len(errors)} file(s) of {root} could not be cached (the {len(entries)} others are "
            "kept; rerun after fixing these to resume):\n" + "\n".join(f"  - {e}" for e in errors)
        )
    manifest = {
        "version": CACHE_VERSION,
        "format": format,
        "root": str(root),
        "size": size,
        "entries": entries,
    }
    write_atomic(out / MANIFEST, json.dumps(manifest))
    verify_cache(out, checksums=False)
    return PrepareResult(
        out, len(entries), counts["written"], counts["reused"], time.perf_counter() - start
    )


def _run(jobs: list, workers: int) -> Iterable[tuple[str, str, int, str, str]]:
    if workers <= 1:
        yield from map(_process, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_process, jobs, chunksize=max(1, min(64, len(jobs) // (8 * workers))))


def read_manifest(out: str | Path) -> dict[str, Any]:
    """Load a cache manifest; a missing one means the cache is absent or unfinished."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise DatasetNotFoundError(
            f"no finished cache at {out} ({MANIFEST} missing); build or resume it with "
            "`adbench data prepare ROOT --format F --out DIR --size P`"
        )
    return json.loads(path.read_text())


def verify_cache(out: str | Path, checksums: bool = True) -> list[str]:
    """Check every manifest entry exists with its byte count (and SHA-256); raise on problems."""
    out = Path(out)
    manifest = read_manifest(out)
    problems = []
    for rel, entry in manifest["entries"].items():
        path = out / entry["cache"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            problems.append(f"{path} (for {rel}) is missing or has the wrong size")
        elif checksums and hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            problems.append(f"{path} (for {rel}) does not match its SHA-256")
    if problems:
        raise DatasetFormatError(
            f"cache {out} does not match its manifest; rerun `adbench data prepare` to repair "
            "it:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return sorted(manifest["entries"])


def find_caches(roots: Iterable[str], image_size: int | Sequence[int]) -> list[Path]:
    """Default caches (next to each root) whose size is the smallest one >= ``image_size``."""
    need = max(as_size(image_size))
    found = []
    for root in roots:
        folder = default_cache_dir(root, need).parent
        sizes = sorted(
            int(p.name[:-2])
            for p in folder.glob("*px")
            if p.name[:-2].isdigit() and int(p.name[:-2]) >= need and (p / MANIFEST).is_file()
        )
        if sizes:
            found.append(folder / f"{sizes[0]}px")
    return found


def use_cache(
    frame: pd.DataFrame, caches: Iterable[str | Path], image_size: int | Sequence[int]
) -> pd.DataFrame:
    """Return ``frame`` with ``path``/``mask_path`` pointing into the caches of their roots."""
    frame = frame.copy()
    need = max(as_size(image_size))
    for out in map(Path, caches):
        manifest = read_manifest(out)
        if manifest["size"] < need:
            raise DatasetFormatError(
                f"cache {out} holds {manifest['size']} px images, smaller than image_size {need}; "
                f"build a {need} px cache with `adbench data prepare --size {need}`"
            )
        rows = frame["root"] == manifest["root"]
        if not rows.any():
            raise DatasetFormatError(
                f"cache {out} was built for {manifest['root']}, which no row of the index uses"
            )
        entries = manifest["entries"]
        for column in ("path", "mask_path"):
            frame.loc[rows, column] = [
                None if optional(p) is None else _cached(out, entries, Path(p), manifest["root"])
                for p in frame.loc[rows, column]
            ]
    return frame


def _cached(out: Path, entries: dict[str, Any], path: Path, root: str) -> str:
    rel = path.relative_to(root).as_posix()
    if rel not in entries:
        raise DatasetFormatError(
            f"{path} is not in the cache {out}; rebuild it with `adbench data prepare {root}` "
            "for the categories you use"
        )
    return str(out / entries[rel]["cache"])
