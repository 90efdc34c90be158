"""Import plugin modules (Python files or module names) that register methods before a run.

A plugin is any module whose import registers methods, e.g. a file using ``@adbench.method``.
Runs name their plugins (``adbench run --plugin my_method.py``, or ``plugins: [...]`` in a sweep)
and every process of a run imports them: the runner, cell workers, DDP ranks and cluster jobs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from adbench.errors import ConfigError


def resolve_plugins(plugins: Iterable[str]) -> tuple[str, ...]:
    """Absolute paths for file plugins (relative to the working directory); names unchanged."""
    resolved = []
    for plugin in plugins:
        is_file = plugin.endswith(".py") or "/" in plugin or "\\" in plugin
        resolved.append(str(Path(plugin).expanduser().resolve()) if is_file else plugin)
    return tuple(dict.fromkeys(resolved))


def load_plugins(plugins: Iterable[str]) -> list[ModuleType]:
    """Import each plugin once per process (a second call is a no-op)."""
    return [_load(plugin) for plugin in resolve_plugins(plugins)]


def _load(plugin: str) -> ModuleType:
    if not plugin.endswith(".py"):
        try:
            return importlib.import_module(plugin)
        except ImportError as err:
            raise ConfigError(f"plugin module '{plugin}' cannot be imported: {err}") from err
    path = Path(plugin)
    if not path.is_file():
        raise ConfigError(f"plugin file not found: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"adbench_plugin_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugin file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
