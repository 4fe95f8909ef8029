"""How many CPU threads torch uses: the count given, else ``ALVA_THREADS``, else ``OMP_NUM_THREADS``, else the
cores that other jobs leave free, measured when the command starts.

torch starts one intra-op thread per core. On a machine where other jobs already run, those threads compete with
the jobs for the same cores: every parallel region waits for its slowest thread, which waits for the scheduler,
and work that would take a minute on the idle machine takes several (2-20x slower in APGD and differential
evolution on 2 shared cores). Taking only the cores that are free avoids that, and on an idle machine it is
torch's own choice.

The rule is a pure function of what the machine reports (:func:`free_cores`, :func:`choose_threads`); the
functions that read the machine (:func:`usable_cores`, :func:`other_load`) and :func:`set_threads`, which applies
the choice, are thin.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

ENV_VAR = "ALVA_THREADS"
"""The environment variable that sets the thread count of every ``alva`` command (``--threads`` wins)."""

__all__ = ["ENV_VAR", "CpuTimes", "ThreadChoice", "ThreadCountError", "allowed_cpus", "busy_cores", "cgroup_cores",
           "choose_threads", "configured_threads", "free_cores", "local_processes", "other_load", "parse_count",
           "parse_cpu_times", "set_threads", "usable_cores"]


class ThreadCountError(ValueError):
    """A thread count that is not a whole number of at least 1 (given, or in the environment)."""


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen and where it came from: ``"given"``, ``"ALVA_THREADS"``, ``"OMP_NUM_THREADS"`` or
    ``"free cores"``."""

    threads: int
    source: str


def parse_count(text: str, name: str) -> int:
    """``text`` as a thread count (a whole number >= 1); ``name`` says where it came from in the error.

    Raises:
        ThreadCountError: ``text`` is not a whole number, or is below 1.
    """
    try:
        count = int(text.strip())
    except ValueError:
        raise ThreadCountError(f"{name} must be a whole number >= 1, got {text!r}") from None
    if count < 1:
        raise ThreadCountError(f"{name} must be a whole number >= 1, got {text!r}")
    return count


def free_cores(cores: int, load: float, host_cores: int | None = None) -> int:
    """The cores of ``cores`` that other jobs leave free: ``cores`` minus ``load``, rounded to the nearest whole
    core, at least 1.

    Args:
        cores: The cores this process may use (its CPU affinity or container quota).
        load: How many cores other jobs keep busy (see :func:`other_load`).
        host_cores: The cores ``load`` was measured over, when they are more than ``cores`` (a container's
            quota of a larger machine; the load average of a whole machine for a process pinned to some of its
            cores): the load is taken to be spread evenly, so the share on ``cores`` is
            ``load * cores / host_cores``. Default: ``cores``.
    """
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    host = cores if host_cores is None else max(host_cores, cores)
    busy = max(0.0, load) * cores / host
    return max(1, math.floor(cores - busy + 0.5))


def configured_threads(given: int | None, environ: Mapping[str, str]) -> ThreadChoice | None:
    """The thread count set by the user: ``given`` if set, else ``ALVA_THREADS``, else ``OMP_NUM_THREADS`` (torch's
    own setting); None where none is set.

    Args:
        given: The count the user gave (``--threads``), or None.
        environ: The environment (``ALVA_THREADS``, ``OMP_NUM_THREADS``).

    Raises:
        ThreadCountError: ``given`` is below 1, or ``ALVA_THREADS`` is not a whole number >= 1.
    """
    if given is not None:
        if given < 1:
            raise ThreadCountError(f"threads must be >= 1, got {given}")
        return ThreadChoice(given, "given")
    if environ.get(ENV_VAR, "") != "":
        return ThreadChoice(parse_count(environ[ENV_VAR], ENV_VAR), ENV_VAR)
    try:  # torch's own variable; a value torch would not take either leaves the choice to the free cores
        return ThreadChoice(parse_count(environ.get("OMP_NUM_THREADS", ""), "OMP_NUM_THREADS"), "OMP_NUM_THREADS")
    except ThreadCountError:
        return None


