"""The worker side of ``quantflow.orchestration.pool``: warm up once, then run jobs from a pipe.

Log records of the ``quantflow`` loggers go up the pipe instead of to this process's handlers:
the parent re-emits them in the thread that waits for the job, which is inside the job's Prefect
task run. Nothing here imports Prefect or TensorFlow (the initializer brings TensorFlow).
"""

from __future__ import annotations

import copy
import ctypes
import gc
import logging
import logging.handlers
import os
import pickle
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class _PipeHandler(logging.handlers.QueueHandler):
    """Sends log records to the parent, their message formatted first (args may not pickle).
    Unlike QueueHandler a traceback travels apart, as ``exc_text``: the parent's handlers
    decide where it goes (the run log keeps it, the terminal leaves it out)."""

    def __init__(self, send: Callable[[tuple[str, Any]], None]) -> None:
        super().__init__(None)  # type: ignore[arg-type] - enqueue is overridden
        self._send = send

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args, record.exc_info = record.getMessage(), None, None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        self._send(("log", record))


def portable(exc: BaseException) -> BaseException:
    """The job's exception, picklable and carrying this process's traceback as a note (the
    traceback itself does not cross the pipe)."""
    exc.add_note("in the worker process:\n" + "".join(traceback.format_exception(exc)))
    # The note holds the chain as text. The objects stay here: with tblib installed (dask's
    # distributed brings it, and importing TensorFlow turns its pickling on) the cause and
    # traceback would pickle too, and unpickling a TensorFlow exception imports TensorFlow.
    exc.__cause__ = exc.__context__ = exc.__traceback__ = None
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - an exception type that does not pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def release_memory() -> None:
    """Hand the heap a finished step freed back to the system. glibc keeps freed memory for
    reuse, so a worker that exported a model held ~250 MB more than it used (measured on
    MobileNetV2: 1,089 -> 828 MB) while the other worker's QAT peaked: the run's peak is the
    sum of its processes."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def serve(conn: Connection, initializer: Callable[[], None] | None) -> None:
    """A worker's life: the initializer once, "ready", then one job after another until the
    parent closes the pipe. A job's exception is a reply like any other."""
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with lock:  # a record logged by another thread must not interleave with a reply
            conn.send(message)

    try:
        if initializer is not None:
            initializer()
    except BaseException as exc:  # noqa: BLE001 - reported to the job waiting for us
        send(("error", portable(exc)))
        return
    logger = logging.getLogger("quantflow")
    logger.addHandler(_PipeHandler(send))
    logger.propagate = False  # the parent's handlers (Prefect's among them) take them
    send(("ready", os.getpid()))
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - the job's failure, not the worker's
            reply = ("error", portable(exc))
        try:
            send(reply)
        except Exception as exc:  # noqa: BLE001 - e.g. a result that does not pickle
            send(("error", RuntimeError(f"the job's result could not be sent: {exc!r}")))
        del fn, args, reply
        release_memory()  # after the reply: the flow need not wait for it
