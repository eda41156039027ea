"""Issue #3 figures on the `digits` pipeline: cold / gate-only / no-op, for `dvc repro` and for
`quantflow run`, each in a fresh clone of this repo (so the two entry points do not share
artifacts). Prints a Markdown table; run from the repo root with the project's .venv:

    .venv/bin/python bench/dvc_vs_run.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("PREFECT_API_URL", None)
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    took = time.perf_counter() - start
    if out.returncode not in (0,):
        raise SystemExit(f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n"
                         f"{out.stderr[-3000:]}")
    return took, out.stdout + out.stderr


def clone(into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    remote = into.parent / f"{into.name}-remote"
    subprocess.run([BIN / "dvc", "remote", "modify", "--local", "storage", "url", str(remote)],
                   cwd=into, check=True)
    return into


def edit_gate(ws: Path) -> None:
    spec = ws / "pipelines.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("min_compression_ratio: 1.3 ", "min_compression_ratio: 1.2 ", 1))


def ran_stages(log: str) -> str:
    names = sorted(set(re.findall(r"Running stage '([^']+)'", log)))
    return ", ".join(names) or "-"


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="qf-dvc-bench-"))
    # shared/ must sit beside each clone for the mnist pipeline's params; digits needs nothing
    rows = []
    ws = clone(base / "repro")
    t, _ = sh(["dvc", "repro", "digits-publish"], ws)
    rows.append(("dvc repro", "cold", t, "all digits stages"))
    edit_gate(ws)
    t, log = sh(["dvc", "repro", "digits-publish"], ws)
    rows.append(("dvc repro", "gate threshold changed", t, ran_stages(log)))
    t, log = sh(["dvc", "repro", "digits-publish"], ws)
    rows.append(("dvc repro", "nothing changed", t, ran_stages(log)))

    ws = clone(base / "run")
    t, _ = sh(["quantflow", "run", "digits"], ws)
    rows.append(("quantflow run", "cold", t, "all digits stages"))
    edit_gate(ws)
    t, log = sh(["quantflow", "run", "digits"], ws)
    ran = re.search(r"digits: running (.*)", log)
    rows.append(("quantflow run", "gate threshold changed", t, ran.group(1) if ran else "?"))
    t, log = sh(["quantflow", "run", "digits"], ws)
    rows.append(("quantflow run", "nothing changed", t, "up to date" if "up to date" in log
                 else "?"))
    _, status = sh(["dvc", "status"], ws)
    print(f"load average: {os.getloadavg()}")
    print("| entry point | change | wall s | x cold | stages that ran |")
    print("|---|---|---:|---:|---|")
    for entry, change, took, ran in rows:
        cold = next(r[2] for r in rows if r[0] == entry and r[1] == "cold")
        print(f"| {entry} | {change} | {took:.1f} | {took / cold:.2f} | {ran} |")
    digits_clean = "digits-" not in status
    print(f"\n`dvc status` after quantflow run: digits stages clean = {digits_clean}")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
