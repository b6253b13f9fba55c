"""The learning-rate sweep: stacks of members, trained in parallel processes or Ray tasks.

The grid is cut, in order, into stacks of at most ``stack_size`` learning
rates. Each stack trains as one batched model on one thread, and on the CPU
a member's numbers are bit for bit those of its LR trained alone (same seed,
batches and kernels): they depend neither on the other LRs of its stack or
grid, nor on how many processes or cores ran the sweep. So editing ``--lrs``
moves no other LR's verdict, and the same command gives the same JSON on a
laptop, in CI and under pytest-xdist. What makes it exact: every reduction
over members runs along each member's own row (on one thread a row's sum
does not depend on how many rows there are), the reference's batched
matmuls give each member what one member alone gets, and a user or ``hf:``
model's members each have their own buffers and random draws
(:class:`~trainstab.train.models.FunctionalStack`); ``tests/train/test_grid_independence.py``
holds it to that. On a GPU it is not guaranteed: its batched kernels and
reductions are chosen by shape, so a member's last bits may move with M.
Stacks run in a pool of worker processes (one per core by default; one on a
GPU) or as Ray tasks (``executor="ray"``, :mod:`trainstab.train.ray_executor`), and
each member's record becomes a :class:`~trainstab.core.results.RunResult`.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.sharedctypes import SynchronizedArray

from trainstab.core.config import STACK_SIZE, SweepConfig, TimeLimits, on_gpu, validate
from trainstab.core.crash import crash_of
from trainstab.core.environment import available_cores, environment
from trainstab.core.errors import Crash, Inconclusive, ModelCrashed, TrainstabError
from trainstab.core.results import ATTN_MAX_LOGIT, LOG_Z_MEAN, RunResult, SweepResult, lr_sensitivity
from trainstab.train.corpus import load_corpus
from trainstab.train.devices import check_device
from trainstab.train.engine import MemberRun, train_members
from trainstab.train.models import build_stack, check_model
from trainstab.train.torch_state import isolated_torch_state


def summarize(run: MemberRun, initial_loss: float, final_fraction: float, total_steps: int) -> RunResult:
    """Turn one member's record into its :class:`RunResult`."""
    diverged = run.diverged_at_step is not None
    window = max(1, math.ceil(final_fraction * total_steps))
    final = math.nan if diverged else sum(run.losses[-window:]) / len(run.losses[-window:])
    max_logits = [h[ATTN_MAX_LOGIT] for h in run.history if math.isfinite(h[ATTN_MAX_LOGIT])]
    return RunResult(
        lr=run.lr,
        initial_loss=initial_loss,
        final_loss=final,
        eval_loss=run.eval_loss,
        max_attention_logit=max(max_logits) if max_logits else math.nan,
        log_z_mean=run.history[-1][LOG_Z_MEAN] if run.history else math.nan,
        diverged=diverged,
        diverged_at_step=run.diverged_at_step,
        losses=tuple(run.losses),
        history=tuple(run.history),
    )


def stacks(lrs: tuple[float, ...], stack_size: int = STACK_SIZE) -> list[list[float]]:
    """Cut the grid, in order, into stacks of at most ``stack_size`` LRs."""
    return [list(lrs[i : i + stack_size]) for i in range(0, len(lrs), stack_size)]


