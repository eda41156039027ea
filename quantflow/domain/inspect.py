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
from quantflow.sources import source_of
from quantflow.variants import kinds


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


def _data(ctx: StepContext) -> tuple[str, tuple[int, ...], int]:
    """prepare's loader, split and calibration draw, without writing them."""
    from quantflow.domain import data

    spec = ctx.pipeline
    x, y = data.load_raw(spec.dataset, ctx.workspace)
    splits = data.split(spec.dataset, x, y)
    calib = data.calibration_samples(spec.calibration, splits, ctx.workspace)
    shape = tuple(int(d) for d in splits.x_train.shape[1:])
    text = (f"{spec.dataset.source}: {len(splits.x_train)} train + {len(splits.x_test)} test "
            f"examples of shape {shape} {splits.x_train.dtype}, labels 0..{splits.num_classes - 1}"
            f", {len(calib)} calibration samples")
    return text, shape, splits.num_classes


def _signature(ctx: StepContext, shape: tuple[int, ...] | None, classes: int | None) \
        -> sig.Signature | None:
    """The model as train would get it: built (a source that trains, which needs the data's
    shape) or loaded (a user's file, read by its format)."""
    model = ctx.pipeline.model
    if model.trains:
        if shape is None or classes is None:
            return None  # nothing to build it for; the data problem is already reported
        return sig.of_keras(source_of(model).build(model, shape, classes, ctx.workspace))
    fmt, rel = getattr(model, "kind", "keras2"), model.files().get("path", "")
    if fmt == "saved_model":
        return sig.of_saved_model(rel, ctx.workspace / rel, model.signature_key())
    if fmt == "tflite":
        return sig.of_tflite(rel, ctx.workspace / rel)
    from quantflow.sources import _loaders

    return sig.of_keras(_loaders.load_keras(rel, fmt, ctx.workspace))


def _fit(found: sig.Signature, shape: tuple[int, ...], classes: int) -> list[str]:
    """Every way the data cannot be fed to the model or scored by it."""
    from quantflow.domain.models import check_shapes

    if len(found.inputs) != 1 or len(found.outputs) != 1:
        return [f"quantflow needs one input and one output; the model has "
                f"{len(found.inputs)} and {len(found.outputs)}"]
    (inp,), (out,) = found.inputs, found.outputs
    problems = []
    for args in ((inp.shape, (None,), shape, 0), ((None,), out.shape, (), classes)):
        try:
            check_shapes(*args)
        except UserError as exc:
            problems.append(str(exc))
    if inp.dtype != "float32":
        problems.append(f"the model's input {inp.name!r} is {inp.dtype}; quantflow feeds it "
                        "the prepared float32 data")
    return problems


def _kinds(ctx: StepContext) -> tuple[list[tuple[str, bool, str]], list[str]]:
    """Which kinds apply to this model (what they require against what it provides), and a
    problem for each variant of the spec whose kind does not."""
    model = ctx.pipeline.model
    have = model.provides()
    rows = []
    for k in kinds().values():
        missing = k.spec.requires - have
        why = "" if not missing else "needs " + " and ".join(
            CAPABILITY_NAMES.get(c, c) for c in sorted(missing)) + f"; {model.describe()}"
        rows.append((k.name, not missing, why))
    why_not = {name: why for name, ok, why in rows if not ok}
    problems = [f"variant {v.name!r} (kind {v.kind}): {why_not[v.kind]}"
                for v in ctx.pipeline.variants if v.kind in why_not]
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
    shape: tuple[int, ...] | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found.data, shape, found.classes = _data(ctx)
        except UserError as exc:
            found.problems.append(f"data: {exc}")
        try:
            with quiet_native_stderr():  # TensorFlow's C++ notices (cuInit) on first use
                found.signature = _signature(ctx, shape, found.classes)
        except UserError as exc:
            found.problems.append(f"model: {exc}")
            errors += [exc] if exc.__cause__ is not None else []
    if found.signature is not None and shape is not None and found.classes is not None:
        found.problems += [f"model: {p}" for p in _fit(found.signature, shape, found.classes)]
    found.kinds, problems = _kinds(ctx)
    found.problems += problems
    found.log = _note(errors, caught, ctx.paths.lock.with_suffix(".inspect.log"))
    found.seconds = round(time.perf_counter() - start, 2)
    return found


def render(found: Inspection) -> list[str]:
    """The report a person reads: data, signature, kinds, then every problem."""
    lines = [f"{found.pipeline}:", f"  data: {found.data or 'not loaded'}"]
    if found.classes is not None:
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
