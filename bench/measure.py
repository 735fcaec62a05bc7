"""Run one command as a process tree and measure it: wall time, CPU time, peak memory per process.

CPU time is exact: the harness makes itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``),
so processes orphaned inside the tree (a fork server outliving its parent) are re-parented to it;
it reaps all of them, and ``getrusage(RUSAGE_CHILDREN)`` then holds the CPU of every process of
the tree. Memory is sampled every 50 ms with psutil over the harness's descendants: the kernel's
high-water mark per process (``VmHWM``, so peaks between samples are not missed) and the sum of
the resident sets (the total's peak is as good as the sampling).
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_INTERVAL = 0.05
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt the orphans of every process started from here on (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


@dataclass(frozen=True, slots=True)
class ProcessPeak:
    pid: int
    main: bool  # the process the command started, rather than one it started
    command: str
    peak_rss: int  # bytes


@dataclass(frozen=True, slots=True)
class Measurement:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + system of every process of the tree
    peaks: tuple[ProcessPeak, ...]
    peak_total_rss: int  # bytes, the largest sum of resident sets seen in one sample
    busy_s: float  # CPU seconds spent by the whole machine meanwhile (all processes, all cores)

    @property
    def main_peak(self) -> int:
        return max((p.peak_rss for p in self.peaks if p.main), default=0)

    @property
    def largest_other_peak(self) -> int:
        """The largest peak among the processes the main one started (0 when there are none)."""
        return max((p.peak_rss for p in self.peaks if not p.main), default=0)


def _status_kib(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of a process in KiB; (0, 0) when it is gone or a zombie."""
    hwm = rss = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return hwm, rss


@dataclass
class _Sampler:
    main_pid: int
    peaks: dict[int, int] = field(default_factory=dict)  # pid -> KiB
    commands: dict[int, str] = field(default_factory=dict)
    peak_total: int = 0  # KiB
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        total = 0
        for proc in psutil.Process().children(recursive=True):
            pid = proc.pid
            hwm, rss = _status_kib(pid)
            if hwm == 0:
                continue
            total += rss
            self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
            if pid not in self.commands:
                try:
                    self.commands[pid] = " ".join(proc.cmdline())[:160]
                except psutil.Error:
                    self.commands[pid] = "?"
        self.peak_total = max(self.peak_total, total)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(SAMPLE_INTERVAL)

    def result(self) -> tuple[ProcessPeak, ...]:
        return tuple(
            ProcessPeak(pid, pid == self.main_pid, self.commands.get(pid, "?"), kib * 1024)
            for pid, kib in sorted(self.peaks.items())
        )


def _reap_orphans() -> None:
    """Wait for every remaining child (orphans adopted as subreaper) so their CPU is counted."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _busy_machine() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def measure(command: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Measurement:
    """Run ``command`` to completion and measure its process tree."""
    _reap_orphans()
    cpu_before = _cpu_children()
    busy_before = _busy_machine()
    # Output goes to files: a pipe stays open as long as any grandchild holds it.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=out, stderr=err, env=dict(env), cwd=cwd)
        sampler = _Sampler(proc.pid)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        returncode = proc.wait()
        wall = time.perf_counter() - start
        _reap_orphans()
        busy = _busy_machine() - busy_before
        sampler.stop.set()
        thread.join()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return Measurement(
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        wall_s=wall,
        cpu_s=_cpu_children() - cpu_before,
        peaks=sampler.result(),
        peak_total_rss=sampler.peak_total * 1024,
        busy_s=busy,
    )
