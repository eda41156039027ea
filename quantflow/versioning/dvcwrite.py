"""DVC's YAML writes (dvc.lock above all) made atomic in quantflow's process.

DVC rewrites dvc.lock in place (``open(path, "w+")``). A `quantflow run` killed with kill -9
while its flow commits a finished step (RELIABILITY.md: a kill at any instant) could leave a
truncated dvc.lock, and every later run and `dvc status` would stop at "dvc.lock validation
failed" until someone repaired it by hand. Here each such write goes to a temp file beside it,
is fsynced and renamed into place (quantflow.core.io.atomic_path), so a reader sees the old
dvc.lock or the new one. Only local files are redirected; `dvc repro`'s own process (a
separate DVC) is not patched, as quantflow never runs inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantflow.core import io

_DONE: list[bool] = []


def _is_local(fs: Any) -> bool:
    protocol = getattr(fs, "protocol", None)
    names = protocol if isinstance(protocol, tuple | list) else (protocol,)
    return fs is None or any(n in ("local", "file") for n in names)


def install() -> None:
    """Patch DVC's one YAML writer (``_dump_data``, which dump_yaml and modify_yaml share)
    once per process."""
    if _DONE:
        return
    from dvc.utils.serialize import _common, _yaml

    original = _common._dump_data

    def atomic_dump(path: Any, data: Any, dumper: Any, fs: Any = None, **kwargs: Any) -> Any:
        if not _is_local(fs):
            return original(path, data, dumper, fs=fs, **kwargs)
        target = Path(path)
        mode = target.stat().st_mode & 0o7777 if target.exists() else None
        with io.atomic_path(target) as tmp:
            result = original(str(tmp), data, dumper, **kwargs)
        if mode is not None:  # a shared repo's group-writable dvc.lock stays so
            target.chmod(mode)
        return result

    _common._dump_data = atomic_dump
    _yaml._dump_data = atomic_dump
    _DONE.append(True)