def train_stack(
    config: SweepConfig, lrs: list[float], progress: Callable[[int], None] | None = None
) -> list[MemberRun]:
    """Train one stack of learning rates on one thread; used in and out of worker processes and Ray tasks."""
    check_device(config)  # on a Ray node, the first look at its GPU
    corpus = load_corpus(config.corpus, config.model.context_length, config.model.vocab_size)
    done = 0  # steps completed: where a crash happened

    def counted(steps: int) -> None:
        nonlocal done
        done += steps
        if progress is not None:
            progress(steps)

    # A user model's global changes stay inside; PyTorch names the ops it ran without a deterministic kernel.
    with isolated_torch_state(threads=1, deterministic=on_gpu(config)), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model, lr_multipliers = build_stack(
            config.model_name, config.model, len(lrs), config.train.seed, config.train.device
        )
        try:
            runs = train_members(
                model,
                lr_multipliers,
                lrs,
                corpus,
                config.train,
                config.model.context_length,
                counted,
                vocab_size=0 if config.model_name == "reference" else config.model.vocab_size,  # reference: names tell
            )
        except TrainstabError:
            raise
        except (Exception, SystemExit) as error:  # the model's own exception (or sys.exit): a crash, not bad input
            raise crash_of(error, config.model_name, lrs, done, config.train.steps) from None
    nondeterministic = sorted(
        {str(w.message).split(" does not have")[0] for w in seen if _NONDETERMINISTIC in str(w.message)}
    )
    for warning in seen:  # the rest are the model's own: shown as they would have been
        if _NONDETERMINISTIC not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    for run in runs:
        run.nondeterministic_ops = nondeterministic
    return runs


#: How PyTorch words an op without a deterministic kernel when deterministic algorithms only warn.
_NONDETERMINISTIC = "does not have a deterministic implementation"


# The worker processes report progress through this shared array: each stack's steps done (-1: not started).
# One count per stack, not one in all, so the parent can tell which stack has gone quiet (_Watch).
_STEPS_DONE: SynchronizedArray[int] | None = None


def _init_worker(counts: SynchronizedArray[int], run_alive: multiprocessing.connection.Connection) -> None:
    """Worker start-up: remember the shared step counts; leave Ctrl-C to the parent, which stops the pool; end
    this worker when the run that started it is gone (:func:`_end_with_the_run`)."""
    global _STEPS_DONE
    _STEPS_DONE = counts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # one "interrupted" line from the parent, not a traceback per worker
    threading.Thread(target=_end_with_the_run, args=(run_alive,), name="trainstab-run-watch", daemon=True).start()


def _end_with_the_run(run_alive: multiprocessing.connection.Connection) -> None:
    """Exit this worker once the run is gone: a run killed by SIGTERM or SIGKILL (a CI job's timeout, a
    cancelled pipeline) cannot stop its pool, and its workers would train on, for nobody, on every core.

    ``run_alive`` is the read end of a pipe whose only write end the run holds: nothing is ever sent, and the
    read ends (EOF) when the run's process ends, however it ends. The worker's parent cannot tell: under the
    fork server it is the server, which outlives the run while any worker holds the server's own pipe.
    """
    with contextlib.suppress(EOFError, OSError):
        while True:
            run_alive.recv_bytes()
    os._exit(1)


def _count_steps(index: int, steps: int) -> None:
    """Add ``steps`` to stack ``index``'s shared count (every step, so the bar moves smoothly)."""
    if _STEPS_DONE is not None:
        with _STEPS_DONE.get_lock():
            _STEPS_DONE[index] = max(0, _STEPS_DONE[index]) + steps


def _train_stack_in_worker(config: SweepConfig, lrs: list[float], index: int) -> list[MemberRun]:
    """Entry point of a worker process: trains stack ``index`` of the batch."""
    _count_steps(index, 0)  # started: from now on, a step that does not finish is this stack's
    return train_stack(config, lrs, lambda steps: _count_steps(index, steps))


def preflight(config: SweepConfig) -> None:
    """Everything that can be wrong before training: the config, the device, the corpus, the model.

    Raises :class:`TrainstabError` naming the problem; run in this process,
    before any worker starts.
    """
    validate(config)
    if config.executor == "local":  # on Ray the nodes have the GPUs: each task checks its own (train_stack)
        check_device(config)
    load_corpus(config.corpus, config.model.context_length, config.model.vocab_size)
    check_model(config.model_name, config.model, config.train.seed, config.train.batch_size)


