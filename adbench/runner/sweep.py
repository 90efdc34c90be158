"""Sweep files: a strictly validated YAML schema that expands into cells.

A sweep names methods (with presets and overrides), datasets, category counts ``k`` and seeds;
it expands into one cell per (dataset, k, seed, method). A cell's resolved config holds
everything that decides its numbers (the method's full config after preset and overrides, the
dataset, the category list, the seed, the trainer settings) and its id is the hash of that
config, so a re-run finds the cells it already finished.

Two rules fill method fields from the sweep:

- ``image_size`` and the trainer settings (``max_epochs``, ``max_steps``, ``precision``, ...)
  override the method config's ``data.*`` / ``trainer.*`` fields when it has them, so the resolved
  config records the values actually used; a method's own ``set`` still wins. A sweep's training
  budget replaces the method's: ``max_epochs`` alone clears the method's ``max_steps`` (-1) and
  ``max_steps`` alone clears its ``max_epochs`` (None).
- any field named ``num_classes`` anywhere in a method config that is 0 is set to the cell's
  number of categories ``k`` (class-aware methods such as MDD-Net need it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adbench.config import config_hash, from_dict, load_yaml, merge, to_dict, unflatten
from adbench.errors import AdbenchError, ConfigError
from adbench.experiment import layer_config, resolve
from adbench.protocols import get_protocol
from adbench.runner.datasets import load_dataset
from adbench.runner.launchers import parse_launcher
from adbench.runner.schema import (
    Cell,
    DatasetEntry,
    MethodEntry,
    Sweep,
)


def load_sweep(
    source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> Sweep:
    """Read and validate a sweep from a YAML file or a mapping.

    Args:
        source: path to a sweep YAML, or its content as a mapping.
        overrides: nested or dotted keys patched over the file (``{"trainer.max_epochs": 1}``).
    """
    if isinstance(source, Mapping):
        data, context = dict(source), "sweep"
    else:
        data, context = load_yaml(source), Path(source).name
    if overrides:
        data = merge(data, unflatten(dict(overrides)))
    for key in ("methods", "datasets"):
        if key not in data:
            raise ConfigError(f"{context}: missing required key '{key}'")
    sweep = from_dict(Sweep, data, context=context)
    if not sweep.name:
        name = "sweep" if isinstance(source, Mapping) else Path(source).stem
        sweep = dataclasses.replace(sweep, name=name)
    _check(sweep, context)
    return dataclasses.replace(
        sweep,
        methods=_parse_methods(sweep.methods, context),
        launcher=parse_launcher(sweep.launcher, context),
    )


def _parse_methods(methods: Any, context: str) -> Any:
    if methods == "all":
        return "all"
    if not isinstance(methods, (list, tuple)) or not methods:
        raise ConfigError(
            f"{context}: methods must be 'all' or a non-empty list of "
            f"{{name: ..., preset: ..., set: {{...}}}}, got {methods!r}"
        )
    return tuple(
        entry
        if isinstance(entry, MethodEntry)
        else from_dict(MethodEntry, entry, context=f"{context}: methods[{i}]")
        for i, entry in enumerate(methods)
    )


def _check(sweep: Sweep, context: str) -> None:
    if not sweep.datasets:
        raise ConfigError(f"{context}: datasets must list at least one dataset")
    if not sweep.seeds:
        raise ConfigError(f"{context}: seeds must list at least one seed")
    if not sweep.categories:
        raise ConfigError(f"{context}: categories must list at least one k (or 'all')")
    _check_ranges(sweep, context)
    for key in ("seeds", "categories"):
        values = getattr(sweep, key)
        for i, value in enumerate(values):
            if value in values[:i]:
                raise ConfigError(
                    f"{context}: {key} lists {value!r} more than once; list each value once"
                )
    from adbench.metrics.objects import ViewPooling

    try:
        protocol = get_protocol(
            sweep.protocol, aupro_fpr_limit=sweep.aupro_fpr_limit, view_pooling=sweep.view_pooling
        )
        if sweep.evaluation is not None:
            protocol.check_evaluation(sweep.evaluation)
    except AdbenchError as err:
        raise ConfigError(f"{context}: {err}") from err
    try:
        if protocol.view_pooling is not None:
            ViewPooling.parse(protocol.view_pooling)
    except AdbenchError as err:
        raise ConfigError(f"{context}: view_pooling: {err}") from err
    for i, entry in enumerate(sweep.datasets):
        where = f"{context}: datasets[{i}]"
        if entry.parts and (entry.format or entry.root):
            raise ConfigError(f"{where}: give either format/root or parts, not both")
        if not entry.parts and not (entry.format and entry.root):
            raise ConfigError(f"{where}: needs format and root (or parts: [...])")
        if entry.synthetic is not None and entry.format != "synthetic":
            raise ConfigError(
                f"{where}: 'synthetic' options need format: synthetic, got format {entry.format!r}"
            )
    names = [dataset_name(entry) for entry in sweep.datasets]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"{context}: two datasets are named '{name}'; give each its own `name:`"
            )


def _check_ranges(sweep: Sweep, context: str) -> None:
    """Refuse a value out of its range, which every cell would otherwise fail or misuse.

    ``trainer.max_epochs: 0`` would evaluate an untrained method; a negative seed or image size
    would fail every cell. Null (None) keeps the default the field names.
    """
    from lightning.fabric.utilities.seed import max_seed_value, min_seed_value

    trainer, own = sweep.trainer, " (or null: each method's own)"
    checks: list[tuple[str, Any, Callable[[Any], bool], str]] = [
        ("trainer.max_epochs", trainer.max_epochs, lambda v: v >= 1, f">= 1{own}"),
        (
            "trainer.max_steps",
            trainer.max_steps,
            lambda v: v >= 1 or v == -1,
            f">= 1, or -1 for no step limit{own}",
        ),
        (
            "trainer.accumulate_grad_batches",
            trainer.accumulate_grad_batches,
            lambda v: v >= 1,
            f">= 1{own}",
        ),
        ("trainer.gradient_clip_val", trainer.gradient_clip_val, lambda v: v >= 0, f">= 0{own}"),
        (
            "trainer.limit_train_batches",
            trainer.limit_train_batches,
            lambda v: v >= 1 if isinstance(v, int) else 0 < v <= 1,
            "a number of batches >= 1 or a fraction in (0, 1] (or null: all)",
        ),
        (
            "trainer.devices",
            trainer.devices,
            _valid_devices,
            ">= 1, -1 (all), a list of device indices >= 0 or a string such as 'auto'",
        ),
        ("trainer.num_nodes", trainer.num_nodes, lambda v: v >= 1, ">= 1"),
        ("image_size", sweep.image_size, lambda v: v >= 1, f">= 1{own}"),
        ("num_workers", sweep.num_workers, lambda v: v >= 0, ">= 0"),
        ("subset_seed", sweep.subset_seed, lambda v: v >= 0, ">= 0 (or null: each seed)"),
    ]
    checks += [
        (
            f"seeds[{i}]",
            seed,
            lambda v: min_seed_value <= v <= max_seed_value,
            f"in {min_seed_value}..{max_seed_value}",
        )
        for i, seed in enumerate(sweep.seeds)
    ]
    checks += [
        (f"categories[{i}]: k", k, lambda v: v == "all" or v >= 1, ">= 1 or 'all'")
        for i, k in enumerate(sweep.categories)
    ]
    for key, value, valid, rule in checks:
        if value is not None and not valid(value):
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(f"{context}: {key} must be {rule}, got {shown!r}")


def _valid_devices(devices: int | str | tuple[int, ...]) -> bool:
    """Whether Lightning can take ``devices``: a count, -1 (all), indices, or a string it parses."""
    if isinstance(devices, str):
        return True
    if isinstance(devices, int):
        return devices == -1 or devices >= 1
    return bool(devices) and min(devices) >= 0


def dataset_name(entry: DatasetEntry) -> str:
    """The dataset's name in results (``name``, else the format, else ``union``)."""
    return entry.name or entry.format or "union"


