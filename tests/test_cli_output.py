"""What the CLI prints: user and library text verbatim (no rich markup), one line per problem."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from quantflow.cli import app
from quantflow.core.errors import Exit
from tests.tiny import tiny_spec, write_workspace


def test_a_data_error_is_one_line_and_exit_2(tmp_path):
    x = np.random.default_rng(0).random((60, 8, 8), dtype=np.float32)
    x[3, 2, 1] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(60) % 3)
    spec = write_workspace(tmp_path, tiny_spec(dataset={"source": "npz", "path": "d.npz",
                                                        "train_size": 40, "test_size": 20},
                                           calibration={"samples": 10, "split": "train"}))
    result = CliRunner().invoke(app, ["step", "prepare", "tiny", "--spec", str(spec)])
    assert result.exit_code == Exit.SPEC, result.output
    assert "prepare tiny: dataset: 1 NaN/Inf input values (first at [3, 2, 1])" in result.output
    assert "Traceback" not in result.output


def test_square_brackets_in_a_path_are_printed(tmp_path):
    spec = write_workspace(tmp_path / "runs[tf.lite.OpsSet]", tiny_spec())
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert f"{spec}: valid" in result.output
