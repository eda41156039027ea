"""The one place that reads pipelines.yaml.

It parses YAML keeping each node's line and column, applies ``--set`` overrides, validates with
the pydantic models of ``quantflow.core.spec`` and turns every problem into one line of the form
``FILE:LINE:COL: key.path: message``. Any failure raises :class:`SpecError`; nothing else.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from quantflow.core.errors import Problem, SpecError
from quantflow.core.spec import CsvDataset, IdxDataset, ImageDirDataset, NpzDataset, Spec
from quantflow.core.specbase import NAME_PATTERN

Loc = tuple[str | int, ...]




@dataclass
class LoadedSpec:
    spec: Spec
    path: Path
    marks: dict[Loc, tuple[int, int]]


class _Loader(yaml.SafeLoader):
    """SafeLoader that remembers where each mapping value and sequence item starts."""


# YAML 1.1 reads `1e-3` (no dot) as a string; every user means the number, as YAML 1.2 does.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
MAX_NODES = 100_000  # aliases can expand a short file exponentially ("billion laughs")


def _compose(text: str, file: str) -> tuple[Any, dict[Loc, tuple[int, int]]]:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise SpecError([Problem(where, "", f"YAML syntax error: {exc.problem}")]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise SpecError([Problem(file, "", f"YAML error: {exc}")]) from None
    marks: dict[Loc, tuple[int, int]] = {}
    problems: list[Problem] = []
    cons = _Loader("")
    active: set[int] = set()

    def here(n: yaml.Node) -> str:
        return f"{file}:{n.start_mark.line + 1}:{n.start_mark.column + 1}"

    def scalar(n: yaml.Node, loc: Loc) -> Any:
        try:
            return cons.construct_object(n, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise SpecError([Problem(here(n), format_loc(loc), f"bad value: {problem}")]) from None

    def build(n: yaml.Node, loc: Loc) -> Any:
        if id(n) in active:
            raise SpecError([Problem(here(n), format_loc(loc), "the document refers to itself "
                                     "(through YAML aliases); write the values out")])
        if len(marks) > MAX_NODES:
            raise SpecError([Problem(here(n), format_loc(loc[:1]), f"the document expands to "
                                     f"over {MAX_NODES} values (through YAML aliases, at "
                                     f"{format_loc(loc)}); write the values out")])
        marks[loc] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, yaml.ScalarNode):
            return scalar(n, loc)
        if n.tag not in (_MAP, _SEQ):
            raise SpecError([Problem(here(n), format_loc(loc), f"bad value: YAML tag {n.tag!r} "
                                     "is not allowed; write a plain mapping or list")])
        active.add(id(n))
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = scalar(k, loc) if isinstance(k, yaml.ScalarNode) else "?"
                key = key if isinstance(key, str) else str(key)
                if key in out:
                    problems.append(Problem(here(k), format_loc(loc + (key,)),
                                            "duplicate key; each key may appear once"))
                out[key] = build(v, loc + (key,))
                marks[loc + (key,)] = (k.start_mark.line + 1, k.start_mark.column + 1)
        else:
            out = [build(v, loc + (i,)) for i, v in enumerate(n.value)]  # type: ignore[assignment]
        active.discard(id(n))
        return out

    try:
        data = None if node is None else build(node, ())
    except RecursionError:
        raise SpecError([Problem(f"{file}:1:1", "", "the document is nested too deeply")]) from None
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
        value = yaml.load(raw, Loader=_Loader) if raw else ""  # _Loader is a SafeLoader
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


def _models_at(loc: Loc, data: Any) -> list[type[BaseModel]]:
    """The spec models that may describe the mapping at ``loc``, narrowed by its union tag."""
    candidates: list[Any] = [Spec]
    node = data
    for part in loc:
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
            node[part] if isinstance(node, list) and isinstance(part, int)
            and part < len(node) else None)
        candidates = nxt
    models = [m for tp in candidates for m in _members(tp)
              if isinstance(m, type) and issubclass(m, BaseModel)]
    tag = None
    if isinstance(node, dict):
        tag = node.get("kind") or node.get("source") or node.get("arch")
    return [m for m in models
            if any(tag in _literals(f.annotation) for f in m.model_fields.values())] or models


def _literals(annotation: Any) -> tuple[Any, ...]:
    tp = _unwrap(annotation)
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else ()


def _allowed_keys(loc: Loc, data: Any) -> list[str]:
    """Field names accepted at the mapping that holds ``loc[-1]``, following the data."""
    return sorted({k for m in _models_at(loc[:-1], data) for k in m.model_fields})


def _allowed_tags(loc: Loc, key: str) -> str:
    """The values the union tag ``key`` may take at the mapping ``loc``: every variant kind."""
    members = _models_at(loc, None)  # without the data: every member, not only the tagged one
    tags = [t for m in members if key in m.model_fields
            for t in _literals(m.model_fields[key].annotation)]
    return ", ".join(repr(t) for t in dict.fromkeys(tags))


def _data_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """Drop union tags pydantic inserts into ``loc`` by following the actual data."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and i == len(loc) - 1:
            out.append(part)  # a missing required key: report it on its parent mapping
    return tuple(out)


