"""quantflow: declarative, versioned, scheduled TFLite quantization pipelines."""

import sys as _sys

__version__ = "0.1.0"

if "from multiprocessing.spawn import spawn_main" in " ".join(getattr(_sys, "orig_argv", [])):
    # A spawned task worker, importing the run's main module: from here on it ignores the
    # terminal's Ctrl-C (sent to the whole process group), not only from its initializer some
    # seconds of imports later. The run handles Ctrl-C and kills it (orchestration/shutdown.py).
    import signal as _signal

    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
