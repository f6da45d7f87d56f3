"""CPU time of a process tree, from ``/proc``: what one acknowledgement or one turn costs in CPU.

Throughput on a shared two-core machine moves with whatever else runs on it; the CPU seconds a server
(and PostgreSQL) spent per request much less so, and they are what a capacity model needs (requests a
second per core). ``tree_cpu_seconds(pid)`` sums user and system time over ``pid`` and every descendant
alive now, plus the time of the children they have already reaped (``cutime``/``cstime``: a PostgreSQL
backend that exited is counted in the postmaster's). ``CpuMeter`` also reads how busy the whole machine
was (``/proc/stat``), so that each measurement says how many cores other work took meanwhile.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat(text: str) -> tuple[int, int]:
    """``(ppid, cpu ticks)`` of one ``/proc/<pid>/stat`` line: utime + stime + cutime + cstime."""
    # the command name (field 2) is in parentheses and may hold spaces: split after its closing one
    rest = text[text.rindex(")") + 2 :].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, utime + stime + cutime + cstime


def _table() -> dict[int, tuple[int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (0.0 when there is no such process)."""
    table = _table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        if current in table:
            total += table[current][1]
        todo.extend(children.get(current, []))
    return total / TICKS


def parse_machine(text: str) -> int:
    """Busy ticks of all cores from ``/proc/stat``'s first line: user, nice, system, irq, softirq and steal
    (the hypervisor's: time the cores were not ours either); not idle, not iowait."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in text.split()[1:9])
    return user + nice + system + irq + softirq + steal


def machine_busy_seconds() -> float:
    return parse_machine(Path("/proc/stat").read_text().splitlines()[0]) / TICKS


def own_seconds() -> float:
    """CPU seconds of this process (the benchmark's own driver)."""
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU seconds of some process trees between ``start`` and ``stop``, by name; and how busy the whole
    machine was meanwhile, so that what the rest of the machine took (``others_cores``) is known."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._before: dict[str, float] = {}
        self._machine = self._own = self._t0 = 0.0
        self.others_cores: float | None = None

    def start(self) -> None:
        self._before = {name: tree_cpu_seconds(pid) for name, pid in self._pids.items()}
        self._machine, self._own, self._t0 = machine_busy_seconds(), own_seconds(), time.monotonic()

    def stop(self, *, also: float = 0.0) -> dict[str, float]:
        """CPU seconds by name since ``start``; ``also``: CPU seconds of the run's other processes (e.g. a
        load generator that has exited), counted as the run's own in ``others_cores``."""
        now = {name: tree_cpu_seconds(pid) for name, pid in self._pids.items()}
        spent = {name: seconds - self._before.get(name, 0.0) for name, seconds in now.items()}
        wall = time.monotonic() - self._t0
        machine = machine_busy_seconds() - self._machine
        ours = sum(spent.values()) + also + own_seconds() - self._own
        self.others_cores = round(max(0.0, machine - ours) / wall, 2) if wall > 0 else None
        return {name: round(seconds, 3) for name, seconds in spent.items()}
