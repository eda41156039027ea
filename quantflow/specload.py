"""The one place that reads pipelines.yaml.

It parses YAML keeping each node's line and column, applies ``--set`` overrides, validates with
the pydantic models of ``quantflow.spec`` and turns every problem into one line of the form
``FILE:LINE:COL: key.path: message``. Any failure raises :class:`SpecError`; nothing else.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from quantflow.spec import Spec

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line:col" or "--set key=value"
    path: str  # "pipelines.digits.variants[2].kind"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.path or '<document>'}: {self.message}"


class SpecError(Exception):
    """A spec that cannot be used; ``problems`` holds one entry per mistake."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class LoadedSpec:
    spec: Spec
    path: Path
    marks: dict[Loc, tuple[int, int]]


class _Loader(yaml.SafeLoader):
    """SafeLoader that remembers where each mapping value and sequence item starts."""


def _compose(text: str, file: str) -> tuple[Any, dict[Loc, tuple[int, int]]]:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise SpecError([Problem(where, "", f"YAML syntax error: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(file, "", f"YAML error: {exc}")]) from None
    marks: dict[Loc, tuple[int, int]] = {}
    problems: list[Problem] = []
    cons = _Loader("")

    def build(n: yaml.Node, loc: Loc) -> Any:
        marks[loc] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = cons.construct_object(k, deep=True) if isinstance(k, yaml.ScalarNode) else "?"
                key = key if isinstance(key, str) else str(key)
                if key in out:
                    problems.append(Problem(
                        f"{file}:{k.start_mark.line + 1}:{k.start_mark.column + 1}",
                        format_loc(loc + (key,)), "duplicate key; each key may appear once"))
                out[key] = build(v, loc + (key,))
                marks[loc + (key,)] = (k.start_mark.line + 1, k.start_mark.column + 1)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, loc + (i,)) for i, v in enumerate(n.value)]
        return cons.construct_object(n, deep=True)

    data = None if node is None else build(node, ())
    if problems:
        raise SpecError(problems)
    return data, marks


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _set_override(data: dict[str, Any], assignment: str) -> Loc:
    if "=" not in assignment:
        raise SpecError([Problem(f"--set {assignment}", "", "expected dotted.key=value")])
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise SpecError([Problem(f"--set {assignment}", "", "empty key")])
    node: Any = data
    loc: list[str | int] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = int(part) if part.isdigit() else next(
                (j for j, v in enumerate(node) if isinstance(v, dict) and v.get("name") == part),
                None)
            if idx is None or idx >= len(node):
                raise SpecError([Problem(f"--set {assignment}", format_loc(tuple(loc)),
                                         f"no list item {part!r} (use an index or a name)")])
            loc.append(idx)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            loc.append(part)
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SpecError([Problem(f"--set {assignment}", format_loc(tuple(loc)),
                                     "cannot set a key inside a scalar value")])
    return tuple(loc)


def _unwrap(tp: Any) -> Any:
    """Strip Annotated/Optional so we can see the model or container underneath."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


def _allowed_keys(loc: Loc, data: Any) -> list[str]:
    """Field names accepted at the mapping that holds ``loc[-1]``, following the data."""
    candidates: list[Any] = [Spec]
    node = data
    for part in loc[:-1]:
        nxt: list[Any] = []
        for tp in candidates:
            for m in _members(tp):
                origin = typing.get_origin(m)
                if isinstance(m, type) and issubclass(m, BaseModel) and isinstance(part, str):
                    if part in m.model_fields:
                        nxt.append(m.model_fields[part].annotation)
                elif origin is dict and isinstance(part, str):
                    nxt.append(typing.get_args(m)[1])
                elif origin is list and isinstance(part, int):
                    nxt.append(typing.get_args(m)[0])
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) else None)
        candidates = nxt
    models = [m for tp in candidates for m in _members(tp)
              if isinstance(m, type) and issubclass(m, BaseModel)]
    tag = None
    if isinstance(node, dict):
        tag = node.get("kind") or node.get("source") or node.get("arch")
    chosen = [m for m in models if any(
        tag in typing.get_args(_unwrap(f.annotation)) for f in m.model_fields.values()
        if typing.get_origin(_unwrap(f.annotation)) is typing.Literal)] or models
    return sorted({k for m in chosen for k in m.model_fields})


def _data_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """Drop union tags pydantic inserts into ``loc`` by following the actual data."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node and \
                part == loc[-1]:
            out.append(part)  # a missing required key: report it on its parent mapping
    return tuple(out)


def _message(err: dict[str, Any], loc: Loc, data: Any) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc, data)
        key = str(loc[-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {key!r}{hint} Allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"required key {str(loc[-1])!r} is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        key = str(ctx.get("discriminator", "kind")).strip("'")
        value = err["input"].get(key) if isinstance(err["input"], dict) else err["input"]
        return f"unknown {key} {value!r}; allowed: {ctx.get('expected_tags', '')}"
    if err["loc"] and err["loc"][-1] == "[key]":
        return f"invalid name {str(loc[-1])!r}: use letters, digits, '_' or '-', starting " \
               "with a letter (no path separators or shell characters)"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], dict | list):
        return f"{msg} (got {err['input']!r})"
    return msg


def _where(file: str, loc: Loc, marks: dict[Loc, tuple[int, int]], overridden: dict[Loc, str]) \
        -> str:
    for n in range(len(loc), -1, -1):
        if loc[:n] in overridden:
            return f"--set {overridden[loc[:n]]}"
        if loc[:n] in marks:
            line, col = marks[loc[:n]]
            return f"{file}:{line}:{col}"
    return f"{file}:1:1"


def load_spec(path: str | Path = "pipelines.yaml", overrides: list[str] | None = None) \
        -> LoadedSpec:
    """Read, override and validate a spec; raise SpecError listing every problem."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(file, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(file, "", f"cannot read: {exc}")]) from None
    data, marks = _compose(text, file)
    if data is None:
        raise SpecError([Problem(f"{file}:1:1", "", "the file is empty; expected a mapping "
                                 "with a `pipelines:` key")])
    if not isinstance(data, dict):
        raise SpecError([Problem(f"{file}:1:1", "", f"expected a mapping with a `pipelines:` "
                                 f"key, got a {type(data).__name__}")])
    overridden: dict[Loc, str] = {}
    for assignment in overrides or []:
        overridden[_set_override(data, assignment)] = assignment
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _data_loc(err["loc"], data)
            if err["type"] == "union_tag_invalid" and isinstance(err["input"], dict):
                key = str(err.get("ctx", {}).get("discriminator", "kind")).strip("'")
                loc = loc + (key,) if key in err["input"] else loc
            problems.append(Problem(_where(file, loc, marks, overridden), format_loc(loc),
                                    _message(err, loc, data)))
        raise SpecError(problems) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise SpecError([Problem(f"{file}:1:1", "", f"invalid document: {exc}")]) from None
    return LoadedSpec(spec=spec, path=path, marks=marks)