def _branch(err: dict[str, Any], data: Any) -> tuple[tuple[Any, ...], Any] | None:
    """(where, which member) when pydantic tried several members of a union for this error.

    pydantic names the member it tried inside ``loc`` (a class name, 'int', a tag); that
    element is the one the data does not contain.
    """
    loc, node, found = err["loc"], data, None
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif part != "[key]" and not (i == len(loc) - 1 and err["type"] == "missing"):
            found = i  # the innermost member name wins: that is the union this error is in
    return None if found is None else (tuple(loc[:found]), loc[found])


def _closest_branches(errors: list[dict[str, Any]], data: Any) -> list[dict[str, Any]]:
    """For a non-discriminated union keep only the member(s) with the fewest errors: a user
    who wrote `interval_seconds: 5` meant an interval schedule, not a cron one."""
    groups: dict[tuple[Any, ...], dict[Any, list[int]]] = {}
    for i, err in enumerate(errors):
        branch = _branch(err, data)
        if branch:
            groups.setdefault(branch[0], {}).setdefault(branch[1], []).append(i)
    drop: set[int] = set()
    for members in groups.values():
        fewest = min(len(ix) for ix in members.values())
        drop |= {i for ix in members.values() if len(ix) > fewest for i in ix}
    return [e for i, e in enumerate(errors) if i not in drop]


