"""The method registry: one dict, one decorator, one entry-point group (``adbench.methods``).

Built-in and third-party methods are found the same way: an entry point names a `MethodSpec`
object (``mddnet = "adbench.methods.mddnet:SPEC"``). `list_methods` reads entry-point *names*
only, so listing never imports a method or its heavy optional dependencies; `get_method_spec`
loads and validates one spec. Scripts and notebooks register classes with `method`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adbench.config import fill_num_classes, from_dict, load_yaml, merge, unflatten
from adbench.errors import (
    AdbenchError,
    ConfigError,
    MissingDependencyError,
    did_you_mean,
    unknown_name,
)

if TYPE_CHECKING:
    from adbench.contract import AnomalyMethod

GROUP = "adbench.methods"
VARIANT_KEY = "variant"  # the top-level preset key that says what the preset runs
PAPER_DESIGN = "paper-design"  # the paper's design, at its settings or reduced in size or budget
CPU_VARIANT = "cpu-variant"  # the method redesigned to run on a CPU: not the paper's design
VARIANTS = (PAPER_DESIGN, CPU_VARIANT)


@dataclass(frozen=True)
class MethodSpec:
    """Everything the registry knows about a method.

    Attributes:
        name: short registry name (``"glad"``).
        module: the `AnomalyMethod` subclass.
        config: its frozen config dataclass; the defaults are the paper's settings.
        presets: preset name -> YAML file or mapping, each an overlay on the defaults (its
            top-level ``variant`` key is not part of the overlay: see `variant`).
        paper: the reference, e.g. ``"Yao et al., ECCV 2024, arXiv:2406.07487"``.
        requires: optional modules the method imports (checked before it is loaded).
        extra: the pip extra that provides ``requires`` (``pip install 'adbench-uad[extra]'``).
    """

    name: str
    module: type[AnomalyMethod]
    config: type
    presets: Mapping[str, Path | Mapping[str, Any]] = field(default_factory=dict)
    paper: str = ""
    requires: tuple[str, ...] = ()
    extra: str = ""

    def preset(self, name: str) -> dict[str, Any]:
        """The overlay dict of preset ``name``.

        A top-level ``extends: <preset>`` key layers it on that preset's overlay (e.g.
        ``paper-visa`` extends ``paper``).
        """
        data = self._layered(name)
        data.pop(VARIANT_KEY, None)
        return data

    def variant(self, name: str) -> str:
        """What preset ``name`` runs: `PAPER_DESIGN` (the default) or `CPU_VARIANT`.

        Declared by the preset's top-level ``variant`` key, inherited through ``extends``.
        """
        value = self._layered(name).get(VARIANT_KEY, PAPER_DESIGN)
        if value not in VARIANTS:
            source = self.presets[name]
            where = f"{source}: " if isinstance(source, (str, Path)) else ""
            raise ConfigError(
                f"{where}preset '{name}' of method '{self.name}': variant '{value}' is not one "
                f"of {', '.join(VARIANTS)}{did_you_mean(str(value), VARIANTS)}"
            )
        return value

    def _layered(self, name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """Preset ``name``'s keys layered on those of the preset it extends."""
        if name not in self.presets:
            raise unknown_name(f"preset of method '{self.name}'", name, self.presets)
        if name in _seen:
            raise ConfigError(
                f"preset '{name}' of method '{self.name}' extends itself through "
                f"{' -> '.join((*_seen, name))}"
            )
        source = self.presets[name]
        data = load_yaml(source) if isinstance(source, (str, Path)) else dict(source)
        base = data.pop("extends", None)
        return data if base is None else merge(self._layered(str(base), (*_seen, name)), data)


_REGISTERED: dict[str, MethodSpec] = {}
_LOADED: dict[tuple[str, str], MethodSpec] = {}


def presets_from_folder(folder: str | Path) -> dict[str, Path]:
    """Scan ``folder`` for ``<preset>.yaml`` files: ``{"tiny": folder / "tiny.yaml", ...}``."""
    return {path.stem: path for path in sorted(Path(folder).glob("*.yaml"))}


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=GROUP))


