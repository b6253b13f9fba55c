"""The environment a result was measured in, recorded beside every result."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path


def trainstab_version() -> str:
    """The installed trainstab version ("unknown" when run from a bare source tree)."""
    try:
        return metadata.version("trainstab")
    except metadata.PackageNotFoundError:
        return "unknown"


def installed_torch() -> str:
    """The installed torch's version, read from its metadata without importing it ("not installed" if none)."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "not installed"


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
    return {
        "trainstab": trainstab_version(),
        "torch": installed_torch(),
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "seed": seed,
    }


#: What a rerun on the same machine gives, by device kind.
REPRODUCIBILITY = {
    "cpu": "bit-exact on the same CPU kernel set",
    # PyTorch's reproducibility notes promise this much with deterministic algorithms on; trainstab's own tests
    # run on the CPU only.
    "cuda": "deterministic algorithms on: repeatable on the same GPU model, driver and torch build, not across them",
}


def environment(
    seed: int,
    threads_per_stack: int,
    workers: int,
    device: str = "cpu",
    precision: str = "fp32",
    nondeterministic: Sequence[str] = (),
) -> dict[str, object]:
    """Versions, CPU, device and parallelism of this process, and the seed of the run.

    ``workers`` 0 means the stacks were trained by Ray tasks, on whatever nodes the cluster gave them.
    ``nondeterministic`` names the ops that ran without a deterministic kernel: such a run is not repeatable.
    """
    import torch  # here, not at the top: the pytest plugin's header uses the light functions above

    kind = device.split(":")[0]
    if kind == "cpu":
        device_name = cpu_model()
    elif torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = "a GPU of the Ray cluster"  # the driver has none; the tasks ran on the cluster's
    return {
        "trainstab": trainstab_version(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads_per_stack": threads_per_stack,
        "workers": workers,
        "device": device,
        "device_name": device_name,
        "precision": precision,
        "reproducibility": (
            f"not repeatable: no deterministic kernel for {', '.join(nondeterministic)}"
            if nondeterministic
            else REPRODUCIBILITY[kind]
        ),
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
