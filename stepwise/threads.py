"""How many intra-op threads to use: the cores other processes leave free, measured, not assumed.

torch's intra-op pool meets at a barrier after every operator, so each operator takes as long as its
slowest thread. When another process holds one core, the thread sharing that core runs in the
scheduler's slices and every operator waits for it: on 2 cores, training with 2 threads ran 4.6× slower
beside one busy loop, while 1 thread lost 7%. So a run counts the cores other processes keep busy and
uses the rest; it counts again at every log step and follows the machine.

The count comes from the kernel's per-CPU time counters (`/proc/stat`), minus this process's own CPU
time over the same interval. Why not a timed matmul at 1 and N threads: it costs the CPU time it
measures, it cannot run mid-training without stalling the run, and one timing is as noisy as the load
it is trying to see. Counters cost nothing, so the re-check between two log steps is free: it reads
the interval the run has just trained through. Time spent in niced processes is not counted while this
process runs at normal priority: the scheduler gives such a process ~1.5% of a core that we also want.

Where there is no `/proc/stat` (macOS, Windows) every allowed core is used, as torch does.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: a core counts as taken once other processes use this much of it: at that share, the barrier waits
#: cost 2 threads more than the second thread gains (bench/busy_host.py has the measurements)
TAKEN_SHARE = 0.35
PROBE_SECONDS = 0.2
#: the counters tick at USER_HZ (100/s): below this interval a re-check reads noise
MIN_RECHECK_SECONDS = 1.0


def allowed_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


@dataclass(frozen=True)
class Sample:
    """CPU counters at one moment: others' busy ticks on our CPUs, our own CPU seconds, the wall clock."""

    busy: float
    own: float
    wall: float


def _cpu_ids() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def sample() -> Sample | None:
    """Now's counters; None where the kernel does not publish them."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    allowed, niced = _cpu_ids(), os.nice(0) > 0
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if allowed is not None and int(name[3:]) not in allowed:
            continue
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        busy += user + system + irq + softirq + steal + (nice if niced else 0)
    own = time.process_time()
    return Sample(busy / os.sysconf("SC_CLK_TCK"), own, time.monotonic())


def others_load(before: Sample, after: Sample) -> float:
    """Cores' worth of CPU that other processes (and the hypervisor's steal) used between two samples."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / wall)


def threads_for(others: float, cores: int) -> int:
    """Every allowed core but those other processes hold (a core is held from TAKEN_SHARE of it on)."""
    return max(1, min(cores, cores - math.floor(others + 1 - TAKEN_SHARE)))


def probe(seconds: float = PROBE_SECONDS) -> tuple[int, float]:
    """(threads to use, others' load in cores), measured over `seconds` of sleep."""
    cores, first = allowed_cores(), sample()
    if first is None:
        return cores, 0.0
    time.sleep(seconds)
    load = others_load(first, sample())
    return threads_for(load, cores), load


@dataclass
class ThreadGovernor:
    """Sets torch's thread count from measurement at the start and after every re-check; logs each change.

    `forced` (the user's --threads) switches measuring off. `share` divides the free cores between the
    processes of one machine (serve workers). `changes` is what results.json reports.
    """

    forced: int | None = None
    share: int = 1
    threads: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    _last: Sample | None = None
    _first: Sample | None = None

    @property
    def mode(self) -> str:
        return "forced" if self.forced else "measured"

    def begin(self) -> None:
        """Start counting now: work done until `start` (reading data, loading the model) is the probe's
        interval instead of a sleep, since our own CPU time is subtracted anyway."""
        self._first = sample()

    def start(self, at_step: int = 0) -> int:
        """Set the thread count: forced, or measured since `begin` (topped up to PROBE_SECONDS by a sleep)."""
        import torch

        if self.forced:
            self.threads = self.forced
            self.changes.append({"step": at_step, "threads": self.forced, "reason": "--threads"})
        else:
            if self._first is None:
                threads, load = probe()
            else:
                if (wait := PROBE_SECONDS - (time.monotonic() - self._first.wall)) > 0:
                    time.sleep(wait)
                load = others_load(self._first, sample())
                threads = threads_for(load, allowed_cores())
            self.threads = max(1, threads // self.share)
            self.changes.append({"step": at_step, "threads": self.threads, "others_load": round(load, 2),
                                 "reason": "start"})
        torch.set_num_threads(self.threads)
        self._last = sample()
        return self.threads

    def recheck(self, step: int) -> dict[str, Any] | None:
        """Count again over the interval since the last check; a change of thread count is returned and logged."""
        import torch

        if self.forced or self._last is None:
            return None
        now = sample()
        if now is None or now.wall - self._last.wall < MIN_RECHECK_SECONDS:
            return None
        load = others_load(self._last, now)
        self._last = now
        threads = max(1, threads_for(load, allowed_cores()) // self.share)
        if threads == self.threads:
            return None
        self.threads = threads
        torch.set_num_threads(threads)
        change = {"step": step, "threads": threads, "others_load": round(load, 2), "reason": "load changed"}
        self.changes.append(change)
        return change

    def report(self) -> dict[str, Any]:
        used = [c["threads"] for c in self.changes]
        return {"mode": self.mode, "start": used[0] if used else None, "final": self.threads,
                "min": min(used, default=None), "max": max(used, default=None), "changes": self.changes}
