"""The measuring harness: the environment every measured process gets, and one measured run
(wall time, process-tree memory, timeline, what it imported) of a plain script or of
`quantflow run`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import _measure
import _timeline
import _workspace as wsp
from _server import PrefectServer
from _workloads import Workload, sizes, variants_for

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
PY = str(wsp.VENV_BIN / "python")
QUANTFLOW = str(wsp.VENV_BIN / "quantflow")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {_measure.loadavg()}] {msg}", flush=True)


def base_env(tmp: Path) -> dict[str, str]:
    """Isolated Prefect home; no inherited API URL; the probe on PYTHONPATH, then this tree
    (so every `quantflow` process runs the code beside this benchmark, not whatever the venv's
    editable install points at)."""
    path = os.pathsep.join(p for p in (str(BENCH / "probe"), str(BENCH.parent),
                                        os.environ.get("PYTHONPATH")) if p)
    return _measure.clean_env(
        PREFECT_HOME=str(tmp / "prefect-home"), PREFECT_API_URL=None, PYTHONPATH=path,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Under load the ephemeral server can take > 20 s (Prefect's default) to answer; a
        # timeout would abort the run instead of measuring it.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PATH=f"{wsp.VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")



class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args, self.tmp = args, tmp
        self.env = base_env(tmp)
        self.runs: dict[str, dict] = {}
        self.server: PrefectServer | None = None
        (OUT / "logs").mkdir(parents=True, exist_ok=True)

    def measure(self, label: str, cmd: list[str], cwd: Path, env: dict[str, str],
                title: str = "", server: bool = False) -> tuple[_measure.Measured, dict]:
        probe = self.tmp / f"probe-{label}"
        shutil.rmtree(probe, ignore_errors=True)
        probe.mkdir()
        env = {**env, "QF_BENCH_PROBE_DIR": str(probe)}
        log(f"{label}: {' '.join(cmd[-3:])}")
        extra = self.server.proc.pid if server and self.server and self.server.proc else None
        m = _measure.run(label, cmd, cwd, env, echo=self.args.echo, extra_pid=extra)
        (OUT / "logs" / f"{label}.log").write_text(
            "\n".join(f"{t:8.3f} {s[:3]} {x}" for t, s, x in m.lines) + "\n")
        records = [json.loads(p.read_text()) for p in probe.glob("*.json")]
        res = {**m.summary(), "title": title or label,
               "python_processes_probed": len(records),
               "tensorflow_imported": any("tensorflow" in r["imported"] for r in records),
               "prefect_imported": any("prefect" in r["imported"] for r in records)}
        log(f"{label}: {m.wall_seconds:.2f} s, rc {m.returncode}, peak RSS {m.peak_rss_mb:.0f} MB,"
            f" load after {m.loadavg_after}")
        return m, res

    def quantflow_run(self, w: Workload, label: str, title: str, ws: Path, server: bool) -> dict:
        env = dict(self.env)
        if server:
            env["PREFECT_API_URL"] = self.server.api_url
        key = f"{w.key}.{label}"
        m, res = self.measure(key, [QUANTFLOW, "run", w.pipeline], ws, env, title, server)
        api = None
        flow = _timeline.flow_run_id(m)
        if server and flow:
            try:
                api = _timeline.api_task_runs(self.server.api_url, flow, m.started_epoch)
            except Exception as exc:  # noqa: BLE001 - phases then come from log lines only
                res["api_error"] = f"{type(exc).__name__}: {exc}"
        res.update(workload=w.key, run=label, phases=_timeline.phases(m, api), task_runs=api,
                   step_seconds=_timeline.step_seconds(ws / "artifacts" / w.pipeline),
                   max_parallel_quantize=_timeline.max_overlap(api))
        self.runs[key] = res
        return res

    def sizes(self, w: Workload) -> tuple[int, int]:
        return sizes(w, self.args.quick)

    def spec(self, w: Workload, variants: list[dict]) -> dict:
        evaluation = {"threads": self.args.threads} if self.args.threads != 1 else None
        return w.spec(variants, *self.sizes(w), evaluation)


def run_plain(b: Bench, w: Workload, label: str, title: str) -> dict:
    key = f"{w.key}.{label}"
    out = b.tmp / f"{key}.json"
    cmd = w.plain_cmd(PY, variants_for(w, b.args.quick), *b.sizes(w), out)
    m, res = b.measure(key, cmd, b.tmp, b.env, title)
    if m.returncode:
        sys.exit(f"plain script failed (exit {m.returncode}); see {OUT / 'logs' / key}.log")
    return {**res, "script": json.loads(out.read_text())}
