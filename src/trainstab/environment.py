"""The environment a result was measured in, recorded beside every result."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def trainstab_version() -> str:
    """The installed trainstab version ("unknown" when run from a bare source tree)."""
    try:
        return metadata.version("trainstab")
    except metadata.PackageNotFoundError:
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name, as the OS reports it."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def light_environment(seed: int) -> dict[str, object]:
    """The fields a baseline's environment is compared on, without importing torch (for pytest's header)."""
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return {
        "trainstab": trainstab_version(),
        "torch": torch_version,
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "seed": seed,
    }


def environment(seed: int, threads_per_stack: int, workers: int) -> dict[str, object]:
    """Versions, CPU and parallelism of this process, and the seed of the run."""
    import torch  # here, not at the top: the pytest plugin's header uses the light functions above

    return {
        "trainstab": trainstab_version(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads_per_stack": threads_per_stack,
        "workers": workers,
        "seed": seed,
    }


def available_cores() -> int:
    """Cores this process may use: its affinity mask, shared among pytest-xdist workers.

    Under ``pytest -n N`` every worker gets its share of the cores (at least
    one), so N workers never start N x cores training processes.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    xdist_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, cores // max(1, xdist_workers))