def choose_threads(given: int | None, environ: Mapping[str, str], cores: int, load: float,
                   host_cores: int | None = None, processes: int = 1) -> ThreadChoice:
    """The thread count of a process: the one the user set (:func:`configured_threads`), else its share of the
    free cores (:func:`free_cores` divided among the ``processes`` that ``torchrun`` started on this machine, at
    least 1).

    Args:
        given: The count the user gave (``--threads``), or None.
        environ: The environment (``ALVA_THREADS``, ``OMP_NUM_THREADS``).
        cores: The cores this process may use.
        load: How many cores other jobs keep busy.
        host_cores: The cores ``load`` was measured over (see :func:`free_cores`).
        processes: The processes on this machine that share the free cores (``LOCAL_WORLD_SIZE`` of torchrun).

    Raises:
        ThreadCountError: ``given`` is below 1, or ``ALVA_THREADS`` is not a whole number >= 1.
    """
    configured = configured_threads(given, environ)
    if configured is not None:
        return configured
    return ThreadChoice(max(1, free_cores(cores, load, host_cores) // max(1, processes)), "free cores")


def cgroup_cores(text: str) -> int | None:
    """The cores a cgroup v2 CPU quota allows (``cpu.max`` holds ``QUOTA PERIOD``, or ``max PERIOD`` for none),
    rounded up; None without a quota."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system reports it (else every core), capped
    by a container's CPU quota."""
    cores = len(allowed_cpus())
    try:
        quota = cgroup_cores(Path("/sys/fs/cgroup/cpu.max").read_text())
    except OSError:
        quota = None
    return max(1, min(cores, quota or cores))


CpuTimes = dict[int, tuple[int, int]]
"""Each CPU's (busy, total) time since boot, in clock ticks (``/proc/stat``)."""


def parse_cpu_times(text: str) -> CpuTimes:
    """The ``cpuN`` lines of ``/proc/stat``: busy time is every column but idle and I/O wait (the 4th and 5th);
    the guest columns, already counted in user time, are left out."""
    times = {}
    for line in text.splitlines():
        name, *columns = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(c) for c in columns[:8]]
            total = sum(ticks)
            times[int(name[3:])] = (total - sum(ticks[3:5]), total)
    return times


def busy_cores(before: CpuTimes, after: CpuTimes, cpus: set[int]) -> float:
    """How many of ``cpus`` were busy between two readings of :func:`parse_cpu_times`: the sum of each one's busy
    share of the time (a CPU with no ticks in between counts as idle)."""
    busy = 0.0
    for cpu in cpus & before.keys() & after.keys():
        ticks = after[cpu][1] - before[cpu][1]
        if ticks > 0:
            busy += min(1.0, max(0.0, (after[cpu][0] - before[cpu][0]) / ticks))
    return busy


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (all of them where the system does not say)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def other_load(processes: int = 1, window_s: float = 0.2) -> tuple[float, int]:
    """How busy other jobs keep the CPUs this process may use, and over how many CPUs that was measured: the busy
    CPUs of ``/proc/stat`` over ``window_s`` seconds, less the other ``processes - 1`` processes of this run
    (torchrun's, busy starting up); where there is no ``/proc/stat``, the 1-minute load average of the whole
    machine. The load of the moment, not an average: jobs that have just started count fully, and jobs that have
    just ended (a previous command) not at all. This process, waiting while it measures, adds nothing."""
    cpus = allowed_cpus()
    try:
        before = parse_cpu_times(Path("/proc/stat").read_text())
        time.sleep(window_s)
        after = parse_cpu_times(Path("/proc/stat").read_text())
    except (OSError, ValueError):
        before = after = {}
    if cpus & before.keys():
        return max(0.0, busy_cores(before, after, cpus) - (processes - 1)), len(cpus)
    try:
        return os.getloadavg()[0], os.cpu_count() or 1
    except (OSError, AttributeError):
        return 0.0, 1


def local_processes(environ: Mapping[str, str]) -> int:
    """The processes ``torchrun`` started on this machine (``LOCAL_WORLD_SIZE``); 1 outside torchrun."""
    try:
        return max(1, int(environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def set_threads(given: int | None = None, environ: Mapping[str, str] | None = None) -> ThreadChoice:
    """Choose the thread count (:func:`choose_threads`, from this machine's cores and load) and set torch's
    intra-op threads to it, and its inter-op threads too where torch still allows (before any parallel work).

    Args:
        given: The count the user gave, or None to choose.
        environ: The environment to read (default: the process's).

    Raises:
        ThreadCountError: ``given`` is below 1, or ``ALVA_THREADS`` is not a whole number >= 1.
    """
    environ = os.environ if environ is None else environ
    choice = configured_threads(given, environ)
    if choice is None:  # only then is the machine measured (0.2 s)
        processes = local_processes(environ)
        load, measured_over = other_load(processes)
        choice = choose_threads(None, environ, usable_cores(), load, measured_over, processes)
    torch.set_num_threads(choice.threads)
    if torch.get_num_interop_threads() != choice.threads:
        try:
            torch.set_num_interop_threads(choice.threads)
        except RuntimeError:  # torch refuses once inter-op work has started; its pool then stays as it is
            pass
    return choice
