"""Ray as the executor: every stack (or batch of fuzz points) is one Ray task, spread over a cluster.

Chosen with ``executor="ray"`` (``--trainstab-executor ray``, ini ``trainstab_executor``, CLI
``--executor ray``). Ray decides where tasks run; trainstab only submits them and gathers the results, so
there is no scheduler of ours. The cluster is the one ``RAY_ADDRESS`` names (``ray://host:10001`` or an
address ``ray start`` printed, or ``auto``); without it, a single-node Ray is started for this process,
listening on loopback only (:data:`LOOPBACK_ONLY`), and stops with it. A task trains exactly what a local
worker would (:func:`trainstab.sweep.train_stack`: one stack, one thread, its own seed), so the numbers are
the local executor's, bit for bit on the same machine type.

Each task asks for one CPU, and one GPU when the sweep trains on CUDA (Ray then shows the task its own GPU
as ``cuda``). The driver keeps the session cache, the persistent cache and the baselines: tasks get a
config and a list of LRs, and send back numbers. The model's module and the corpus file must be importable
and readable on the nodes (the driver's ``sys.path`` entries that exist on a node are added to the task's).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from trainstab.config import SweepConfig, on_gpu
from trainstab.engine import MemberRun
from trainstab.errors import TrainstabError

_Result = TypeVar("_Result")
#: Trains one stack of a sweep: ``trainstab.sweep.train_stack``, passed in (sweep is the caller).
TrainStack = Callable[[SweepConfig, list[float]], list[MemberRun]]

#: Ray's switch for a one-machine Ray (its default on macOS and Windows): the node is 127.0.0.1 and every Ray
#: server binds there. Without it a Linux Ray listens on every interface, even when told 127.0.0.1.
LOOPBACK_ONLY = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

#: How long the driver waits for a task between progress updates, in seconds.
POLL_SECONDS = 0.25


def ray_module() -> Any:
    """The ``ray`` module, connected: to ``RAY_ADDRESS`` when set, else to a loopback Ray started here."""
    address = os.environ.get("RAY_ADDRESS")
    if not address and "ray" not in sys.modules:  # read once, when Ray is imported
        os.environ.setdefault(*LOOPBACK_ONLY)
    try:
        import ray  # an optional extra: only a run that chose the Ray executor needs it
    except ImportError:
        raise TrainstabError(
            "the ray executor needs Ray: pip install 'trainstab[ray]' (or drop the executor option to train locally)"
        ) from None
    if not ray.is_initialized():
        try:
            if address:  # a cluster: an address `ray start` printed, ray://host:10001, or auto
                ray.init(address=address, log_to_driver=False)
            else:  # a new one-machine Ray for this process: loopback only, no dashboard; it stops when we exit
                ray.init(address="local", include_dashboard=False, log_to_driver=False)
        except Exception as error:  # Ray's own kinds: connection, authentication, timeout, bad address
            where = f"the Ray at RAY_ADDRESS={address}" if address else "a Ray on this machine"
            raise TrainstabError(
                f"cannot start or reach {where}: {type(error).__name__}: {error}; check that the cluster is up "
                "(ray status) and its token is available, or unset RAY_ADDRESS to run a Ray on this machine"
            ) from None
    return ray


def _on_task_path(sys_path: list[str]) -> None:
    """Put the driver's import paths that exist on this node in front, so user factories import here too."""
    for entry in reversed(sys_path):
        if entry not in sys.path and os.path.isdir(entry):
            sys.path.insert(0, entry)


def _train_stack_task(train: TrainStack, config: SweepConfig, lrs: list[float], sys_path: list[str]) -> list[MemberRun]:
    """A Ray task: train one stack exactly as a local worker process would."""
    _on_task_path(sys_path)
    if on_gpu(config):  # Ray shows the task only the GPU it was given, as cuda:0
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, device="cuda"))
    return train(config, lrs)


def _call_task(function: Callable[..., _Result], arguments: tuple[Any, ...], sys_path: list[str]) -> _Result:
    """A Ray task: ``function(*arguments)`` with the driver's import paths."""
    _on_task_path(sys_path)
    return function(*arguments)


def run_stacks(
    jobs: Sequence[tuple[SweepConfig, list[float]]],
    train: TrainStack,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[MemberRun]]:
    """``train(config, lrs)`` (``trainstab.sweep.train_stack``) of every job as one Ray task, in the order of
    ``jobs``.

    ``progress(done, total)`` counts optimizer steps of finished stacks.
    """
    ray = ray_module()
    steps = [config.train.steps for config, _ in jobs]
    task = ray.remote(num_cpus=1)(_train_stack_task)
    futures = [
        task.options(num_gpus=1 if on_gpu(config) else 0).remote(train, config, lrs, sys.path) for config, lrs in jobs
    ]
    return _gather(ray, futures, steps, progress)


def run_calls(
    function: Callable[..., _Result],
    calls: Sequence[tuple[Any, ...]],
    gpus: float = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[_Result]:
    """``[function(*arguments) for arguments in calls]``, each call a Ray task (one CPU, ``gpus`` GPUs).

    ``function`` must be importable on the nodes (a module-level function). ``progress(done, total)``
    counts finished calls.
    """
    ray = ray_module()
    task = ray.remote(num_cpus=1, num_gpus=gpus)(_call_task)
    futures = [task.remote(function, arguments, sys.path) for arguments in calls]
    return _gather(ray, futures, [1] * len(futures), progress)


def _gather(ray: Any, futures: list[Any], weights: list[int], progress: Callable[[int, int], None] | None) -> list[Any]:
    """The tasks' results in submission order, reporting progress as they finish; Ctrl-C cancels the rest."""
    total, done = sum(weights), 0
    weight_of = {future: weight for future, weight in zip(futures, weights, strict=True)}
    pending = list(futures)
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            done += sum(weight_of[future] for future in finished)
            if progress is not None:
                progress(done, total)
        return list(ray.get(futures))
    except KeyboardInterrupt:
        for future in pending:
            ray.cancel(future, force=True)
        raise
    except ray.exceptions.RayTaskError as error:  # the task's own exception, raised again here
        cause = error.as_instanceof_cause()
        if isinstance(cause, TrainstabError):
            raise TrainstabError(str(cause).splitlines()[-1]) from None
        raise
