"""quantflow: declarative, versioned, scheduled TFLite quantization pipelines."""

import sys as _sys

__version__ = "0.1.0"

if "from multiprocessing.spawn import spawn_main" in " ".join(getattr(_sys, "orig_argv", [])):
    # A spawned task worker, importing the run's main module: from here on it is out of the
    # run's process group (in a session of its own) and ignores Ctrl-C, not only from its
    # initializer some seconds of imports later, so the terminal's Ctrl-C and a SIGTERM sent to
    # the group reach the run only. The run records the stop, then kills its workers
    # (orchestration/shutdown.py); they die with it in any case (PR_SET_PDEATHSIG).
    import os as _os
    import signal as _signal

    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    if _os.getsid(0) != _os.getpid():
        _os.setsid()
