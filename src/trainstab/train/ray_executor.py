"""Ray as the executor: every stack (or batch of fuzz points) is one Ray task, spread over a cluster.

Chosen with ``executor="ray"`` (``--trainstab-executor ray``, ini ``trainstab_executor``, CLI
``--executor ray``). Ray decides where tasks run; trainstab only submits them and gathers the results, so
there is no scheduler of ours. The cluster is the one ``RAY_ADDRESS`` names (``ray://host:10001`` or an
address ``ray start`` printed, or ``auto``); without it, a single-node Ray is started for this process,
listening on loopback only (:data:`LOOPBACK_ONLY`), and stops with it. A task trains exactly what a local
worker would (:func:`trainstab.train.sweep.train_stack`: one stack, one thread, its own seed), so the numbers are
the local executor's, bit for bit when the nodes have the driver's CPU type (another CPU's kernels round
differently, as they would locally).

Each task asks for one CPU, and one GPU when the sweep trains on CUDA (Ray then shows the task its own GPU
as ``cuda``). The driver keeps the session cache, the persistent cache and the baselines: tasks get a
config and a list of LRs, and send back numbers. The model's module and the corpus file must be importable
and readable on the nodes (the driver's ``sys.path`` entries that exist on a node are added to the task's).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from trainstab.core.config import SweepConfig, on_gpu
from trainstab.core.errors import ModelCrashed, TrainstabError
from trainstab.core.files import absolute, invocation_folder
from trainstab.core.ray_address import (
    LOOPBACK_ONLY,
    check_cluster_reachable,
    cluster_address,
    host_and_port,
    keep_local_ray_on_loopback,
)
from trainstab.train.engine import MemberRun

_Result = TypeVar("_Result")
#: Trains one stack of a sweep: ``trainstab.train.sweep.train_stack``, passed in (sweep is the caller; a task imports
#: it by name).
TrainStack = Callable[[SweepConfig, list[float]], list[MemberRun]]

#: How long the driver waits for a task between progress updates, in seconds.
POLL_SECONDS = 0.25

#: The session of the Ray this process started or connected to through :func:`ray_module` (None: none).
_ours: str | None = None


def _session(ray: Any) -> str:
    """The GCS address of the Ray this process is connected to (a Ray Client connection has none to give)."""
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # Ray's own kinds, varying by version and connection
        return "(a Ray Client connection)"


def _listens_on_loopback_only(ray: Any) -> bool:
    """Whether the one-machine Ray this process is connected to binds loopback only: Ray read the switch
    (:data:`LOOPBACK_ONLY`) when imported, and its one node is 127.0.0.1."""
    try:
        clusters = importlib.import_module("ray._private.ray_constants").ENABLE_RAY_CLUSTER
    except (ImportError, AttributeError):  # another Ray version: nothing says it binds loopback only
        return False
    nodes = {node["NodeManagerAddress"] for node in ray.nodes()}
    return not clusters and nodes == {"127.0.0.1"}


def _canonical(address: str) -> str:
    """``address`` as Ray writes a GCS address (host resolved, ``auto`` found), or as given if Ray cannot say."""
    try:
        canonical = importlib.import_module("ray._private.services").canonicalize_bootstrap_address(address)
    except Exception:  # Ray's own kinds: a bad address, no cluster found, another Ray version
        return address
    return str(canonical) if canonical else address


def _already_initialized(ray: Any, address: str | None) -> Any:
    """A Ray initialized in this process before this call: trainstab's own, used; a model's or a test suite's,
    used only when it is what trainstab would have connected to (the ``RAY_ADDRESS`` cluster, or without it a
    one-machine Ray bound to loopback only), else refused in one line (and left running: it is not ours)."""
    session = _session(ray)
    if session == _ours:
        return ray
    if address is None and _listens_on_loopback_only(ray):
        return ray
    if address is not None and session == _canonical(address):
        return ray
    wanted = f"the cluster at RAY_ADDRESS={address}" if address else "a one-machine Ray on loopback only"
    raise TrainstabError(
        f"Ray was already initialized in this process before trainstab (a ray.init() in the model's module or the "
        f"test suite), connected to {session}, and it is not {wanted}: trainstab does not use it. Remove that "
        "ray.init() call (trainstab starts or connects Ray itself), or call ray.shutdown() before the run"
    )


def ray_module() -> Any:
    """The ``ray`` module, connected: to ``RAY_ADDRESS`` when set, else to a loopback Ray started here.

    A Ray already initialized in this process is used only if it is trainstab's own or what trainstab would
    have started or connected to (:func:`_already_initialized`); an address where nothing answers fails in
    seconds (:func:`check_cluster_reachable`), not after Ray's ten minutes of retries.
    """
    global _ours
    address = cluster_address()
    keep_local_ray_on_loopback()
    try:
        import ray  # an optional extra: only a run that chose the Ray executor needs it
    except ImportError:
        raise TrainstabError(
            "the ray executor needs Ray: pip install 'trainstab[ray]' (or drop the executor option to train locally)"
        ) from None
    if ray.is_initialized():
        return _already_initialized(ray, address)
    if address is not None:
        check_cluster_reachable(_canonical(address) if host_and_port(address) is None else None)
    try:
        if address:  # a cluster: an address `ray start` printed, ray://host:10001, or auto
            ray.init(address=address, log_to_driver=False)
        else:  # a new one-machine Ray for this process: no dashboard; it stops when we exit
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
    except Exception as error:  # Ray's own kinds: connection, authentication, timeout, bad address
        where = f"the Ray at RAY_ADDRESS={address}" if address else "a Ray on this machine"
        raise TrainstabError(
            f"cannot start or reach {where}: {type(error).__name__}: {error}; check that the cluster is up "
            "(ray status) and its token is available, or unset RAY_ADDRESS to run a Ray on this machine"
        ) from None
    if not address and not _listens_on_loopback_only(ray):  # Ray was imported before the switch could be set
        nodes = {node["NodeManagerAddress"] for node in ray.nodes()}  # type: ignore[no-untyped-call]
        ray.shutdown()
        raise TrainstabError(
            f"the Ray started here (node {', '.join(sorted(nodes))}) does not listen on loopback only: Ray was "
            f"imported before trainstab could keep it there. Set {LOOPBACK_ONLY[0]}={LOOPBACK_ONLY[1]} in the "
            "environment, or start a cluster (ray start --head) and set RAY_ADDRESS"
        )
    _ours = _session(ray)
    return ray


def _on_task_path(sys_path: list[str]) -> None:
    """Put the driver's import paths that exist on this node in front, so user factories import here too."""
    for entry in reversed(sys_path):
        if entry not in sys.path and os.path.isdir(entry):
            sys.path.insert(0, entry)


