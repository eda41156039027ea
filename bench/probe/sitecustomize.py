"""Benchmark probe, active only when QF_BENCH_PROBE_DIR is set (bench/run_bench.py puts this
folder on PYTHONPATH): every Python process of a measured run writes, at the moment it first
imports one of the heavy packages below, a record of which of them it has imported. Records are
written at import time, not at exit, so workers that are terminated still leave theirs. That is
how the benchmark shows that a no-op run never imports TensorFlow.
"""

import os

_DIR = os.environ.get("QF_BENCH_PROBE_DIR")
if _DIR:
    import json
    import sys

    _HEAVY = frozenset(("tensorflow", "tf_keras", "tensorflow_model_optimization",
                        "ai_edge_litert", "prefect", "dvc"))
    _seen: set = set()

    def _write() -> None:
        try:
            with open("/proc/self/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a][:4]
            with open(os.path.join(_DIR, f"{os.getpid()}.json"), "w") as f:
                json.dump({"pid": os.getpid(), "argv": argv, "imported": sorted(_seen)}, f)
        except OSError:
            pass

    class _Probe:
        """A meta-path finder that finds nothing: it only notes the first import of a package."""

        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if fullname in _HEAVY and fullname not in _seen:
                _seen.add(fullname)
                _write()
            return None

    sys.meta_path.insert(0, _Probe)
    _write()  # every Python process leaves a record, even one that imports none of them
