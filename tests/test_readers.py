"""image_dir and csv data sources: real PNG files and CSV text written in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantflow.core.errors import DataError, SpecError
from quantflow.core.spec import CsvDataset, ImageDirDataset
from quantflow.core.specload import load_spec
from quantflow.domain import data
from tests.tiny import tiny_spec, write_workspace

CLASSES = ("cat", "dog", "owl")


def write_images(root: Path, per_class: int = 12, size: int = 10) -> Path:
    """One folder per class; each class has its own brightness so a model can tell them apart."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 + 70 * c, 10, (size, size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.png")
    (root / "cat" / "notes.txt").write_text("not an image, skipped by extension")
    return root


def image_spec(**kw) -> ImageDirDataset:
    return ImageDirDataset(source="image_dir", path="imgs", image_size=[8, 6], **kw)


def test_image_dir_reads_every_class_in_sorted_order(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs")
    x, y = data.load_raw(image_spec(), tmp_path)
    assert x.shape == (36, 8, 6, 3) and x.dtype == np.float32
    assert y.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    assert x[:12].mean() < x[12:24].mean() < x[24:].mean()  # labels follow the folders
    assert data.class_names(image_spec(), tmp_path, 3) == list(CLASSES)
    again, _ = data.load_raw(image_spec(), tmp_path)
    assert np.array_equal(x, again)
    gray, _ = data.load_raw(image_spec(color_mode="grayscale"), tmp_path)
    assert gray.shape == (36, 8, 6, 1)
    splits = data.split(image_spec(train_size=24, test_size=12, seed=3), x, y)
    assert splits.num_classes == 3 and float(splits.x_train.max()) <= 1.0


def test_a_broken_image_is_named(tmp_path: Path) -> None:
    root = write_images(tmp_path / "imgs")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"dog/broken\.png: not a readable image"):
        data.load_raw(image_spec(), tmp_path)


def test_a_class_without_images_and_a_single_class_are_refused(tmp_path: Path) -> None:
    root = write_images(tmp_path / "imgs")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="class 'empty' has no images"):
        data.load_raw(image_spec(), tmp_path)
    one = tmp_path / "one" / "imgs"
    (one / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="at least 2"):
        data.load_raw(image_spec(), one.parent)


CSV = "label,height,weight,colour\n1,1.5,60,0.1\n0,1.7,80,0.9\n\n1,1.6,55,0.2\n"


def csv_spec(**kw) -> CsvDataset:
    return CsvDataset(source="csv", path="t.csv", **kw)


def test_csv_reads_features_in_the_asked_order(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(CSV)
    x, y = data.load_raw(csv_spec(), tmp_path)
    assert y.tolist() == [1, 0, 1] and x.shape == (3, 3)
    assert x[0].tolist() == pytest.approx([1.5, 60, 0.1])
    x2, _ = data.load_raw(csv_spec(features=["colour", "height"]), tmp_path)
    assert x2[1].tolist() == pytest.approx([0.9, 1.7])


@pytest.mark.parametrize(("text", "message"), [
    ("label,a\n1,2\n0,oops\n", r"t\.csv:3: column 'a': 'oops' is not a number"),
    ("label,a\n1,2\n,3\n", r"t\.csv:3: missing label"),
    ("label,a\n1,2\n0\n", r"t\.csv:3: 1 fields, the header has 2"),
    ("label,a\n1.5,2\n", r"t\.csv:2: label '1.5' is not an integer class"),
    ("kind,a\n1,2\n", r"no label column 'label'"),
    ("label,a\n1,nan\n", r"t\.csv:2: column 'a': 'nan' is not a finite number"),
])
def test_bad_csv_cells_are_named_by_file_and_row(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        data.load_raw(csv_spec(), tmp_path)


def test_validate_checks_the_folder_and_the_file_exist(tmp_path: Path) -> None:
    spec = tiny_spec(dataset={"source": "image_dir", "path": "nowhere", "image_size": [8, 8],
                              "train_size": 0.5, "test_size": 0.5})
    with pytest.raises(SpecError) as exc:
        load_spec(write_workspace(tmp_path, spec))
    [problem] = exc.value.problems
    assert "pipelines.tiny.dataset.path" in str(problem) and "no such directory" in str(problem)
    assert str(problem).startswith(f"{tmp_path / 'pipelines.yaml'}:")
    (tmp_path / "t.csv").write_text(CSV)
    ok = tiny_spec(dataset={"source": "csv", "path": "t.csv", "features": ["height"]})
    assert load_spec(write_workspace(tmp_path, ok)).spec.pipelines["tiny"].dataset.source == "csv"
