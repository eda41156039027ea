"""How many threads a TensorFlow step gets in its worker, decided per step, not per worker.

A worker's TensorFlow thread pools are sized once, when its runtime first starts, and never
again. The warm-up only imports TensorFlow (which does not start the runtime), so the first
step a worker runs sizes it: a step that runs alone or trains (prepare, train, export, QAT)
asks for every core, a post-training conversion, which runs beside others and is mostly one
thread of converter and interpreter anyway, for its share. A worker already sized keeps its
pools; the flow submits QAT first, so it takes the warm worker that trained (every core).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
_SIZED: list[int] = []  # this worker's thread count, once its runtime started


def for_step(heavy: bool, workers: int) -> int:
    """Every core for a step that trains or runs alone; a share of them otherwise."""
    cores = os.cpu_count() or 1
    return cores if heavy else max(1, cores // max(1, workers))


def apply(threads: int | None) -> int | None:
    """Size this worker's TensorFlow pools to ``threads`` if it is not sized yet; the count it
    has either way (None when no step asked)."""
    if threads is None or _SIZED:
        return _SIZED[0] if _SIZED else None
    from quantflow.core.tfenv import tf_modules

    tf, _ = tf_modules()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime started before any step (a library touched it)
        log.debug("TensorFlow already started: keeping its thread pools")
    _SIZED.append(threads)
    return threads
