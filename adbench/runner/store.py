"""ResultStore: every cell of a run directory as tidy tables (pandas; Parquet and CSV).

``results``: one row per (cell, category, metric), the mean over categories included as
category ``mean``, with the cell's protocol (`protocol_key`: the ranked fields of its protocol
card as JSON; empty for cells measured before cards existed). ``cells``: one row per cell
directory with its status, timings, memory, parameter count and the devices it trained on
(``world_size`` processes of ``device_type``). ``protocols``: the protocol cards.
The cell directories are the source of truth; the Parquet/CSV files are exports of them.
`check_protocols` keeps cells measured under different protocols from being ranked together.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pandas as pd
import yaml

from adbench.errors import AdbenchError, ConfigError, CorruptFileError
from adbench.io import write_atomic
from adbench.protocols import PROTOCOL_FILE, RANKED_FIELDS, differing_fields
from adbench.runner import rundir

IDENTITY = ("cell_id", "method", "name", "preset", "dataset", "k", "seed")
RESULT_COLUMNS = (*IDENTITY, "category", "metric", "value", "protocol")
TIMING_COLUMNS = (
    "setup_s",
    "train_s",
    "inference_s",
    "total_s",
    "images_per_s",
    "n_train",
    "n_test",
)
MEMORY_COLUMNS = ("peak_rss_mb", "peak_gpu_mb", "peak_gpu_reserved_mb")
DEVICE_COLUMNS = ("world_size", "device_type")
CELL_COLUMNS = (
    *IDENTITY,
    "status",
    *TIMING_COLUMNS,
    *MEMORY_COLUMNS,
    "params",
    *DEVICE_COLUMNS,
    "error",
)
EXPORT_EVERY_S = 30.0  # a sweep refreshes its exports after a cell at most this often
_log = logging.getLogger(__name__)


class ResultStore:
    """Read the cells of a run directory ``DIR`` and export them.

    Args:
        out: the sweep's output folder (``adbench run ... --out DIR``).
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    def results(self) -> pd.DataFrame:
        """One row per (finished cell, category, metric); columns `RESULT_COLUMNS`.

        ``method`` is the method's sweep label, ``name`` its registry name. Falls back to
        ``DIR/results.parquet`` when the run directory has no cell folders (an exported store).
        """
        if not rundir.cells_dir(self.out).is_dir():
            return self._exported("results")
        rows = []
        for result in self._finished():
            identity = _identity(result)
            protocol = protocol_key(result.get("protocol"))
            for category, metrics in result["metrics"].items():
                for metric, value in metrics.items():
                    rows.append(
                        {
                            **identity,
                            "category": category,
                            "metric": metric,
                            "value": float("nan") if value is None else float(value),
                            "protocol": protocol,
                        }
                    )
        return _typed(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))

    def cells(self) -> pd.DataFrame:
        """One row per cell directory.

        Identity, status (finished/failed/running/incomplete), timings, peak memory, parameter
        count, devices (``world_size`` processes, ``device_type`` "cpu", "cuda", ...) and the
        error message of a failed attempt.
        """
        if not rundir.cells_dir(self.out).is_dir():
            return self._exported("cells")
        rows = []
        for folder in sorted(rundir.cells_dir(self.out).iterdir()):
            row = self._cell_row(folder)
            if row is not None:
                rows.append(row)
        return _typed(pd.DataFrame(rows, columns=list(CELL_COLUMNS)))

    def protocols(self) -> list[dict]:
        """The protocol card of each (dataset, k) of the finished cells, seeds merged.

        ``[{"k": k, **card}]``; cards that differ in a ranked field are listed separately.
        """
        merged: dict[tuple, dict] = {}
        for result in self._finished():
            card = result.get("protocol")
            if card is None:
                continue
            key = (int(result["k"]), protocol_key(card))
            if key in merged:
                merged[key]["seeds"] = sorted({*merged[key]["seeds"], *card["seeds"]})
            else:
                merged[key] = {"k": int(result["k"]), **card}
        return sorted(merged.values(), key=lambda c: (c["dataset"], c["k"]))

    def write(self) -> dict[str, Path]:
        """Write the run directory's result, cell and protocol files.

        ``results.parquet``, ``results.csv``, ``cells.parquet``, ``cells.csv`` and
        ``protocol.yaml`` (`protocols`). Nothing is written while the run directory has no cell
        folders yet.
        """
        paths: dict[str, Path] = {}
        if not rundir.cells_dir(self.out).is_dir():
            return paths
        for name, frame in (("results", self.results()), ("cells", self.cells())):
            for suffix in ("parquet", "csv"):
                path = self.out / f"{name}.{suffix}"
                write_atomic(path, _encode(frame, suffix))
                paths[f"{name}.{suffix}"] = path
        cards = self.protocols()
        if cards:
            path = self.out / PROTOCOL_FILE
            write_atomic(path, yaml.safe_dump({"protocols": cards}, sort_keys=False))
            paths[PROTOCOL_FILE] = path
        return paths

    def refresh(self, every_s: float = 0.0) -> None:
        """`write`, unless ``results.parquet`` was written less than ``every_s`` seconds ago.

        A runner calls it after each cell it runs (``every_s=EXPORT_EVERY_S``), so the
        exports lag a killed sweep by at most that long. A failed write (a full disk) is logged
        as a warning, not raised: the cells' own files are what counts.
        """
        exported = self.out / "results.parquet"
        if exported.is_file() and time.time() - exported.stat().st_mtime < every_s:
            return
        try:
            self.write()
        except OSError as err:
            _log.warning("could not refresh the results files of %s: %s", self.out, err)

    def _finished(self) -> list[dict]:
        results = (rundir.read_result(f) for f in sorted(rundir.cells_dir(self.out).iterdir()))
        return [result for result in results if result is not None]

    def _cell_row(self, folder: Path) -> dict | None:
        result = rundir.read_result(folder)
        if result is not None:
            return {
                **_identity(result),
                "status": "finished",
                **result["timings"],
                **{k: result["memory"].get(k) for k in MEMORY_COLUMNS},
                "params": result["params"]["total"],
                "world_size": result["trainer"]["world_size"],
                "device_type": result["trainer"]["device"].split(":")[0],
                "error": None,
            }
        if not (folder / rundir.CELL).is_file():
            return None
        try:
            cell = rundir.read_json(folder / rundir.CELL)
        except CorruptFileError as err:  # rewritten when the cell runs again
            _log.warning("%s; the cell is left out of the cells table", err)
            return None
        row = {
            **_identity(
                {
                    **cell,
                    "cell_id": cell["id"],
                    "random_weights": cell["config"]["method"]["config"].get(
                        "random_weights", False
                    ),
                }
            ),
            "status": "incomplete",
            "error": None,
        }
        if rundir.lock_holder(folder) is not None:
            row["status"] = "running"
        elif (folder / rundir.ERROR).is_file():
            row.update(status="failed", error=rundir.error_text(folder))
        return row

    def _exported(self, name: str) -> pd.DataFrame:
        path = self.out / f"{name}.parquet"
        if not path.is_file():
            raise AdbenchError(
                f"{self.out} holds no results: neither cells/ nor {name}.parquet "
                "(run a sweep with `adbench run SWEEP.yaml --out DIR` first)"
            )
        return pd.read_parquet(path)


