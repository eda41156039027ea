"""The commented pipelines.yaml that `quantflow init` writes, filled from the model and data.

Text, not a dumped dict: the comments are the point (a first spec teaches the keys), and the
`yaml-language-server` line gives editors completion from the JSON Schema.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from quantflow.core.errors import UserError
from quantflow.core.spec import IdxDataset

MODEL_SUFFIXES = (".keras", ".h5")


def _quoted(text: str) -> str:
    """A JSON string is a valid double-quoted YAML scalar, whatever the path holds."""
    return json.dumps(text)


def _row(text: str, note: str = "") -> str:
    """One key of a section (six spaces in), its comment in the template's comment column."""
    return f"{'      ' + text:<31} # {note}\n" if note else f"      {text}\n"


def model_section(given: Path | None, spec_path: str | None) -> str:
    """`model: {path: ...}` for a .keras/.h5 file or a SavedModel folder; else seed_cnn."""
    if given is None or spec_path is None:
        return _row("arch: seed_cnn", "TF's QAT-example CNN, trained by the train step")
    saved_model = given.is_dir() and (given / "saved_model.pb").is_file()
    if not saved_model and not (given.is_file() and given.suffix.lower() in MODEL_SUFFIXES):
        raise UserError(f"--model {given}: expected a .keras or .h5 file or a SavedModel folder "
                        "(with saved_model.pb)")
    return _row(f"path: {_quoted(spec_path)}", "your model: loaded as it is, no training")


def _npz_keys(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return sorted(n.removesuffix(".npy") for n in zf.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"--data {path}: not a readable .npz file ({exc})") from None


def _idx_files(folder: Path) -> tuple[str, str]:
    """The defaults if present, else the one images file and the one labels file there."""
    default = (IdxDataset.model_fields["images"].default, IdxDataset.model_fields["labels"].default)
    if all((folder / f).is_file() for f in default):
        return default
    images = sorted(p.name for p in folder.glob("*images*") if p.is_file())
    labels = sorted(p.name for p in folder.glob("*labels*") if p.is_file())
    if len(images) != 1 or len(labels) != 1:
        raise UserError(f"--data {folder}: an IDX folder needs one *images* and one *labels* "
                        f"file (or {default[0]} and {default[1]}); found {images + labels}")
    return images[0], labels[0]


def dataset_section(given: Path | None, spec_path: str | None) -> str:
    """`source: npz` for an .npz file, `source: idx` for a folder of IDX files, else digits."""
    if given is None or spec_path is None:
        return _row("source: sklearn_digits", "scikit-learn's embedded 8x8 digits: no download")
    if given.is_file() and given.suffix.lower() == ".npz":
        keys = _npz_keys(given)
        found = "" if {"x", "y"} <= set(keys) else f" (this file holds: {', '.join(keys)})"
        return (_row("source: npz") + _row(f"path: {_quoted(spec_path)}")
                + _row("x_key: x", f"inputs, shape (examples, ...){found}")
                + _row("y_key: y", "integer class labels, shape (examples,)"))
    if given.is_dir():
        images, labels = _idx_files(given)
        return (_row("source: idx", "MNIST-format IDX files (.gz)")
                + _row(f"path: {_quoted(spec_path)}")
                + _row(f"images: {_quoted(images)}") + _row(f"labels: {_quoted(labels)}"))
    raise UserError(f"--data {given}: expected an .npz file or a folder of IDX files")


SPEC = """\
# yaml-language-server: $schema=./{schema}
# Written by `quantflow init`. `quantflow validate` checks this file, `quantflow run` runs
# what is stale (DVC decides), `quantflow dvc` regenerates dvc.yaml after you edit it.
# Every key is described in {schema}.
execution:
  max_workers: 2              # worker processes; variants are converted in parallel
  artifacts: artifacts        # artifacts/<pipeline>/<step>/...

pipelines:
  {name}:
    description: Written by quantflow init.
    dataset:
{dataset}      train_size: 0.8           # a count or a fraction; the test split is taken last
      test_size: 0.2
      seed: 0                   # shuffling and splitting
      normalize: max            # divide by the training max (or: standard, none)
    model:
{model}    train:                      # the built-in architectures only
      epochs: 15
      batch_size: 32
      learning_rate: 0.003
      seed: 0
    calibration:                # representative samples for the int8 kinds
      samples: 100
      split: train
      seed: 0
    variants:                   # kinds: dynamic_range, float16, int8_float_fallback, int8,
                                #        int16x8, qat; each may have its own `gate:`
      - {{name: dynamic_range, kind: dynamic_range}}
      - {{name: float16, kind: float16}}
      - {{name: int8, kind: int8, io_type: int8}}
    gate:                       # a variant is published only if it passes every threshold
      max_accuracy_drop: 0.02   # absolute, against the float TFLite baseline
      # min_accuracy: 0.9
      # max_size_bytes: 1000000
      # max_latency_ms: 5.0     # single-sample p50
    publish:
      registry: registry        # registry/<pipeline>/<version>/ and an alias link
      strategy: all_passing     # or: best (with objective: smallest_size, highest_accuracy,
      alias: latest             #     lowest_latency)
    # schedule: {{cron: "0 3 * * 1", timezone: UTC}}   # for `quantflow deploy`
"""


def render_spec(name: str, dataset: str, model: str, schema: str) -> str:
    return SPEC.format(name=name, dataset=dataset, model=model, schema=schema)