def _message(err: dict[str, Any], loc: Loc, data: Any) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc, data)
        key = str(loc[-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}? Allowed" if close else "; allowed"
        return f"unknown key {key!r}{hint} here: {', '.join(allowed)}"
    if kind == "missing":
        return f"required key {str(loc[-1])!r} is missing"
    ctx = err.get("ctx") or {}
    if kind == "union_tag_invalid":
        key = str(ctx.get("discriminator", "kind")).strip("'")
        value = err["input"].get(key) if isinstance(err["input"], dict) else err["input"]
        return f"unknown {key} {value!r}; allowed: {ctx.get('expected_tags', '')}"
    if kind == "union_tag_not_found":
        key = str(ctx.get("discriminator", "kind")).strip("'")
        return f"required key {key!r} is missing; allowed: {_allowed_tags(loc[:-1], key)}"
    if err["loc"] and err["loc"][-1] == "[key]" or (
            kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN):
        return f"invalid name {str(err['input'])!r}: use letters, digits, '_' or '-', " \
               "starting with a letter, at most 64 (no path separators or shell characters)"
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


def _problems(exc: ValidationError, data: Any) -> list[tuple[Loc, str]]:
    """One (key path, message) per pydantic error, union noise removed, duplicates merged."""
    out: dict[tuple[Loc, str], None] = {}
    for err in _closest_branches(exc.errors(), data):
        loc = _data_loc(err["loc"], data)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            key = str((err.get("ctx") or {}).get("discriminator", "kind")).strip("'")
            loc = loc + (key,)
        out[(loc, _message(err, loc, data))] = None
    return list(out)


def _missing_files(spec: Spec, workspace: Path, only: list[str] | None) -> list[tuple[Loc, str]]:
    """Files the spec names must exist now: a typo should fail `validate`, not the run."""
    out: list[tuple[Loc, str]] = []

    def need(loc: Loc, rel: str, what: str = "file") -> bool:
        target = workspace / rel
        try:
            if target.is_dir() if what == "directory" else target.exists():
                return True
        except (OSError, ValueError):  # a name too long, a NUL byte: no such file either
            pass
        out.append((loc, f"no such {what} {rel!r} ({target}); paths are relative to the "
                         "folder of the spec file"))
        return False

    for name, p in spec.pipelines.items():
        if only is not None and name not in only:
            continue
        at: Loc = ("pipelines", name)
        ds = p.dataset
        if isinstance(ds, IdxDataset) and need(at + ("dataset", "path"), ds.path, "directory"):
            for key in ("images", "labels"):
                need(at + ("dataset", key), f"{ds.path}/{getattr(ds, key)}")
        elif isinstance(ds, NpzDataset | CsvDataset):
            need(at + ("dataset", "path"), ds.path)
        elif isinstance(ds, ImageDirDataset):
            need(at + ("dataset", "path"), ds.path, "directory")
        for key, rel in p.model.files().items():  # a model source's own files
            need(at + ("model", *key.split(".")), rel, "file or directory")
        if p.calibration.path is not None:
            need(at + ("calibration", "path"), p.calibration.path)
    return out


@dataclass(frozen=True)
class ParsedSpec:
    """A spec file read once: the plain data (before overrides) and where each key is."""

    path: Path
    data: dict[str, Any]
    marks: dict[Loc, tuple[int, int]]


def parse_spec(path: str | Path = "pipelines.yaml") -> ParsedSpec:
    """Read and compose the YAML file (raises SpecError); validation comes in ``validate``."""
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
    return ParsedSpec(path=path, data=data, marks=marks)


def validate(parsed: ParsedSpec, overrides: list[str] | None = None,
             pipelines: list[str] | None = None) -> LoadedSpec:
    """Apply ``overrides`` to a copy of the parsed data and validate it; raise SpecError
    listing every problem. The files a pipeline names are checked for ``pipelines`` (default:
    all), so running `digits` does not need the data of `mnist`.

    Validation is strict: `epochs: yes` or `epochs: "5"` is a wrong type, not 1 or 5.
    """
    file, data = str(parsed.path), copy.deepcopy(parsed.data)
    overridden: dict[Loc, str] = {}
    for assignment in overrides or []:
        overridden[_set_override(data, assignment)] = assignment
    try:
        spec = Spec.model_validate(data, strict=True,
                                  context={"workspace": parsed.path.parent})
        found = _missing_files(spec, parsed.path.parent, pipelines)
    except ValidationError as exc:
        found = _problems(exc, data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SpecError([Problem(f"{file}:1:1", "", f"invalid document: {exc}")]) from None
    if found:
        raise SpecError([Problem(_where(file, loc, parsed.marks, overridden), format_loc(loc),
                                 msg) for loc, msg in found])
    return LoadedSpec(spec=spec, path=parsed.path, marks=parsed.marks)


def load_spec(path: str | Path = "pipelines.yaml", overrides: list[str] | None = None,
              pipelines: list[str] | None = None) -> LoadedSpec:
    """Read, override and validate a spec in one call (see ``validate``)."""
    return validate(parse_spec(path), overrides, pipelines)
