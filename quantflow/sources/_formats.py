"""What a model file is: told from the file itself, so `path:` needs no format key.

Detection only reads names and a zip's small metadata.json, so `validate` stays fast. The
format decides which variant kinds apply (``CAPABILITIES``) and how export makes the one
SavedModel every converter starts from.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Literal

Format = Literal["keras2", "keras3", "saved_model", "tflite"]

CAPABILITIES: dict[str, frozenset[str]] = {
    "keras2": frozenset({"keras2", "saved_model"}),  # tf_keras: tfmot can wrap it
    "keras3": frozenset({"saved_model"}),  # exported to a SavedModel, tfmot cannot wrap it
    "saved_model": frozenset({"saved_model"}),
    "tflite": frozenset({"tflite"}),
}

DESCRIPTIONS: dict[str, str] = {
    "keras2": "a Keras 2 (tf_keras) model",
    "keras3": "a Keras 3 model (tfmot's QAT wraps only Keras 2 / tf_keras models)",
    "saved_model": "a SavedModel directory (no Keras model to fine-tune)",
    "tflite": "a .tflite file (already converted)",
}


def keras_zip_version(path: Path) -> str | None:
    """The keras_version a .keras zip says it was written by, or None if it says nothing."""
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("metadata.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    version = meta.get("keras_version") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def detect(path: Path) -> Format:
    """The format of ``path``; a file that is not there is guessed from its name (validate
    reports it missing), anything unreadable goes to the Keras 2 loader, whose error says why."""
    if path.is_dir():
        return "keras2" if (path / "keras_metadata.pb").exists() else "saved_model"
    if path.suffix.lower() == ".tflite":
        return "tflite"
    if path.suffix.lower() == ".keras":
        version = keras_zip_version(path) if path.is_file() else None
        return "keras3" if version is not None and version.startswith("3") else "keras2"
    return "keras2"
