"""Find the modules of a plugin package: variant kinds, model sources and metrics.

Each such package holds one module per plugin, and the module is the plugin's only definition:
the registries, the spec unions and the JSON Schema are built from what is found here, so
adding a plugin is adding a file. Names starting with "_" are helpers, not plugins.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from types import ModuleType
from typing import Any


def discover(package: str) -> list[ModuleType]:
    """The plugin modules of ``package``, imported, in name order (callers sort them further).

    Subpackages are skipped: a plugin is one file, which is what keeps it easy to review.
    """
    pkg = import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                   if not m.ispkg and not m.name.startswith("_"))
    return [import_module(f"{package}.{name}") for name in names]


def require(module: ModuleType, *names: str) -> None:
    """A plugin missing part of its contract is a programming error: say which part, at once,
    instead of a KeyError when the first pipeline uses it."""
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise TypeError(f"plugin module {module.__name__} lacks {', '.join(missing)}")


def spec_class(module: ModuleType, base: type[Any], what: str) -> type[Any]:
    """The one ``base`` subclass a plugin module defines: the class is its declaration, so a
    module with none, or two, is refused at discovery rather than half-registered."""
    found = [obj for obj in vars(module).values() if isinstance(obj, type)
             and issubclass(obj, base) and obj.__module__ == module.__name__]
    if len(found) != 1:
        raise TypeError(f"{what} module {module.__name__} must define one {base.__name__} "
                        f"subclass, found {len(found)}")
    return found[0]
