"""The deep check: load the model and the data the way prepare and train would, and say every
reason they cannot work together before anything expensive (training, Prefect) starts.

`quantflow validate --deep`, `quantflow inspect` and `quantflow run` (when prepare or train
would run) call :func:`inspect_pipeline`. Nothing is written but a log of tracebacks beside the
pipeline's lock when a problem has one (a builder that raised, say), so the terminal gets one
line per problem and the user's traceback is still there.
"""

from __future__ import annotations

import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantflow.core.errors import UserError
from quantflow.core.request import StepContext
from quantflow.core.specbase import CAPABILITY_NAMES
from quantflow.core.tfenv import quiet_native_stderr
from quantflow.domain import signature as sig
from quantflow.domain.feed import INDEX_DTYPES
from quantflow.domain.models import Shapes
from quantflow.sources import source_of
from quantflow.variants import fitting_option, kinds


@dataclass
class Inspection:
    """What the deep check found for one pipeline; ``problems`` empty means it can run."""

    pipeline: str
    data: str = ""
    classes: int | None = None
    signature: sig.Signature | None = None
    kinds: list[tuple[str, bool, str]] = field(default_factory=list)  # (kind, applies, why)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log: Path | None = None


@dataclass(frozen=True)
class _Data:
    """What the model is checked against: one example's shape (per input name when several),
    each input's dtype, the classes and how many outputs the task needs."""

    text: str
    shapes: Shapes
    dtypes: dict[str, str]
    classes: int
    outputs: int


def _data(ctx: StepContext) -> _Data:
    """prepare's loader, split and calibration draw, without writing them."""
    from quantflow.core import io
    from quantflow.domain import data
    from quantflow.domain.models import output_units

    spec, task = ctx.pipeline, ctx.pipeline.evaluation.task
    x, y = data.load_raw(spec.dataset, ctx.workspace, task)
    splits = data.split(spec.dataset, x, y, task)
    calib = data.calibration_samples(spec.calibration, splits, ctx.workspace, spec.dataset)
    named = splits.x_train if isinstance(splits.x_train, dict) else {"": splits.x_train}
    shapes = io.sample_shapes(splits.x_train)
    what = ", ".join(f"{k + ' ' if k else ''}{tuple(int(d) for d in v.shape[1:])} {v.dtype}"
                     for k, v in named.items())
    labels = {"regression": f"float targets of shape {tuple(splits.y_train.shape[1:])}",
              "binary": "labels 0/1"}.get(task, f"labels 0..{splits.num_classes - 1}")
    text = (f"{spec.dataset.source}: {len(splits.y_train)} train + {len(splits.y_test)} test "
            f"examples of {'shape ' if len(named) == 1 else 'inputs '}{what}, {labels}, "
            f"{io.examples(calib)} calibration samples")
    return _Data(text, shapes, {k: str(v.dtype) for k, v in named.items()},
                 splits.num_classes, output_units(task, splits.num_classes, splits.y_train))


def _signature(ctx: StepContext, found: _Data | None) -> sig.Signature | None:
    """The model as train would get it: built (a source that trains, which needs the data's
    shape) or loaded (a user's file, read by its format)."""
    model = ctx.pipeline.model
    if model.trains:
        if found is None:
            return None  # nothing to build it for; the data problem is already reported
        from quantflow.domain.models import check_trainable

        check_trainable(found.shapes)
        return sig.of_keras(source_of(model).build(model, found.shapes, found.outputs,
                                                   ctx.workspace))
    fmt, rel = getattr(model, "kind", "keras2"), model.files().get("path", "")
    if fmt == "saved_model":
        return sig.of_saved_model(rel, ctx.workspace / rel, model.signature_key())
    if fmt == "tflite":
        return sig.of_tflite(rel, ctx.workspace / rel)
    from quantflow.sources import _loaders

    return sig.of_keras(_loaders.load_keras(rel, fmt, ctx.workspace))


def _fit(found: sig.Signature, data: _Data, output: str | None) -> list[str]:
    """Every way the data cannot be fed to the model or scored by it."""
    from quantflow.domain.models import check_inputs, check_shapes

    problems = []
    try:
        check_inputs({t.name: t.shape for t in found.inputs}, data.shapes)
    except UserError as exc:
        problems.append(str(exc))
    outs = {t.name: t for t in found.outputs}
    if output is not None and output not in outs:
        problems.append(f"evaluation.output {output!r}: the model has no such output; it has "
                        f"{', '.join(sorted(outs))}")
    elif output is None and len(outs) != 1:
        problems.append(f"the model has {len(outs)} outputs ({', '.join(sorted(outs))}); set "
                        "evaluation.output to the one holding the prediction")
    else:
        try:
            check_shapes((None,), outs[output or next(iter(outs))].shape, (), data.outputs)
        except UserError as exc:
            problems.append(str(exc))
    return problems + _dtype_problems(found, data)


