"""A read-recording proxy of a spec model, and the check of what it recorded against a step's
READS declaration (quantflow.steps)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from quantflow.steps import STRUCTURAL

# pydantic's own API: calling one reads the whole sub-tree (model_dump, model_copy, ...).
_PYDANTIC = set(dir(BaseModel))


class SpecProxy:
    """Wraps a pydantic model (or list of them) and records the dotted path of every value
    read through it. ``isinstance`` still sees the wrapped class, so steps that dispatch on the
    type of a spec section behave as they do on the real thing."""

    __slots__ = ("_obj", "_path", "_reads")

    def __init__(self, obj: Any, path: str, reads: set[str]):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_reads", reads)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105 - isinstance() falls back to __class__
        return type(object.__getattribute__(self, "_obj"))

    def _child(self, key: str | int, value: Any) -> Any:
        path = f"{self._path}.{key}" if self._path else str(key)
        if isinstance(value, BaseModel | list):
            return SpecProxy(value, path, self._reads)
        self._reads.add(path)
        return value

    def __getattr__(self, name: str) -> Any:
        obj = object.__getattribute__(self, "_obj")
        if isinstance(obj, BaseModel) and name in type(obj).model_fields:
            return self._child(name, getattr(obj, name))
        if name in _PYDANTIC:
            self._reads.add(self._path)  # the whole sub-tree
            return getattr(obj, name)
        attr = getattr(type(obj), name, None)
        if callable(attr) or isinstance(attr, property):  # run the spec's own methods on us
            return attr.__get__(self, type(obj))
        return getattr(obj, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the spec is read-only")

    def __iter__(self):
        return (self._child(i, v) for i, v in enumerate(self._obj))

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, i: int) -> Any:
        return self._child(i, self._obj[i])

    def __eq__(self, other: object) -> bool:
        self._reads.add(self._path)
        return self._obj == other

    __hash__ = None  # type: ignore[assignment]


def _matches(path: str, pattern: str) -> bool:
    """``pattern`` (dotted, ``*`` = any list index) is ``path`` or one of its ancestors."""
    if pattern == "":
        return True
    p, q = path.split("."), pattern.split(".")
    return len(q) <= len(p) and all(b in ("*", a) for a, b in zip(p, q, strict=False))


def undeclared(reads: set[str], declared: tuple[str, ...], variant: int | None = None) \
        -> list[str]:
    """Recorded reads that no pattern of ``declared`` (plus STRUCTURAL) covers, or that an
    exclusion (``-pattern``) forbids."""
    def concrete(p: str) -> str:
        return p.replace("{variant}", str(variant)) if variant is not None else p

    allowed = [concrete(p) for p in (*declared, *STRUCTURAL) if not p.startswith("-")]
    denied = [concrete(p[1:]) for p in declared if p.startswith("-")]
    return sorted(r for r in reads
                  if not any(_matches(r, a) for a in allowed)
                  or any(_matches(r, d) for d in denied))
