"""Where quantflow's fixed costs go: import times of the heavy packages, the worker initializer
(TensorFlow import) alone and two at once on the 2 cores, the DVC plan, and the import profile
of a no-op run (`python -X importtime`)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from _workspace import VENV_BIN

PY = str(VENV_BIN / "python")
TIMED = "import time; t = time.perf_counter(); {code}; print('SECONDS', time.perf_counter() - t)"
WARM = "from quantflow.orchestration.taskrunner import warm_worker; warm_worker()"
IMPORTS = {
    "quantflow.cli (what every command imports)": "import quantflow.cli",
    "prefect + the flow and tasks (quantflow run, stale)":
        "import prefect, flows.quantize, tasks",
    "the above + prefect.server.api.server (ephemeral server path)":
        "import prefect, flows.quantize, tasks; import prefect.server.api.server",
    "dvc.repo (the staleness check)": "import dvc.repo",
    "TensorFlow + tf_keras + LiteRT (each worker)": WARM,
}



def _seconds(code: str, env: dict[str, str], cwd: Path) -> float:
    out = subprocess.run([PY, "-c", TIMED.format(code=code)], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=600)
    hit = re.search(r"SECONDS ([0-9.]+)", out.stdout)
    if not hit:
        raise RuntimeError(f"{code!r} failed:\n{out.stderr[-2000:]}")
    return round(float(hit.group(1)), 3)


def import_times(env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Each import in a fresh process (warm page cache: the runs before loaded the files)."""
    return {label: _seconds(code, env, cwd) for label, code in IMPORTS.items()}


def two_workers(env: dict[str, str], cwd: Path) -> float:
    """Wall time of two worker initializers started together, as the process pool does."""
    code = TIMED.format(code=WARM)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([PY, "-c", code], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(2)]
    for p in procs:
        p.wait()
    return round(time.perf_counter() - t0, 3)


FIRST_CONVERSION = """
import time
from quantflow.orchestration.taskrunner import warm_worker
warm_worker()
from quantflow.core.tfenv import tf_modules
tf, keras = tf_modules()
model = keras.Sequential([keras.layers.InputLayer(input_shape=(28, 28)),
                          keras.layers.Flatten(), keras.layers.Dense(10)])
for i in range(2):
    t = time.perf_counter()
    tf.lite.TFLiteConverter.from_keras_model(model).convert()
    print("SECONDS", time.perf_counter() - t)
"""


def first_conversion(env: dict[str, str], cwd: Path) -> list[float]:
    """A tiny model converted twice in a fresh worker-like process: the first conversion pays a
    one-time converter warm-up that every worker process pays again."""
    out = subprocess.run([PY, "-c", FIRST_CONVERSION], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=600)
    found = [round(float(x), 3) for x in re.findall(r"SECONDS ([0-9.]+)", out.stdout)]
    if len(found) != 2:
        raise RuntimeError(f"conversion probe failed:\n{out.stderr[-2000:]}")
    return found


def plan_seconds(env: dict[str, str], ws: Path, pipeline: str, ask_dvc: bool = False) -> float:
    """One plan_run of an up-to-date pipeline, imports excluded: with DVC's last verdict
    remembered (cleanmark), or, ``ask_dvc``, with it forgotten first (spec + in-process
    `dvc status`, which writes the mark again)."""
    setup = ("from quantflow.orchestration.plan import plan_run; "
             "from quantflow.core.request import load_request; import dvc.repo; import shutil")
    forget = "shutil.rmtree('.dvc/tmp/quantflow-clean', ignore_errors=True); " if ask_dvc else ""
    code = forget + f"plan_run(load_request({str(ws)!r}, 'pipelines.yaml', [], {pipeline!r}))"
    out = subprocess.run([PY, "-c", setup + "\n" + TIMED.format(code=code)], env=env, cwd=ws,
                         capture_output=True, text=True, timeout=600)
    hit = re.search(r"SECONDS ([0-9.]+)", out.stdout)
    if not hit:
        raise RuntimeError(f"plan_run failed:\n{out.stderr[-2000:]}")
    return round(float(hit.group(1)), 3)


def noop_importtime(env: dict[str, str], ws: Path, pipeline: str, top: int = 12) -> dict:
    """A no-op `quantflow run` under -X importtime: its wall time and the costliest imports."""
    code = ("import sys; from quantflow.cli import main; "
            f"sys.argv = ['quantflow', 'run', {pipeline!r}]; main()")
    t0 = time.perf_counter()
    out = subprocess.run([PY, "-X", "importtime", "-c", code], env=env, cwd=ws,
                         capture_output=True, text=True, timeout=600)
    wall = round(time.perf_counter() - t0, 3)
    rows = []
    for line in out.stderr.splitlines():
        hit = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if hit and len(hit.group(3)) <= 1:  # top-level imports only
            rows.append((int(hit.group(2)) / 1e6, hit.group(4)))
    names = {name for _, name in rows}
    all_names = {m.group(1) for m in re.finditer(r"\| +([\w.]+)$", out.stderr, re.M)}
    return {
        "returncode": out.returncode, "wall_seconds": wall,
        "tensorflow_imported": any(n == "tensorflow" or n.startswith("tensorflow.")
                                   for n in all_names),
        "prefect_imported": any(n == "prefect" or n.startswith("prefect.") for n in all_names),
        "top_imports": [{"module": n, "seconds": round(s, 3)}
                        for s, n in sorted(rows, reverse=True)[:top]],
        "top_level_modules": len(names),
    }