def _dtype_problems(found: sig.Signature, data: _Data) -> list[str]:
    """A float input takes any data (cast); an integer one (token ids) needs integer data,
    which prepare keeps only with normalize: none."""
    one = len(found.inputs) == 1
    problems = []
    for t in found.inputs:
        given = data.dtypes.get(t.name) or (next(iter(data.dtypes.values())) if one else None)
        if t.dtype == "float32" or given is None or (t.dtype in INDEX_DTYPES
                                                     and "int" in given):
            continue
        hint = ("; integer token ids stay integer with dataset.normalize: none"
                if t.dtype in INDEX_DTYPES else "")
        problems.append(f"the model's input {t.name!r} is {t.dtype}; quantflow feeds it the "
                        f"prepared {given} data{hint}")
    return problems


def _kinds(ctx: StepContext) -> tuple[list[tuple[str, bool, str]], list[str]]:
    """Which kinds apply to this model (what they require against what it provides; a kind
    that needs an option to apply is listed with it), and a problem for each variant of the
    spec that does not (its own options decide what it requires)."""
    model = ctx.pipeline.model
    have = model.provides()
    rows = []
    for k in kinds().values():
        option = fitting_option(k, have)
        missing = k.spec.requires - have
        why = "" if not missing else "needs " + " and ".join(
            CAPABILITY_NAMES.get(c, c) for c in sorted(missing)) + f"; {model.describe()}"
        rows.append((k.name + (f" (with {option})" if option else ""), option is not None,
                     why))
    problems = [f"variant {v.name!r} (kind {v.kind}): needs " + " and ".join(
        CAPABILITY_NAMES.get(c, c) for c in sorted(v.requires - have))
        + f"; {model.describe()}" for v in ctx.pipeline.variants if not v.requires <= have]
    return rows, problems


def _note(errors: list[BaseException], caught: list[Any], log: Path) -> Path | None:
    """Keep the tracebacks and library warnings out of the terminal, in ``log``."""
    text = "".join("".join(traceback.format_exception(e)) for e in errors)
    text += "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    if not text:
        log.unlink(missing_ok=True)  # an old log would describe an earlier check
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text, encoding="utf-8")
    return log


def inspect_pipeline(ctx: StepContext) -> Inspection:
    """Load the data and the model, compare them, and list the kinds; never raises a
    UserError (each one is a problem of the result)."""
    start = time.perf_counter()
    found = Inspection(ctx.name)
    errors: list[BaseException] = []
    data: _Data | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = _data(ctx)
            found.data, found.classes = data.text, data.classes
        except UserError as exc:
            found.problems.append(f"data: {exc}")
        try:
            with quiet_native_stderr():  # TensorFlow's C++ notices (cuInit) on first use
                found.signature = _signature(ctx, data)
        except UserError as exc:
            found.problems.append(f"model: {exc}")
            errors += [exc] if exc.__cause__ is not None else []
    if found.signature is not None and data is not None:
        found.problems += [f"model: {p}" for p in _fit(found.signature, data,
                                                       ctx.pipeline.evaluation.output)]
    found.kinds, problems = _kinds(ctx)
    found.problems += problems
    found.log = _note(errors, caught, ctx.paths.lock.with_suffix(".inspect.log"))
    found.seconds = round(time.perf_counter() - start, 2)
    return found


def render(found: Inspection) -> list[str]:
    """The report a person reads: data, signature, kinds, then every problem."""
    lines = [f"{found.pipeline}:", f"  data: {found.data or 'not loaded'}"]
    if found.classes:  # a regression has none
        lines.append(f"  classes: {found.classes}")
    if found.signature is not None:
        lines += [f"  input: {t}" for t in found.signature.inputs]
        lines += [f"  output: {t}" for t in found.signature.outputs]
    else:
        lines.append("  signature: not loaded")
    applies = [name for name, ok, _ in found.kinds if ok]
    lines.append(f"  kinds that apply: {', '.join(applies) or 'none'}")
    lines += [f"  not {name}: {why}" for name, ok, why in found.kinds if not ok]
    lines += [f"  PROBLEM {p}" for p in found.problems]
    if found.log is not None:
        lines.append(f"  tracebacks and warnings: {found.log}")
    verdict = f"{len(found.problems)} problem(s)" if found.problems else "ok"
    lines.append(f"  {verdict} ({found.seconds:.1f} s)")
    return lines