def _owner(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return dist.name if dist is not None else entry_point.value


def list_methods() -> list[str]:
    """Names of every registered method (entry points and decorator registrations), sorted."""
    return sorted({ep.name for ep in _entry_points()} | set(_REGISTERED))


def get_method_spec(name: str) -> MethodSpec:
    """Load and validate the spec registered as ``name``."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    matches = [ep for ep in _entry_points() if ep.name == name]
    if not matches:
        raise unknown_name("method", name, list_methods())
    owners = sorted({_owner(ep) for ep in matches})
    if len({ep.value for ep in matches}) > 1:
        raise AdbenchError(
            f"method '{name}' is registered by more than one installed distribution "
            f"({', '.join(owners)}); uninstall one of them"
        )
    entry_point = matches[0]
    key = (name, entry_point.value)
    if key not in _LOADED:
        try:
            spec = entry_point.load()
        except ImportError as err:
            raise MissingDependencyError(
                f"method '{name}' ({entry_point.value}, from {owners[0]}) cannot be imported: {err}"
            ) from err
        _validate(spec, name, origin=f"entry point {entry_point.value}")
        spec.module.method_name = name
        _LOADED[key] = spec
    spec = _LOADED[key]
    _check_requires(spec)
    return spec


def _check_requires(spec: MethodSpec) -> None:
    for module in spec.requires:
        try:
            importlib.import_module(module)
        except ImportError as err:
            extra = f"pip install {module}"
            if spec.extra:
                extra = f"pip install 'adbench-uad[{spec.extra}]'"
            raise MissingDependencyError(
                f"method '{spec.name}' needs the optional dependency '{module}': {extra}"
            ) from err


def _validate(spec: Any, name: str, origin: str) -> None:
    """A broken plugin fails here, by name, rather than deep inside a run."""
    from adbench.contract import AnomalyMethod, _config_class

    if not isinstance(spec, MethodSpec):
        raise AdbenchError(
            f"method '{name}': {origin} must point at a MethodSpec, got {type(spec).__name__}"
        )
    if spec.name != name:
        raise AdbenchError(f"method '{name}': {origin} holds a spec named '{spec.name}'")
    if not (isinstance(spec.module, type) and issubclass(spec.module, AnomalyMethod)):
        raise AdbenchError(f"method '{name}': module must subclass adbench.AnomalyMethod")
    if not dataclasses.is_dataclass(spec.config):
        raise AdbenchError(f"method '{name}': config must be a dataclass")
    annotated = _config_class(spec.module)
    if annotated is not spec.config:
        raise AdbenchError(
            f"method '{name}': {spec.module.__name__} annotates config as "
            f"{getattr(annotated, '__name__', annotated)}, the spec says "
            f"{spec.config.__name__}"
        )
    for preset in spec.presets:
        from_dict(spec.config, spec.preset(preset), context=f"{name} preset '{preset}'")
        spec.variant(preset)


def register_method(spec: MethodSpec) -> MethodSpec:
    """Register ``spec`` in this process (used by `method`; prefer entry points for packages)."""
    owners = sorted({_owner(ep) for ep in _entry_points() if ep.name == spec.name})
    if owners:
        raise AdbenchError(
            f"method name '{spec.name}' is owned by the installed distribution "
            f"{', '.join(owners)}; register under another name"
        )
    _validate(spec, spec.name, origin=f"{spec.module.__module__}.{spec.module.__name__}")
    if spec.name in _REGISTERED:
        warnings.warn(f"method '{spec.name}' was registered before; replacing it", stacklevel=3)
    spec.module.method_name = spec.name
    _REGISTERED[spec.name] = spec
    return spec


def method(
    name: str,
    *,
    config: type,
    presets: Mapping[str, Path | Mapping[str, Any]] | None = None,
    paper: str = "",
    requires: tuple[str, ...] = (),
) -> Callable[[type[AnomalyMethod]], type[AnomalyMethod]]:
    """Class decorator registering an `AnomalyMethod` defined in a script or notebook."""

    def decorate(cls: type[AnomalyMethod]) -> type[AnomalyMethod]:
        register_method(MethodSpec(name, cls, config, dict(presets or {}), paper, requires))
        return cls

    return decorate


def resolve_config(
    name: str,
    preset: str = "paper",
    overrides: Mapping[str, Any] | None = None,
    files: tuple[str | Path, ...] = (),
) -> Any:
    """Layer defaults <- preset <- config files <- overrides into the typed config of ``name``.

    Args:
        name: registered method name.
        preset: preset name (``"paper"``, ``"tiny"``, ...).
        overrides: nested or dotted keys (``{"optim.lr": 1e-3}``).
        files: YAML files applied in order after the preset.
    """
    spec = get_method_spec(name)
    data = spec.preset(preset)
    for file in files:
        data = merge(data, load_yaml(file))
    if overrides:
        data = merge(data, unflatten(dict(overrides)))
    return from_dict(spec.config, data, context=name)


def create(
    name: str,
    preset: str = "paper",
    *,
    random_weights: bool = False,
    seed: int | None = None,
    num_classes: int | None = None,
    **overrides: Any,
) -> AnomalyMethod:
    """Build method ``name`` from a preset plus overrides (dotted keys or nested dicts).

    Args:
        name: registered method name.
        preset: preset name.
        random_weights: mechanics mode: the full architecture with random weights, nothing
            downloaded or loaded (recorded in the config, so every result made with it says so).
        seed: seeds Python, NumPy and torch before the weights are initialised, so the same seed
            gives the same initial weights from every entry point.
        num_classes: the number of training categories; fills every ``num_classes: 0`` field
            of the config ("from the data", `adbench.config.fill_num_classes`).
        **overrides: config keys, dotted (``**{"optim.lr": 1e-4}``) or nested dicts.
    """
    if random_weights:
        overrides = {**overrides, "random_weights": True}
    config = resolve_config(name, preset, overrides)
    if num_classes is not None:
        config = fill_num_classes(config, num_classes)
    return build(name, config, seed=seed)


def build(name: str, config: Any, seed: int | None = None) -> AnomalyMethod:
    """Instantiate method ``name`` from its resolved ``config``, seeding the weights first."""
    spec = get_method_spec(name)
    if seed is not None:
        import lightning as L

        L.seed_everything(seed, workers=True, verbose=False)
    return spec.module(config)
