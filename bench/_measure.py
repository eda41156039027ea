"""Run one command and measure it: wall time, summed RSS/PSS of its whole process tree, and every
output line with the second it arrived (the timeline the phase breakdown is read from)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RSS_EVERY = 0.1  # seconds between RSS samples of the process tree
PSS_EVERY = 1.0  # PSS reads smaps_rollup (page-table walk): sampled less often


def loadavg() -> str:
    """The 1/5/15-minute load averages, recorded next to every measurement."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Measured:
    label: str
    cmd: list[str]
    returncode: int
    wall_seconds: float
    peak_rss_mb: float
    peak_pss_mb: float | None
    max_processes: int
    loadavg_before: str
    loadavg_after: str
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (t, stream, text)
    processes: dict[int, str] = field(default_factory=dict)  # pid -> short cmdline
    peak_rss_each_mb: dict[str, float] = field(default_factory=dict)  # "pid name" -> own peak
    extra_rss_mb: float | None = None  # a process outside the tree (a running server)
    started_epoch: float = 0.0  # wall clock at start, to place API timestamps on our clock

    def summary(self) -> dict:
        keep = ("label", "cmd", "returncode", "wall_seconds", "peak_rss_mb", "peak_pss_mb",
                "max_processes", "loadavg_before", "loadavg_after", "extra_rss_mb")
        out = {k: getattr(self, k) for k in keep}
        out["processes"] = sorted(set(self.processes.values()))
        out["peak_rss_each_mb"] = self.peak_rss_each_mb
        return out


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _short(p: psutil.Process) -> str:
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "?"
    args = [a for a in cmd[1:] if not a.startswith("-")] if cmd else []
    name = Path(cmd[0]).name if cmd else p.name()
    if name.startswith("python") and args:
        name = Path(args[0]).name if "/" in args[0] else args[0]
        args = args[1:]
    return " ".join([name, *args[:2]])[:60]


class Sampler(threading.Thread):
    """Polls a process tree until stopped; keeps the peak of the summed RSS (and PSS)."""

    def __init__(self, pid: int, extra_pid: int | None = None):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.extra = psutil.Process(extra_pid) if extra_pid else None
        self.peak_rss = self.peak_pss = self.peak_extra = 0
        self.max_procs, self.names = 0, {}
        self.peak_each: dict[int, int] = {}  # pid -> its own peak RSS (who holds the memory)
        self.stop_event, self.pss_ok = threading.Event(), True

    def run(self) -> None:
        next_pss = 0.0
        while not self.stop_event.is_set():
            procs = _tree(self.root)
            self.max_procs = max(self.max_procs, len(procs))
            rss = 0
            for p in procs:
                try:
                    own = p.memory_info().rss
                    rss += own
                    self.peak_each[p.pid] = max(self.peak_each.get(p.pid, 0), own)
                    if p.pid not in self.names:
                        self.names[p.pid] = _short(p)
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            if self.extra is not None:
                extra = 0
                for p in _tree(self.extra):
                    try:
                        extra += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak_extra = max(self.peak_extra, extra)
            if self.pss_ok and time.monotonic() >= next_pss:
                next_pss = time.monotonic() + PSS_EVERY
                self.peak_pss = max(self.peak_pss, self._pss(procs))
            self.stop_event.wait(RSS_EVERY)

    def _pss(self, procs: list[psutil.Process]) -> int:
        total = 0
        for p in procs:
            try:
                total += p.memory_full_info().pss
            except AttributeError:
                self.pss_ok = False
                return 0
            except psutil.Error:
                pass
        return total


def _pump(stream, name: str, start: float, lines: list, echo: bool) -> None:
    for raw in iter(stream.readline, ""):
        text = raw.rstrip("\n")
        lines.append((round(time.perf_counter() - start, 3), name, text))
        if echo:
            print(f"      {time.perf_counter() - start:7.2f}s {name[:3]} | {text}", flush=True)
    stream.close()


def run(label: str, cmd: list[str], cwd: Path, env: dict[str, str], *, echo: bool = False,
        extra_pid: int | None = None, timeout: float = 1800) -> Measured:
    """Run ``cmd`` to completion under the sampler; never raises on a non-zero exit."""
    before = loadavg()
    started_epoch, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    sampler = Sampler(proc.pid, extra_pid)
    sampler.start()
    lines: list[tuple[float, str, str]] = []
    pumps = [threading.Thread(target=_pump, args=(s, n, start, lines, echo), daemon=True)
             for s, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
    for t in pumps:
        t.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    wall = time.perf_counter() - start
    for t in pumps:
        t.join(timeout=10)
    sampler.stop_event.set()
    sampler.join()
    mb = 1024 * 1024
    return Measured(
        label=label, cmd=[str(c) for c in cmd], returncode=proc.returncode,
        wall_seconds=round(wall, 3), peak_rss_mb=round(sampler.peak_rss / mb, 1),
        peak_pss_mb=round(sampler.peak_pss / mb, 1) if sampler.pss_ok else None,
        max_processes=sampler.max_procs, loadavg_before=before, loadavg_after=loadavg(),
        lines=sorted(lines, key=lambda x: x[0]), processes=dict(sampler.names),
        peak_rss_each_mb={f"{pid} {sampler.names.get(pid, '?')}": round(v / mb, 1)
                          for pid, v in sorted(sampler.peak_each.items(), key=lambda x: -x[1])
                          if v >= 20 * mb},
        extra_rss_mb=round(sampler.peak_extra / mb, 1) if extra_pid else None,
        started_epoch=started_epoch,
    )


def clean_env(**overrides: str | None) -> dict[str, str]:
    """This environment with overrides applied (None removes a variable)."""
    env = dict(os.environ)
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env