def _absolute(entry: DatasetEntry) -> DatasetEntry:
    parts = tuple(
        dataclasses.replace(p, root=str(Path(p.root).expanduser().resolve())) for p in entry.parts
    )
    root = str(Path(entry.root).expanduser().resolve()) if entry.root else ""
    return dataclasses.replace(entry, root=root, parts=parts)


def method_entries(sweep: Sweep) -> list[tuple[str, MethodEntry]]:
    """(label, entry) per method; ``methods: all`` expands to every registered method.

    A method without a ``label`` is labelled by its name, or ``name:preset`` when the sweep has
    several unlabelled entries of that name.

    With ``all``, the methods that lack the sweep's preset or cannot be imported are left out,
    named in one logged warning (``leaving out: a (no preset 'tiny'), ...``); an explicitly
    listed method raises instead.
    """
    from adbench.registry import get_method_spec, list_methods

    if sweep.methods == "all":
        entries, left_out = [], []
        for name in list_methods():
            try:
                spec = get_method_spec(name)
            except AdbenchError as err:
                left_out.append(f"{name} (cannot be loaded: {err})")
                continue
            if sweep.preset not in spec.presets:
                left_out.append(f"{name} (no preset '{sweep.preset}')")
                continue
            entries.append(MethodEntry(name=name))
        if left_out:
            logging.getLogger(__name__).warning("leaving out: %s", ", ".join(left_out))
    else:
        entries = list(sweep.methods)
    presets = [entry.preset or sweep.preset for entry in entries]
    unlabelled = [entry.name for entry in entries if not entry.label]
    labels = [
        entry.label
        or (entry.name if unlabelled.count(entry.name) == 1 else f"{entry.name}:{preset}")
        for entry, preset in zip(entries, presets, strict=True)
    ]
    for label in labels:
        if labels.count(label) > 1:
            raise ConfigError(
                f"sweep '{sweep.name}': two methods are labelled '{label}'; give "
                "each its own `label:`"
            )
    return [
        (label, dataclasses.replace(entry, preset=preset))
        for label, entry, preset in zip(labels, entries, presets, strict=True)
    ]


