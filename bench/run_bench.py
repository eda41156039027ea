"""The quantflow benchmark, one command (see BENCHMARKS.md):

    python bench/run_bench.py            # full run: both workloads, scaling, profile
    python bench/run_bench.py --quick    # smoke run, < 5 minutes on a quiet 2-core machine

In one run on one machine it measures, for each workload (bench/_workloads.py: the seed CNN of
pipelines.yaml `mnist`, and a MobileNetV2 brought as a builder file with its data as an .npz),
its plain sequential script and `quantflow run` of the same experiment in throw-away
workspaces (git + DVC): cold with the ephemeral server, cold with an already-running server,
warm after changing only a gate threshold (both servers), a no-op re-run (and whether it
imported TensorFlow or Prefect), peak RSS of the whole process tree; for the seed CNN also the
scaling curve over 1/2/4/8 variants, latency repeatability and the profile of the fixed costs.
Every measurement is recorded with the load average. Results: bench/out/results.json and
bench/out/results.md; the logs of every run: bench/out/logs/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import _checks
import _extras
from _bench import OUT, PY, Bench, log
from _sequence import sequence
from _workloads import WORKLOADS


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Smoke run: seed CNN on 2,000/500 "
                    "images; MobileNetV2 on 1,000/250 with 2 variants (dynamic_range, int8; no "
                    "QAT), cold with the running server only; the plain scripts once; no "
                    "latency repeat, profile or scaling.")
    ap.add_argument("--workloads", type=lambda s: s.split(","), default=list(WORKLOADS),
                    help=f"Comma-separated, of {', '.join(WORKLOADS)} (default: both).")
    ap.add_argument("--threads", type=int, default=1, help="Interpreter threads for latency.")
    ap.add_argument("--scaling", type=lambda s: [int(x) for x in s.split(",")],
                    help="Variant counts of the seed CNN's scaling curve (default 1,2,4,8).")
    ap.add_argument("--plain-once", action="store_true", help="Run each plain script once, "
                    "not first and last (a shorter full run; the reference is then noisier).")
    ap.add_argument("--echo", action="store_true", help="Stream every run's output.")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary workspaces.")
    ap.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                    help="Measure nothing: recompute the checks and tables of a results.json.")
    args = ap.parse_args()
    unknown = [k for k in args.workloads if k not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    args.scaling = args.scaling or [1, 2, 4, 8]
    return args


def quantflow_code(env: dict[str, str]) -> str:
    """Where the measured `quantflow` processes import quantflow from."""
    out = subprocess.run([PY, "-c", "import quantflow; print(quantflow.__file__)"], env=env,
                         capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()[-300:]


def report(res: dict) -> None:
    """Checks and tables from the raw results, which are on disk first: a bug here must not
    cost the measurements (re-run with --render bench/out/results.json)."""
    import _render

    res["checks"] = _checks.all_checks(res)
    (OUT / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (OUT / "results.md").write_text(_render.markdown(res))
    print(_render.text(res))


def main() -> None:
    args = parse_args()
    if args.render:
        return report(json.loads(args.render.read_text()))
    started, version = datetime.now(UTC), _extras.code_version()
    tmp = Path(tempfile.mkdtemp(prefix="quantflow-bench-"))
    b = Bench(args, tmp)
    log(f"workspaces in {tmp}; results to {OUT}; quantflow from {quantflow_code(b.env)}")
    try:
        res = sequence(b)
    except BaseException:
        # What was measured before the failure is kept for a look, not for a report.
        (OUT / "results.partial.json").write_text(json.dumps(b.runs, indent=2, default=str))
        raise
    finally:
        if b.server:
            b.server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    res.update(runs=b.runs, machine=_extras.machine(), code=version,
               quantflow_code=quantflow_code(b.env),
               date=started.isoformat(timespec="seconds"),
               command=" ".join(["python", "bench/run_bench.py", *sys.argv[1:]]),
               settings={k: v for k, v in vars(args).items()},
               total_seconds=round((datetime.now(UTC) - started).total_seconds(), 1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    report(res)


if __name__ == "__main__":
    main()