def _for_the_node(argument: Any) -> Any:
    """A sweep config as a task must see it: the GPU Ray gave the task is its ``cuda`` (Ray shows it only that
    one, as cuda:0); anything else unchanged."""
    if isinstance(argument, SweepConfig) and on_gpu(argument):
        return dataclasses.replace(argument, train=dataclasses.replace(argument.train, device="cuda"))
    return argument


def _import_name(function: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function, as a task imports it; an error for anything else."""
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise TrainstabError(
            f"a Ray task cannot import {qualname or function!r} from {module}: pass a function defined at the "
            "top level of an importable module"
        )
    return f"{module}:{qualname}"


def _call_task(function_name: str, arguments: tuple[Any, ...], sys_path: list[str]) -> Any:
    """A Ray task: ``function(*arguments)`` with the driver's import paths, on the node's own GPU.

    The function travels by name and is imported only after the driver's paths are in place: Ray unpickles a
    task's arguments before the task runs, so a function in a user module on those paths, sent as an
    argument, would fail to import on a fresh worker.
    """
    _on_task_path(sys_path)
    module_name, qualname = function_name.split(":")
    function: Any = importlib.import_module(module_name)
    for attribute in qualname.split("."):
        function = getattr(function, attribute)
    return function(*(_for_the_node(argument) for argument in arguments))


def _for_the_cluster(argument: Any) -> Any:
    """A sweep config as a node can read it: its corpus path absolute (a node's working folder is not ours)."""
    if isinstance(argument, SweepConfig) and argument.corpus is not None:
        return dataclasses.replace(argument, corpus=str(absolute(argument.corpus)))
    return argument


def _check_gpus(ray: Any, gpus: float) -> None:
    """A GPU task on a cluster without GPUs would wait forever: refuse it now."""
    available = ray.cluster_resources().get("GPU", 0)
    if gpus > 0 and available < gpus:
        raise TrainstabError(
            f"the sweep trains on CUDA, and the Ray cluster has {available:g} GPU(s): start nodes with GPUs "
            "(ray start --num-gpus N), or train on the CPU"
        )


def run_calls(
    function: Callable[..., _Result],
    calls: Sequence[tuple[Any, ...]],
    gpus: Sequence[float],
    weights: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[_Result]:
    """``[function(*arguments) for arguments in calls]``, each call a Ray task asking for one CPU and its
    entry of ``gpus`` GPUs; the results in the order of ``calls``.

    ``function`` must be importable on the nodes (a module-level function; it travels by name). Sweep configs
    among the arguments get an absolute corpus path and, on the node, the task's own GPU. ``progress(done,
    total)`` counts finished calls, each weighing its entry of ``weights`` (default 1). The first task
    that fails stops the rest; a :class:`TrainstabError` in a task is raised here as it was raised there.
    """
    function_name = _import_name(function)
    ray = ray_module()
    _check_gpus(ray, max(gpus, default=0))
    task = ray.remote(num_cpus=1)(_call_task)
    # "" and relative entries: the folder the run started in, not the one a model's os.chdir moved to
    path = [os.path.normpath(invocation_folder() / entry) for entry in sys.path]
    futures = [
        task.options(num_gpus=gpu).remote(function_name, tuple(_for_the_cluster(a) for a in arguments), path)
        for arguments, gpu in zip(calls, gpus, strict=True)
    ]
    return _gather(ray, futures, list(weights) if weights is not None else [1] * len(futures), progress)


def run_stacks(
    jobs: Sequence[tuple[SweepConfig, list[float]]],
    train: TrainStack,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[MemberRun]]:
    """``train(config, lrs)`` (``trainstab.train.sweep.train_stack``) of every job as one Ray task, in the order of
    ``jobs``; ``progress(done, total)`` counts optimizer steps of finished stacks."""
    gpus = [1.0 if on_gpu(config) else 0.0 for config, _ in jobs]
    steps = [config.train.steps for config, _ in jobs]
    return run_calls(train, [(config, lrs) for config, lrs in jobs], gpus, steps, progress)


def _gather(ray: Any, futures: list[Any], weights: list[int], progress: Callable[[int, int], None] | None) -> list[Any]:
    """The tasks' results in submission order, reporting progress as they finish.

    A failed task, or Ctrl-C, cancels the tasks still pending.
    """
    total, done = sum(weights), 0
    weight_of = {future: weight for future, weight in zip(futures, weights, strict=True)}
    pending = list(futures)
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            ray.get(finished)  # a task's failure surfaces now, not after every other task
            done += sum(weight_of[future] for future in finished)
            if progress is not None:
                progress(done, total)
        return list(ray.get(futures))
    except BaseException as error:
        for future in pending:
            ray.cancel(future, force=True)
        if isinstance(error, ray.exceptions.RayTaskError) and isinstance(error.cause, TrainstabError):
            raise TrainstabError(str(error.cause)) from None  # the task's own message, as the local run says it
        if isinstance(error, ray.exceptions.RayTaskError) and isinstance(error.cause, ModelCrashed):
            raise ModelCrashed(error.cause.crash) from None  # the model crashed in the task: as a local run says it
        raise