def _settings(sweep: Sweep) -> dict[str, Any]:
    """The sweep's training settings (``settings`` of `adbench.experiment.layer_config`)."""
    settings = dataclasses.asdict(sweep.trainer)
    if settings["precision"] is not None:
        settings["precision"] = str(settings["precision"])
    if isinstance(settings["devices"], tuple):
        settings["devices"] = list(settings["devices"])
    return {**settings, "image_size": sweep.image_size}


def resolve_methods(sweep: Sweep) -> list[tuple[str, MethodEntry, Any, dict[str, Any]]]:
    """(label, entry, method config, Trainer kwargs) per method, before any data is read.

    The configs' ``num_classes: 0`` fields are not filled yet (each cell fills them with its k).
    """
    methods = []
    for label, entry in method_entries(sweep):
        try:
            config, trainer = layer_config(
                entry.name,
                preset=entry.preset,
                settings=_settings(sweep),
                overrides=entry.set,
                random_weights=entry.random_weights,
            )
        except ConfigError as err:
            raise ConfigError(f"sweep '{sweep.name}', method '{label}': {err}") from err
        methods.append((label, entry, config, trainer))
    return methods


def _k_values(sweep: Sweep, pool: list[str], name: str) -> list[int]:
    values = []
    for k in sweep.categories:
        k = len(pool) if k == "all" else k
        if k > len(pool):
            raise ConfigError(
                f"sweep '{sweep.name}': categories asks for k={k} but dataset "
                f"'{name}' has {len(pool)} categories ({', '.join(pool)})"
            )
        if k not in values:
            values.append(k)
    return values


def expand(sweep: Sweep) -> list[Cell]:
    """All cells of ``sweep``, ordered by dataset, k, seed, method (small k first).

    Resolves every method first (a typo fails before any dataset is read), then reads each
    dataset's index once (the roots must exist; see `prepare_datasets`) and resolves each cell's
    `Experiment` with `adbench.experiment.resolve`; its record, with the dataset entry, k and the
    subset seed, is the cell's config, hashed into the cell id.
    """
    from adbench.data import CategorySubset

    methods = resolve_methods(sweep)
    cells = []
    for dataset in sweep.datasets:
        dataset = _absolute(dataset)
        name = dataset_name(dataset)
        index = load_dataset(dataset)
        for k in _k_values(sweep, index.categories, name):
            for seed in sweep.seeds:
                subset_seed = seed if sweep.subset_seed is None else sweep.subset_seed
                categories = tuple(
                    sorted(CategorySubset(k, seed=subset_seed, nested=True).names(index.categories))
                )
                subset = index.select(categories)
                for label, entry, _, _ in methods:
                    experiment = resolve(
                        entry.name,
                        subset,
                        preset=entry.preset,
                        settings=_settings(sweep),
                        overrides=entry.set,
                        random_weights=entry.random_weights,
                        seed=seed,
                        protocol=sweep.protocol,
                        evaluation=sweep.evaluation,
                        view_pooling=sweep.view_pooling,
                        aupro_fpr_limit=sweep.aupro_fpr_limit,
                        dataset=name,
                        label=label,
                    )
                    resolved = {
                        **experiment.to_record(),
                        "dataset": to_dict(dataclasses.replace(dataset, name=name, synthetic=None)),
                        "k": k,
                        "categories": list(categories),
                        "subset_seed": subset_seed,
                    }
                    cells.append(
                        Cell(
                            config_hash(resolved),
                            label,
                            entry.name,
                            entry.preset,
                            name,
                            k,
                            seed,
                            categories,
                            resolved,
                        )
                    )
    return cells


def describe(cells: list[Cell]) -> str:
    """A one-line-per-cell listing (for ``adbench run --dry-run``)."""
    width = max((len(c.label) for c in cells), default=6)
    lines = [f"{'cell':12}  {'method':{width}}  {'dataset':12}  {'k':>4}  {'seed':>4}"]
    lines += [f"{c.id:12}  {c.label:{width}}  {c.dataset:12}  {c.k:>4}  {c.seed:>4}" for c in cells]
    return "\n".join(lines)
