"""Finding and importing a module of the user's workspace (what `model.builder` names).

Finding never executes anything (``PathFinder.find_spec`` on the workspace folder only, one
package level at a time), so `validate` and dvc.yaml generation can name the module's file
without running user code. Importing runs the module: only the train step and the deep check
do it, with the workspace first on ``sys.path`` for that import only.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.machinery import PathFinder
from pathlib import Path
from types import ModuleType


def module_file(module: str, workspace: Path) -> Path | None:
    """The .py file that defines ``module`` inside ``workspace`` (a package's __init__.py),
    or None when the workspace holds no such module; nothing is imported."""
    importlib.invalidate_caches()  # a file written a moment ago must be seen
    search: list[str] = [str(workspace.resolve())]
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    if spec is None or not spec.has_location or not spec.origin:
        return None  # a namespace package: a folder, no code to track
    return Path(spec.origin)


def guessed_file(module: str) -> str:
    """Where ``module`` would be: what `validate` reports missing when it is not there."""
    return module.replace(".", "/") + ".py"


def _stale(name: str, workspace: Path) -> bool:
    """Whether ``sys.modules[name]`` came from a workspace rather than an installed package:
    from this workspace (re-import it, the file may have changed) or from a folder that is
    no longer on sys.path (an earlier workspace's module of the same name)."""
    found = sys.modules.get(name)
    origin = getattr(getattr(found, "__spec__", None), "origin", None)
    if found is None or not origin:
        return found is not None and not getattr(found, "__file__", None)
    where = os.path.realpath(origin)
    if where.startswith(str(workspace.resolve()) + os.sep):
        return True
    return not any(where.startswith(os.path.realpath(p or ".") + os.sep) for p in sys.path)


def import_from(module: str, workspace: Path) -> ModuleType:
    """Import ``module`` fresh from ``workspace`` (first on sys.path, removed again after).

    Raises ImportError when what got imported is not the workspace's file: an installed
    module of the same name would otherwise silently win.
    """
    expected = module_file(module, workspace)
    if expected is None:
        raise ImportError(f"no module {module!r} in {workspace}")
    parts = module.split(".")
    for name in (".".join(parts[: i + 1]) for i in range(len(parts))):
        if _stale(name, workspace):
            del sys.modules[name]
    entry = str(workspace.resolve())
    sys.path.insert(0, entry)
    try:
        loaded = importlib.import_module(module)
    finally:
        if entry in sys.path:
            sys.path.remove(entry)
    got = getattr(loaded, "__file__", None)
    if not got or os.path.realpath(got) != os.path.realpath(expected):
        raise ImportError(f"{module!r} resolves to {got}, not {expected}; rename the module "
                          "so that no installed module shadows it")
    return loaded
