"""Mixed precision found for you: full int8, with the layers that hurt most moved to int16
activations or float until the variant passes its gate (ai-edge-quantizer recipes).

The search (``_search``) gates every candidate with the quantize step's own evaluation and the
gate's own decision (``ConvertInputs.judge``), on the test split; the ranking that guides it
uses calibration samples only (``_ranking``). Besides ``model.tflite`` it writes
``search.json`` (every candidate tried) and ``layers.csv`` (per-layer error, ranked).
When nothing passes within the budget, the best candidate is kept as ``best_candidate.tflite``
(never published: no ``model.tflite``) and the variant fails saying what it got.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from quantflow.core.specbase import Expected, VariantBase
from quantflow.variants import ConvertInputs

RANKING_SAMPLES = 16  # calibration samples the per-layer error is measured on


class AutoVariant(VariantBase):
    kind: Literal["auto"] = Field(
        description="Full int8, with the layers that hurt most moved to int16 activations or "
        "float until the gate passes (ai-edge-quantizer)."
    )
    io_type: Literal["float32", "int8", "uint8"] = Field(
        "float32", description="Type of the model's input and output tensors (uint8: the int8 "
        "model with a uint8 interface, same scales)."
    )
    precisions: list[Literal["int8", "int16", "float"]] = Field(
        ["int8", "int16", "float"], min_length=2, description="Precisions a layer may take, "
        "cheapest first; the first must be int8 (where every layer starts).",
    )
    max_evaluations: int = Field(24, ge=1, le=1000, description="Most candidates to build "
                                 "and evaluate; the search keeps the best found so far.")
    timeout_seconds: float = Field(900, gt=0, description="Wall-time budget of the search.")
    objective: Literal["smallest_size", "lowest_latency"] = Field(
        "smallest_size", description="Among passing candidates, the one to keep."
    )

    needs_calibration: ClassVar[bool] = True
    requires: ClassVar[frozenset[str]] = frozenset()  # export writes float.tflite for any model
    order: ClassVar[int] = 70
    # The search keeps what the gate passes: its stage re-runs when the gate changes.
    reads_gate: ClassVar[bool] = True

    @field_validator("precisions")
    @classmethod
    def _starts_at_int8(cls, v: list[str]) -> list[str]:
        if v[0] != "int8" or len(set(v)) != len(v):
            raise ValueError("precisions must start with int8 and list each precision once")
        return v

    def promise(self) -> Expected:
        """Int8 weights (the layers left in int8 keep them) and the I/O type asked for."""
        return Expected(self.io_type, "int8")


def convert(inputs: ConvertInputs, variant: AutoVariant, out: Path) -> Path:
    """Calibrate once, search, write the search's record, then publish the winner as
    ``out`` or fail with the best candidate kept aside."""
    from quantflow.variants import _autorun

    if inputs.float_tflite is None or inputs.judge is None:
        raise ValueError("the auto kind needs the float .tflite and the gate (quantize step)")
    work = out.parent / "candidates"
    shutil.rmtree(work, ignore_errors=True)
    try:
        best = _autorun.search(inputs, variant, work, out.parent, RANKING_SAMPLES)
        if best.passed:
            shutil.copyfile(best.path, out)
            return out
        shutil.copyfile(best.path, out.parent / "best_candidate.tflite")
        raise RuntimeError(best.summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
