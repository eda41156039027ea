"""The auto kind's search over per-layer precisions, apart from any model or file.

A candidate is ``{layer: precision}`` for the layers moved out of int8. The search asks
``evaluate`` (build the candidate, measure it, gate it) as rarely as it can: full int8 first;
then, along a ranking of the layers, the shortest prefix that passes when moved to the next
precision (binary search, one precision after another), pruned by putting each chosen layer
back to int8 in reverse order; when no prefix passes, greedy with step-back along the same
ranking. Results are cached by candidate, and the budget (evaluations, wall time) stops it
with the best candidate so far. Plain Python, so its logic is tested without TensorFlow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Candidate = dict[str, str]


@dataclass(frozen=True)
class Outcome:
    """What the gate said of one candidate, and what the objective and report need of it."""

    passed: bool
    drop: float | None
    size_bytes: int | None
    latency_ms: float | None
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tried:
    candidate: Candidate
    outcome: Outcome
    stage: str
    seconds: float


def _key(c: Candidate) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((s, p) for s, p in c.items() if p != "int8"))


@dataclass
class Search:
    evaluate: Callable[[Candidate], Outcome]
    max_evaluations: int
    timeout_seconds: float
    objective: str = "smallest_size"
    tried: list[Tried] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)
    _cache: dict[Any, Outcome] = field(default_factory=dict)

    @property
    def exhausted(self) -> bool:
        return (len(self.tried) >= self.max_evaluations
                or time.monotonic() - self.start >= self.timeout_seconds)

    def passes(self, candidate: Candidate, stage: str) -> bool | None:
        """The gate's answer, from the cache when this recipe was built before; None when
        the budget is spent."""
        key = _key(candidate)
        if key not in self._cache:
            if self.exhausted:
                return None
            t0 = time.monotonic()
            self._cache[key] = self.evaluate(dict(key))
            self.tried.append(Tried(dict(key), self._cache[key], stage, time.monotonic() - t0))
        return self._cache[key].passed

    def run(self, rank: Callable[[], list[str]], precisions: list[str]) -> None:
        """Full int8; if it fails, rank (only then), bisect each higher precision, prune."""
        if self.passes({}, "full int8") is not False:
            return
        order = rank()
        for precision in precisions[1:]:
            k = self.bisect(order, precision)
            if k is not None:
                self.prune({s: precision for s in order[:k]}, order[:k])
                return
            if self.exhausted:
                return
        self.greedy(order, precisions)

    def bisect(self, order: list[str], precision: str) -> int | None:
        """The shortest passing prefix, assuming that a longer prefix passes when a shorter
        one does (what ranking by own error is meant to make true); None if none does."""
        if not order or not self.passes({s: precision for s in order}, f"all {precision}"):
            return None
        lo, hi = 0, len(order)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ok = self.passes({s: precision for s in order[:mid]}, f"bisect {precision}")
            if ok is None:
                break
            lo, hi = (lo, mid) if ok else (mid, hi)
        return hi

    def prune(self, current: Candidate, chosen: list[str]) -> None:
        """Back to int8, one chosen layer at a time, lowest ranked first, while it passes."""
        for scope in reversed(chosen):
            trial = {s: p for s, p in current.items() if s != scope}
            ok = self.passes(trial, "prune")
            if ok is None:
                return
            if ok:
                current = trial

    def greedy(self, order: list[str], precisions: list[str]) -> None:
        """Move layers up one at a time in rank order, keeping a move only when it lowers the
        drop (else step back to int8), until a candidate passes."""
        current: Candidate = {}
        best = self._drop({})
        for scope in order:
            for precision in precisions[1:]:
                trial = {**current, scope: precision}
                ok = self.passes(trial, "greedy")
                if ok is None or ok:
                    return
                if self._drop(trial) < best:
                    current, best = trial, self._drop(trial)
                    break

    def _drop(self, c: Candidate) -> float:
        got = self._cache.get(_key(c))
        return math.inf if got is None or got.drop is None else got.drop

    def best(self) -> Tried | None:
        """The passing candidate with the fewest layers out of int8, the objective breaking
        ties (the size or speed int8 was chosen for; a fully int16 model can come out smaller
        than a mixed one, whose precision boundaries cost requantize ops, yet it is not what
        the search is for); with none passing, the one with the smallest drop."""
        if not self.tried:
            return None
        passing = [t for t in self.tried if t.outcome.passed]
        if passing:
            attr = "latency_ms" if self.objective == "lowest_latency" else "size_bytes"
            return min(passing, key=lambda t: (len(t.candidate),
                                               getattr(t.outcome, attr) or math.inf))
        return min(self.tried, key=lambda t: (t.outcome.drop if t.outcome.drop is not None
                                              else math.inf, len(t.candidate)))