RANDOM_WEIGHTS_MARK = " [random weights]"  # appended to the label of a mechanics-mode cell


def protocol_key(card: dict | None) -> str:
    """The ranked fields of a protocol card as canonical JSON ("" without a card)."""
    if card is None:
        return ""
    return json.dumps({f: card.get(f) for f in RANKED_FIELDS}, sort_keys=True)


def _identity(result: dict) -> dict:
    label = result["label"] + (RANDOM_WEIGHTS_MARK if result.get("random_weights") else "")
    return {
        "cell_id": result["cell_id"],
        "method": label,
        "name": result["method"],
        "preset": result["preset"],
        "dataset": result["dataset"],
        "k": int(result["k"]),
        "seed": int(result["seed"]),
    }


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("k", "seed"):
        frame[column] = frame[column].astype("int64")
    return frame


def _encode(frame: pd.DataFrame, suffix: str) -> bytes:
    if suffix == "csv":
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def load_results(out: str | Path) -> pd.DataFrame:
    """All finished cells of run directory ``out`` as one tidy table.

    Returns:
        One row per (cell, category, metric) with columns ``cell_id, method, name, preset,
        dataset, k, seed, category, metric, value``; ``category == "mean"`` holds the mean over
        the cell's categories.
    """
    return ResultStore(out).results()


def load_cells(out: str | Path) -> pd.DataFrame:
    """One row per cell of run directory ``out``.

    Status, timings (s), peak memory (MiB), params, devices.
    """
    return ResultStore(out).cells()


def check_protocols(results: pd.DataFrame, split: bool = False) -> pd.DataFrame:
    """Refuse to rank together cells of a (dataset, k) measured under different protocols.

    Protocols differ when a ranked field (`adbench.protocols.RANKED_FIELDS`) differs; the error
    names the fields. With ``split``, rename each protocol's dataset
    ``"<dataset> (<field>=<value>, ...)"`` instead, so that it gets a table of its own. Rows
    without a protocol (measured before cards) are not checked.
    """
    if "protocol" not in results.columns:
        return results
    keyed = results[results["protocol"].fillna("") != ""]
    renamed = results.copy()
    for (dataset, k), rows in keyed.groupby(["dataset", "k"], sort=False):
        keys = list(dict.fromkeys(rows["protocol"]))
        if len(keys) < 2:
            continue
        cards = [json.loads(key) for key in keys]
        fields = [
            f for f in RANKED_FIELDS if any(f in differing_fields(cards[0], c) for c in cards[1:])
        ]
        if not split:
            seen = "; ".join(", ".join(f"{f}={_short(c[f])}" for f in fields) for c in cards)
            raise ConfigError(
                f"dataset '{dataset}' at k={k} holds cells measured under different evaluation "
                f"protocols, which differ in {', '.join(fields)} ({seen}); they cannot be ranked "
                "together: rank them apart with split_protocols=True (CLI --split-protocols)"
            )
        for key, card in zip(keys, cards, strict=True):
            where = (
                (renamed["dataset"] == dataset) & (renamed["k"] == k) & (renamed["protocol"] == key)
            )
            tag = ", ".join(f"{f}={_short(card[f])}" for f in fields)
            renamed.loc[where, "dataset"] = f"{dataset} ({tag})"
    return renamed


def _short(value: object) -> str:
    if isinstance(value, list):
        return f"[{len(value)} items]"
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."