#: Told as each stack finishes: (stacks done, stacks in all, the stack's config, its LRs, seconds since the batch
#: started). What a log without a terminal shows as training goes (``trainstab``'s one line per stack).
StackDone = Callable[[int, int, SweepConfig, list[float], float], None]


def run_sweep(
    config: SweepConfig,
    progress: Callable[[int, int], None] | None = None,
    finished: StackDone | None = None,
    limits: TimeLimits | None = None,
    slow: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train one model per learning rate of ``config.lrs`` and summarise the sweep.

    ``progress(done, total)`` is called as optimizer steps complete, counted
    per stack (a stack of LRs takes one step at a time); ``finished`` as each stack ends; ``slow(line)`` when
    no step has finished for ``limits.slow_step_seconds``. Raises
    :class:`TrainstabError` on bad configuration or corpus before any training starts,
    :class:`~trainstab.core.errors.ModelCrashed` when the model raises while training (or its worker process dies),
    and :class:`~trainstab.core.errors.Inconclusive` when training outruns ``limits.time_limit_seconds``.
    """
    (result,) = run_sweeps([config], progress, finished, limits, slow)
    return result


def run_sweeps(
    configs: Sequence[SweepConfig],
    progress: Callable[[int, int], None] | None = None,
    finished: StackDone | None = None,
    limits: TimeLimits | None = None,
    slow: Callable[[str], None] | None = None,
) -> list[SweepResult]:
    """Train several sweeps (a ladder's rungs) as one batch of stacks, and summarise each.

    Every stack of every sweep is handed to the executor at once (the first config's ``executor`` and
    ``workers``): local worker processes, or Ray tasks spread over a cluster. A member's numbers depend only
    on its own LR (module docstring), so the results are those of :func:`run_sweep` on each config.
    ``progress(done, total)`` counts optimizer steps of stacks; ``finished`` is told as each stack ends; ``slow``
    is told a line when a stack has finished no step for ``limits.slow_step_seconds`` (at most one line per that
    interval). Every config is checked before anything trains; the first crash stops the batch
    (:class:`~trainstab.core.errors.ModelCrashed`), and so does ``limits.time_limit_seconds``: the workers are ended
    and :class:`~trainstab.core.errors.Inconclusive` raised (on the Ray executor neither limit applies yet: both front
    ends refuse a time limit with it, :func:`trainstab.run.options.parse_options`). Each
    result's ``elapsed_seconds`` is the wall-clock of the whole batch: its stacks trained interleaved with the
    others'.
    """
    if not configs:
        return []
    for config in configs:
        preflight(config)
    first = configs[0]
    started = time.perf_counter()
    owners = [index for index, config in enumerate(configs) for _ in stacks(config.lrs)]  # the sweep of each job
    jobs = [(config, group) for config in configs for group in stacks(config.lrs)]
    total = sum(config.train.steps for config, _ in jobs)  # progress counts steps of stacks
    if first.executor == "ray":
        if limits is not None and limits.time_limit_seconds is not None:  # the front ends refuse it first, too
            raise TrainstabError(
                "the time limit does not apply on the Ray executor yet; leave it out, or train on the local executor"
            )
        from trainstab.train.ray_executor import run_stacks  # Ray is an optional extra, imported only when chosen

        member_runs, workers = run_stacks(jobs, train_stack, progress), 0
        if finished is not None:  # Ray reports the batch as a whole: each stack's line once it is back
            for index, (config, group) in enumerate(jobs, 1):
                finished(index, len(jobs), config, group, time.perf_counter() - started)
    else:
        cores = 1 if any(on_gpu(config) for config in configs) else first.workers or available_cores()
        workers = min(cores, len(jobs))  # a GPU trains one stack at a time, in this process
        watch = _Watch(jobs, limits or TimeLimits(), slow)
        member_runs = _run_locally(jobs, workers, total, progress, finished, watch)
    elapsed = time.perf_counter() - started
    return [
        _summarize_sweep(
            config,
            [run for owner, runs in zip(owners, member_runs, strict=True) if owner == index for run in runs],
            workers,
            elapsed,
        )
        for index, config in enumerate(configs)
    ]


def _summarize_sweep(config: SweepConfig, member_runs: list[MemberRun], workers: int, elapsed: float) -> SweepResult:
    """One sweep's result from its members' records (``workers`` 0: trained by Ray tasks)."""
    initial = member_runs[0].losses[0] if member_runs[0].losses else math.nan
    runs = tuple(summarize(run, initial, config.train.final_loss_fraction, config.train.steps) for run in member_runs)
    sensitivity, best_lr = lr_sensitivity(runs)
    return SweepResult(
        config=config,
        runs=runs,
        lr_sensitivity=sensitivity,
        best_lr=best_lr,
        environment=environment(
            config.train.seed,
            1,
            workers,
            device=config.train.device,
            precision=config.train.precision,
            nondeterministic=sorted({op for run in member_runs for op in run.nondeterministic_ops}),
        ),
        elapsed_seconds=elapsed,
    )


#: How often the parent looks at the stacks' step counts (the pool's wait, the in-process watchdog's).
_LOOK_SECONDS = 0.25


class _Watch:
    """The steps each stack of a batch has finished, and when: says when one goes quiet, and when time is up.

    A model that takes minutes per step otherwise shows nothing after the header under ``--no-progress``, and
    a bar that does not move on a terminal. The counts come from this process's training callback or the
    workers' shared array; :meth:`look` runs in the parent (the pool's loop, or a thread beside in-process
    training), so a step that never ends is still told.
    """

    def __init__(
        self,
        jobs: list[tuple[SweepConfig, list[float]]],
        limits: TimeLimits,
        say: Callable[[str], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobs, self.limits, self.say, self.clock = jobs, limits, say, clock  # clock: a test's, to step by hand
        self.started = clock()
        self.steps = [-1] * len(jobs)  # each stack's steps done; -1: not started
        # When each stack's count last changed: its quiet time counts from when it started (its model is built
        # after, inside that time: a build that takes minutes is as silent as a step that does).
        self.moved = [self.started] * len(jobs)
        self.done = [False] * len(jobs)
        self.last = self.started  # when any stack last started, stepped or finished
        self.told = -math.inf  # when the last line was said: at most one per slow_step_seconds, whatever the stacks
        self.lock = threading.Lock()

    def seen(self, index: int, steps: int) -> None:
        """Stack ``index`` has finished ``steps`` steps (0: it has started)."""
        with self.lock:
            if steps != self.steps[index]:
                self.steps[index], self.moved[index] = steps, self.clock()
                self.last = self.moved[index]

    def finished(self, index: int) -> None:
        """Stack ``index`` is done: never quiet again."""
        with self.lock:
            self.done[index], self.last = True, self.clock()

    def look(self) -> None:
        """Say one line when a running stack has finished no step for the limit: the quietest one, and how many.

        With no stack running and some not started for the limit (worker processes still starting on a loaded
        machine), the line says that instead: silence would look the same as a hang.
        """
        if self.say is None:
            return
        limit, now = self.limits.slow_step_seconds, self.clock()
        with self.lock:
            if now - self.told < limit:
                return
            running = [index for index in range(len(self.jobs)) if self.steps[index] >= 0 and not self.done[index]]
            quiet = [(now - self.moved[index], index) for index in running if now - self.moved[index] >= limit]
            waiting = [index for index in range(len(self.jobs)) if self.steps[index] < 0 and not self.done[index]]
            if quiet:
                seconds, index = max(quiet)
                steps = self.steps[index]
            elif not running and waiting and now - self.last >= limit:
                seconds, index, steps = now - self.last, waiting[0], -1
            else:
                return
            self.told = now
        config, lrs = self.jobs[index]
        waited = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"  # 31 s; 0.6 s under a small test limit
        if steps < 0:
            self.say(
                f"model {config.model_name!r}: no step finished in the last {waited} s ({len(waiting)} stack(s) of "
                "LRs waiting for a worker process to start them); still starting"
            )
            return
        others = f"; {len(quiet) - 1} other stack(s) too" if len(quiet) > 1 else ""
        # After its last step a stack evaluates the held-out batch (a forward with no step to count).
        where = (
            f"step {steps + 1} of {config.train.steps}"
            if steps < config.train.steps
            else f"evaluating after its last step, {config.train.steps}"
        )
        self.say(
            f"model {config.model_name!r}: no step finished in the last {waited} s ({where} at {_lrs(lrs)}{others}); "
            "still training"
        )

    @contextlib.contextmanager
    def looking(self) -> Iterator[None]:
        """While this process trains: a thread that looks every quarter second, ended (joined) on the way out."""
        if self.say is None:
            yield
            return
        stop = threading.Event()

        def keep_looking() -> None:
            while not stop.wait(_LOOK_SECONDS):
                self.look()

        thread = threading.Thread(target=keep_looking, name="trainstab-slow-steps", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()  # no line after run_sweeps returns (pytest's capture is its own again)

    def out_of_time(self) -> bool:
        """Whether the batch has trained longer than its time limit."""
        limit = self.limits.time_limit_seconds
        return limit is not None and self.clock() - self.started > limit

    def stopped(self) -> Inconclusive:
        """The one line of a batch stopped at its time limit: the model, the limit and how far it got."""
        with self.lock:
            steps, done = [max(0, count) for count in self.steps], sum(self.done)
        unfinished = [index for index in range(len(self.jobs)) if not self.done[index]]
        config = self.jobs[unfinished[0] if unfinished else 0][0]
        total = sum(job.train.steps for job, _ in self.jobs)
        return Inconclusive(
            f"model {config.model_name!r}: training stopped at the time limit of {self.limits.time_limit_seconds:g} s "
            f"({self.limits.flags}time-limit-seconds) after {sum(steps)} of {total} steps ({done} of "
            f"{len(self.jobs)} stack(s) of LRs finished), too little to answer; raise the limit, or train fewer "
            "steps or LRs"
        )


def _lrs(lrs: list[float]) -> str:
    """A stack's learning rates as a line names them: ``lr 0.3``, ``lrs 0.1,0.3``."""
    return ("lr " if len(lrs) == 1 else "lrs ") + ",".join(f"{lr:g}" for lr in lrs)


def _run_locally(
    jobs: list[tuple[SweepConfig, list[float]]],
    workers: int,
    total: int,
    progress: Callable[[int, int], None] | None,
    finished: StackDone | None,
    watch: _Watch,
) -> list[list[MemberRun]]:
    """Train the stacks in this process (one worker) or in a pool of ``workers`` processes, in order."""
    if workers > 1:
        return _run_in_pool(jobs, workers, total, progress, finished, watch)
    done = 0
    started = time.perf_counter()
    current = 0  # the stack training now

    def local_progress(steps: int) -> None:
        nonlocal done
        done += steps
        watch.seen(current, watch.steps[current] + steps)
        if progress is not None:
            progress(done, total)
        if watch.out_of_time():  # between two steps: the only place this process can stop its own training
            raise watch.stopped()

    runs = []
    with watch.looking():  # a thread looks while this one trains: a step that never ends still gets its line
        for index, (config, group) in enumerate(jobs):
            current = index
            watch.seen(index, 0)
            runs.append(train_stack(config, group, local_progress))
            watch.finished(index)
            if finished is not None:
                finished(index + 1, len(jobs), config, group, time.perf_counter() - started)
    return runs


def pool_context() -> multiprocessing.context.BaseContext:
    """The start method of the worker pool: ``forkserver`` on Linux, the platform's own default elsewhere.

    Never ``fork``: the parent has usually run torch already, and forking a process with threads running can
    deadlock the child (Python 3.12+ warns about it, which fails a suite run with ``filterwarnings = error``);
    macOS defaults to ``spawn`` for that reason and keeps it. A forkserver or spawned worker gets the parent's
    ``sys.path`` and working folder from :mod:`multiprocessing` itself, so a user's model module imports there too.
    """
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context()


@contextlib.contextmanager
def _preloading_training(context: multiprocessing.context.BaseContext) -> Iterator[None]:
    """While the pool starts its workers: a fork server started now imports torch and trainstab once.

    Each worker then forks from it in milliseconds instead of importing torch for seconds (measured on 2
    cores: a pool of 2 workers starts in 0.07 s after the first, 4.5 s each without the preload). The
    process's preload list is restored after, so a fork server the user starts later is theirs as before.
    """
    server = (
        getattr(multiprocessing.forkserver, "_forkserver", None) if context.get_start_method() == "forkserver" else None
    )
    previous = getattr(server, "_preload_modules", None)
    if server is None or previous is None:
        yield
        return
    # Not "__main__" (the default): the server would run an unguarded script of the user's at its top level.
    context.set_forkserver_preload([__name__])
    try:
        yield
    finally:
        context.set_forkserver_preload(previous)


def _run_in_pool(
    jobs: list[tuple[SweepConfig, list[float]]],
    workers: int,
    total: int,
    progress: Callable[[int, int], None] | None,
    finished: StackDone | None,
    watch: _Watch,
) -> list[list[MemberRun]]:
    """Train the stacks in ``workers`` processes, reporting progress (and quiet stacks) while waiting.

    The first stack that fails stops the pool: a crash (:class:`~trainstab.core.errors.ModelCrashed`, sent back whole
    by the worker) or bad input is raised as it is; a worker that died (killed, or the model called ``os._exit``)
    becomes a :class:`~trainstab.core.errors.ModelCrashed` naming how it ended and the stacks it left unfinished. Past
    the watch's time limit the workers are ended and :class:`~trainstab.core.errors.Inconclusive` raised.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A worker importing the user's script (forkserver, spawn) reached a top-level sweep: say so here, in the
        # worker's stderr, since the parent only sees a worker that died (its status can read 1 or, from the
        # fork server, 255).
        raise TrainstabError(
            "a worker process reached a sweep while importing your script: put the call under "
            'if __name__ == "__main__": (worker processes import the script and would start training again)'
        )
    context = pool_context()
    counts = context.Array("q", [-1] * len(jobs))  # each stack's steps done; -1 until a worker starts it
    run_alive, alive_end = context.Pipe(duplex=False)  # this process holds the only write end (_end_with_the_run)
    with (
        _closing(run_alive, alive_end),
        ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(counts, run_alive)) as pool,
    ):
        with _preloading_training(context):  # the workers start as the jobs are submitted
            futures: list[Future[list[MemberRun]]] = [
                pool.submit(_train_stack_in_worker, c, g, index) for index, (c, g) in enumerate(jobs)
            ]
        pending = set(futures)
        started, reported = time.perf_counter(), 0
        try:
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                failed = next((f for f in futures if f in done and f.exception() is not None), None)
                if failed is not None:
                    # Stop now: the other stacks would train for minutes before the error reached the user.
                    unfinished = [job for job, f in zip(jobs, futures, strict=True) if not f.done() or f.exception()]
                    error = _failure(failed, unfinished, pool)
                    _stop(pool)
                    raise error
                for future in (f for f in futures if f in done):
                    reported += 1
                    watch.finished(futures.index(future))
                    if finished is not None:
                        finished(reported, len(jobs), *jobs[futures.index(future)], time.perf_counter() - started)
                steps = counts[:]
                for index, count in enumerate(steps):
                    watch.seen(index, count)
                if progress is not None:
                    progress(min(total, sum(max(0, count) for count in steps)), total)
                watch.look()
                if pending and watch.out_of_time():
                    error = watch.stopped()
                    _stop(pool)  # the workers are ended now: none outlives the run
                    raise error
        except KeyboardInterrupt:
            _stop(pool)  # the pool would otherwise finish every stack before the interrupt reaches the user
            raise
        runs = [future.result() for future in futures]
    if progress is not None:
        progress(total, total)
    return runs


#: How long a worker has to end after SIGTERM before it gets SIGKILL. A model may ignore SIGTERM (its own
#: handler, or native code that never returns to Python), and the pool's thread, which the interpreter joins
#: before it exits, waits for every worker: without the SIGKILL the run would hang where it was meant to stop.
_KILL_GRACE_SECONDS = 2.0


@contextlib.contextmanager
def _closing(*connections: multiprocessing.connection.Connection) -> Iterator[None]:
    """Close ``connections`` after the block: after the pool's workers have ended, since it is entered first."""
    try:
        yield
    finally:
        for connection in connections:
            connection.close()


def _stop(pool: ProcessPoolExecutor) -> None:
    """End every worker now (SIGTERM, then SIGKILL for one still running after the grace) and drop the stacks
    not started."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    # Waited on through the sentinels, not join(): the pool's own thread reads the exit statuses, and a fork
    # server's status can be read only once.
    running = {process.sentinel: process for process in processes}
    deadline = time.monotonic() + _KILL_GRACE_SECONDS
    while running and (left := deadline - time.monotonic()) > 0:
        ended = set(multiprocessing.connection.wait(list(running), left))
        running = {sentinel: process for sentinel, process in running.items() if sentinel not in ended}
    for process in running.values():
        process.kill()  # the pool's own shutdown then reaps it


def _failure(
    future: Future[list[MemberRun]], unfinished: list[tuple[SweepConfig, list[float]]], pool: ProcessPoolExecutor
) -> BaseException:
    """What a failed stack raises in the parent: its own exception, or a crash for a worker that died."""
    error = future.exception()
    assert error is not None
    if not isinstance(error, BrokenProcessPool):
        return error
    # The pool terminates the other workers (SIGTERM) once one has died: the one that died first ended otherwise.
    codes = [p.exitcode for p in (getattr(pool, "_processes", None) or {}).values() if p.exitcode]
    code = next((c for c in codes if c != -signal.SIGTERM), codes[0] if codes else None)
    if code is None:
        how = "ended without an exit status"
    elif code < 0:
        how = f"was killed by {_signal_name(-code)}"
        if code == -signal.SIGKILL:
            how += " (the out-of-memory killer sends it, as does kill -9)"
    else:
        how = f"exited with status {code} (os._exit or a fatal error in native code)"
    hint = ""
    # 255: the status the fork server reports when it could not tell the real one.
    if code in (1, 255) and _unguarded_script():
        hint = (
            "; if this is a script that calls trainstab at its top level, put the call under "
            'if __name__ == "__main__": (worker processes import the script and would start training again)'
        )
    lrs = [lr for _, group in unfinished for lr in group]
    crash = Crash(
        model=unfinished[0][0].model_name if unfinished else "?",
        error="worker process died",
        message=f"the process training it {how}, without raising an exception{hint}",
        location="",
        when=f"while training lrs {','.join(f'{lr:g}' for lr in lrs)}" if lrs else "while training",
        traceback="",
    )
    return ModelCrashed(crash)


def _unguarded_script() -> bool:
    """Whether ``__main__`` is a script file, which a worker imports at start-up (``forkserver``, ``spawn``).

    A script that starts a sweep at its top level, outside ``if __name__ == "__main__":``, makes each worker
    start one too, and multiprocessing kills that worker with status 1 before it trains anything.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(main, "__file__", None) is not None and (spec is None or not spec.name.endswith("__main__"))


def _signal_name(number: int) -> str:
    """SIGKILL, or "signal 77" for a number this platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
