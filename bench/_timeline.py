"""Per-phase times of one `quantflow run`, from three sources that agree on a single clock
(seconds since the process was started):

* arrival times of its output lines (CLI messages and Prefect's log lines);
* task runs from the Prefect API when a running server kept them (exact start and end);
* the seconds the steps record in their artifacts (train, convert, evaluate).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from _measure import Measured

TASK_DONE = re.compile(r"Task run '([^']+)' - Finished in state")
FLOW_URL = re.compile(r"/runs/flow-run/([0-9a-f-]{36})")


def marks(m: Measured) -> dict[str, float]:
    """First arrival time of each landmark line."""
    found: dict[str, float] = {}
    patterns = {
        "server_spawn": "Starting temporary server",
        "api_ready": "Prefect API: ",
        "flow_begin": "Beginning flow run",
        "planned": ": running ",
        "flow_end": r"Flow run '[^']+' - Finished in state",
        "server_stop": "Stopping temporary server",
        "up_to_date": "up to date",
    }
    for t, _, text in m.lines:
        for key, pat in patterns.items():
            if key not in found and re.search(pat, text):
                found[key] = t
    return found


def task_finishes(m: Measured) -> dict[str, float]:
    """Task name (prepare, train, export, quantize-<variant>, gate, publish) -> finish time."""
    out = {}
    for t, _, text in m.lines:
        hit = TASK_DONE.search(text)
        if hit:
            out[_task_key(hit.group(1))] = t
    return out


def _task_key(run_name: str) -> str:
    return run_name if run_name.startswith("quantize-") else run_name.rsplit("-", 1)[0]


def flow_run_id(m: Measured) -> str | None:
    for _, _, text in m.lines:
        hit = FLOW_URL.search(text)
        if hit:
            return hit.group(1)
    return None


def api_task_runs(api_url: str, flow_run: str, start_epoch: float) -> dict[str, dict]:
    """Task runs of one flow run as {name: {start, end}} in seconds since process start."""
    import httpx

    resp = httpx.post(f"{api_url}/task_runs/filter", timeout=30,
                      json={"flow_runs": {"id": {"any_": [flow_run]}}, "limit": 200})
    resp.raise_for_status()
    out = {}
    for run in resp.json():
        if not run.get("start_time") or not run.get("end_time"):
            continue
        start = datetime.fromisoformat(run["start_time"]).timestamp() - start_epoch
        end = datetime.fromisoformat(run["end_time"]).timestamp() - start_epoch
        out[_task_key(run["name"])] = {"start": round(start, 3), "end": round(end, 3)}
    return out


def step_seconds(artifacts: Path) -> dict[str, float]:
    """What the steps themselves measured: train, and convert/evaluate per model."""
    out: dict[str, float] = {}
    history = artifacts / "train" / "history.json"
    if history.exists():
        out["train.fit"] = json.loads(history.read_text())["seconds"]
    files = [("float", artifacts / "export" / "metrics.json")]
    files += [(p.parent.name, p) for p in sorted((artifacts / "variants").glob("*/metrics.json"))]
    for name, path in files:
        m = json.loads(path.read_text())
        for key in ("convert_seconds", "evaluate_seconds"):
            if m.get(key) is not None:
                out[f"{name}.{key.split('_')[0]}"] = round(m[key], 3)
    return out


def phases(m: Measured, api_runs: dict[str, dict] | None) -> list[tuple[str, float]]:
    """Consecutive phases of a run that did work, each (label, seconds); they sum to the wall."""
    mk, done = marks(m), task_finishes(m)
    if "flow_begin" not in mk:
        return [("whole run (no flow started)", m.wall_seconds)]
    points: list[tuple[str, float]] = []
    start = "start: CLI imports, spec, DVC plan, deep check, Prefect import"
    if "server_spawn" in mk:
        points.append((start, mk["server_spawn"]))
        points.append(("ephemeral Prefect server start", mk["api_ready"]))
    else:
        points.append((start, mk["api_ready"]))
    points.append(("flow run created", mk["flow_begin"]))
    points.append(("plan again inside the flow (DVC status)", mk.get("planned", mk["flow_begin"])))
    first = next((s for s in ("prepare", "train", "export") if s in done), None)
    if first is None:  # nothing ran on the worker pool (gate/publish run in the flow process)
        first = next((s for s in ("gate", "publish") if s in done), None)
        if api_runs and first in api_runs:
            points.append(("until the first task starts", api_runs[first]["start"]))
        first = None
    elif api_runs and first in api_runs:
        points.append(("until the first task starts",
                       api_runs[first]["start"]))
    spawn_in_first = first is not None and not (api_runs and first in api_runs)
    for step in ("prepare", "train", "export"):
        if step in done:
            label = f"task {step}"
            if spawn_in_first and step == first:
                label = f"worker spawn + TensorFlow import + task {step}"
            elif step == first:  # the task starts at once and waits for its worker
                label = f"task {step} (incl. waiting for a worker's TensorFlow import)"
            points.append((label, done[step]))
    quantize = [t for k, t in done.items() if k.startswith("quantize-")]
    if quantize:
        points.append((f"tasks quantize x{len(quantize)} (2 workers)", max(quantize)))
    for step in ("gate", "publish"):
        if step in done:
            label = f"task {step}"
            if spawn_in_first and step == first:
                label = f"worker spawn + TensorFlow import + task {step}"
            points.append((label, done[step]))
    if "flow_end" in mk:
        points.append(("after tasks: DVC commit + push, flow end", mk["flow_end"]))
    points.append(("after flow: summary, server stop, exit", m.wall_seconds))
    out, prev = [], 0.0
    for label, t in points:
        out.append((label, round(max(t - prev, 0.0), 3)))
        prev = max(prev, t)
    return out


def max_overlap(api_runs: dict[str, dict] | None, prefix: str = "quantize-") -> int | None:
    """Most tasks of one kind running at the same moment (2 = both workers busy)."""
    if not api_runs:
        return None
    edges = sorted([(r["start"], 1) for k, r in api_runs.items() if k.startswith(prefix)]
                   + [(r["end"], -1) for k, r in api_runs.items() if k.startswith(prefix)],
                   key=lambda e: (e[0], e[1]))
    best = level = 0
    for _, step in edges:
        level += step
        best = max(best, level)
    return best
