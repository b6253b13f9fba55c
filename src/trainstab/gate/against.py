"""The base of a change, trained in the same run: ``--trainstab-against REF`` and ``trainstab compare``.

The head (the working tree) is trained by the front end as always. The base's model comes from the base
revision's code, which cannot share a process with the head's (both are the same package, ``mypkg``):

1. the revision is resolved once (:func:`trainstab.core.revisions.resolve`: a branch, tag or commit, by default the
   merge base of ``HEAD`` with the default branch) and checked out on first use into a private temporary git
   worktree, removed when the run ends, also on Ctrl-C;
2. the folder the head imports the model's package from (``src/`` or the repository's top) is found, and the
   same folder of the checkout goes first on a child process's ``PYTHONPATH``: the child imports the base's
   ``mypkg`` and checks that it did (:mod:`trainstab.gate.base_worker`);
3. the child trains the base with exactly the head's sweep configs (seeds, batches, LR grid; the CPU kernels and
   environment are inherited), through the persistent cache when the run has one, so an unchanged base is read
   and not retrained, and writes each sweep as JSON into a private folder: under pytest, one in the session's
   folder that its xdist workers share, so a model's base trains once however its checks were spread over the
   workers (the others wait on a lock and read it, or the error it ended with);
4. each sweep is read back as untrusted input and must be exactly the config asked for.

A model built into trainstab (``reference``, ``hf:``) or imported from outside the repository is the same code at
both revisions: it is not compared, and says so. A model whose module or factory the base does not have is new
in the head: judged by its absolute bounds alone. A base that does not build is an error naming the revision.
Imports no torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from trainstab.cache.session_cache import CacheUse, load_sweep
from trainstab.checks.head_vs_base import HeadVsBase, PairedRule, seed_configs
from trainstab.core.config import SweepConfig
from trainstab.core.errors import TrainstabError
from trainstab.core.model_names import split_model_name
from trainstab.core.revisions import MERGE_BASE, Revision, checked_out, repository_root, resolve
from trainstab.core.untrusted import UntrustedFileError, read_json_file, read_text_file
from trainstab.core.values import written

#: The child's report is small: its status, a line and the cache's use of each sweep.
MAX_REPORT_BYTES = 1 << 20
#: The lines of the child's output kept for an error message when it fails without a report.
TAIL_LINES = 5
#: The child's output file, and how much of it is read back (its last lines are all an error message needs).
LOG_NAME = "output.log"
MAX_LOG_BYTES = 1 << 20


def _finished(out: Path) -> bool:
    """Whether ``out`` holds a child's readable report: written last, so its sweeps are there too. A report that
    is a link, too big, or not this user's is not read: the base is trained again and the folder replaced."""
    if out.is_symlink() or not out.is_dir():
        return False
    try:
        read_json_file(out / "report.json", MAX_REPORT_BYTES, owner_only=True)
    except (FileNotFoundError, UntrustedFileError):
        return False
    return True


@dataclass(frozen=True)
class BaseSweeps:
    """What training a model at the base revision gave: its sweeps, or why there are none."""

    sweeps: tuple[Any, ...] = ()  # SweepResult per config asked for, in that order
    absent: str = ""  # why the base has no such model ("" when it has): judged by the head's bounds alone
    uses: tuple[CacheUse, ...] = ()  # what the persistent cache did for each sweep (none without a cache)


def not_in_the_repository(model_name: str, root: Path) -> str:
    """Why ``model_name`` is the same code at every revision of the repository at ``root`` ("" when it is not):
    a model built into trainstab, or a factory imported from outside the repository."""
    module = _module_of(model_name)
    if module is None:
        return f"{model_name} is built into trainstab, the same code at both revisions"
    folder = import_folder(module)
    if folder is None or not _inside(folder, root):
        where = f"from {folder}" if folder is not None else "from no folder"
        return f"{module} is imported {where}, outside the repository {root}: the same code at both revisions"
    if INSTALLED.intersection(folder.parts):  # a virtual environment inside the repository: an installed copy
        return (
            f"{module} is imported from an installed copy ({folder}), the same code at both revisions: install it "
            "in editable mode (pip install -e .) to compare it"
        )
    return ""


#: Folders that hold installed packages, not a repository's own code.
INSTALLED = frozenset({"site-packages", "dist-packages"})


def _module_of(model_name: str) -> str | None:
    """The module a model name imports (``mypkg.models``), None for a built-in model."""
    base, _ = split_model_name(model_name)
    return base.partition(":")[0] if ":" in base and not base.startswith("hf:") else None


def import_folder(module: str) -> Path | None:
    """The folder this process imports ``module``'s top-level package from (the ``sys.path`` entry that holds it);
    None when it cannot be found."""
    top = module.partition(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package: the folder above its own
        locations = list(spec.submodule_search_locations)
        return Path(locations[0]).resolve().parent if locations else None
    return Path(spec.origin).resolve().parent if spec.origin and spec.origin not in ("built-in", "frozen") else None


def _inside(folder: Path, root: Path) -> bool:
    return folder == root.resolve() or root.resolve() in folder.parents


class Pair:
    """One model's two sides for ``--against``: the head's sweeps at the rule's seeds and the base's, each computed
    once, when a check first asks. ``head`` trains (or reads) sweeps as the front end does for the head."""

    def __init__(
        self,
        config: SweepConfig,
        rule: PairedRule,
        head: Callable[[list[SweepConfig]], list[Any]],
        base: BaseTrainer,
    ) -> None:
        self.configs = seed_configs(config, rule)
        self._head, self._base = head, base
        self.against = base.name  # "main (3f2a9c1d0e4b)"
        self.how = base.revision.how  # "the merge base of HEAD with main"
        self.base_trained = False  # a front end's mark: the base's cache use was counted

    @functools.cached_property
    def head_sweeps(self) -> list[Any]:
        """The head's sweeps, one per seed."""
        return self._head(self.configs)

    @functools.cached_property
    def _base_outcome(self) -> BaseSweeps | TrainstabError:
        try:
            return self._base.sweeps(self.configs)
        except TrainstabError as error:  # kept: every check of the model says it, none trains the base again
            return error

    @property
    def base_sweeps(self) -> BaseSweeps:
        """The base's sweeps, one per seed, or why there are none; :class:`TrainstabError` naming the revision when
        the base cannot be trained (raised again to every check that asks, never retrained)."""
        outcome = self._base_outcome
        if isinstance(outcome, TrainstabError):
            raise outcome
        return outcome

    def not_compared(self, check: str, why: str) -> HeadVsBase:
        """A check the pair does not compare, and why."""
        seeds = tuple(config.train.seed for config in self.configs)
        return HeadVsBase(check, "not compared", self.against, seeds, why=why)


class BaseTrainer:
    """One run's base revision: resolved when made, checked out on first use, removed by :meth:`close`.

    ``folder``: where the run started (the repository is the one it is in); ``named``: the revision as the user
    wrote it (``None``, ``""`` or ``merge-base`` for the default); ``cache``: the persistent sweep cache, or None.
    """

    def __init__(
        self,
        folder: Path,
        named: str | None,
        cache: str | None,
        flag: str = "--trainstab-against",
        shared: Path | None = None,
    ) -> None:
        self.root = repository_root(folder)
        self.revision: Revision = resolve(self.root, None if named in (None, "", MERGE_BASE) else named, flag)
        self.cache = cache
        # A private folder the run's processes share (pytest's session folder, xdist workers included): a model's
        # base is trained there once, and a worker whose checks of that model were not grouped with the first's
        # reads it, as the head's sweeps are shared through the session cache. None: this process's alone.
        self.shared = shared
        self._stack = contextlib.ExitStack()
        self._tree: Path | None = None
        self._known: dict[tuple[str, SweepConfig], Any] = {}

    @property
    def name(self) -> str:
        """The base as every line names it: ``main (3f2a9c1d0e4b)``, ``the merge base of HEAD with main (…)``."""
        named = self.revision.named or self.revision.how
        return f"{named} ({self.revision.short})"

    def tree(self) -> Path:
        """The base's checkout (made on first use)."""
        if self._tree is None:
            self._tree = self._stack.enter_context(checked_out(self.root, self.revision))
        return self._tree

    def close(self) -> None:
        """Remove the checkout (nothing when none was made); safe to call twice."""
        self._tree = None
        self._stack.close()

    def why_not_compared(self, model_name: str) -> str:
        """Why the model cannot be compared with the base ("" when it can): :func:`not_in_the_repository`."""
        return not_in_the_repository(model_name, self.root)

    def sweeps(self, configs: list[SweepConfig]) -> BaseSweeps:
        """The base's sweeps of ``configs`` (one model's, e.g. its seeds), trained once per run in a child process.

        Raises :class:`TrainstabError` naming the revision when the base's model cannot be built or crashes.
        """
        model = configs[0].model_name
        if any(config.model_name != model for config in configs):
            raise ValueError("BaseTrainer.sweeps takes one model's configs")
        why = self.why_not_compared(model)
        if why:
            return BaseSweeps(absent=why)
        missing = [config for config in configs if (model, config) not in self._known]
        uses: tuple[CacheUse, ...] = ()
        if missing:
            found = self._train(missing)
            if found.absent:
                return found
            self._known.update(((model, c), s) for c, s in zip(missing, found.sweeps, strict=True))
            uses = found.uses
        return BaseSweeps(tuple(self._known[(model, config)] for config in configs), uses=uses)

    def _train(self, configs: list[SweepConfig]) -> BaseSweeps:
        """Train ``configs`` at the base in a child process (module docstring, steps 2-4), or read what another
        process of the run trained for exactly these configs in the shared folder."""
        if self.shared is None:
            with tempfile.TemporaryDirectory(prefix="trainstab-base-sweeps-") as private:  # 0700, this user's
                out = Path(private)
                return self._read_back(out, configs, self._run_child(out, configs))
        identity = json.dumps([self.revision.commit, [dataclasses.asdict(c) for c in configs]], default=str)
        out = self.shared / f"base-{hashlib.sha256(identity.encode()).hexdigest()[:24]}"
        with FileLock(f"{out}.lock"):  # another worker training the same base: wait, then read what it left
            if _finished(out):
                found = self._read_back(out, configs, 0)  # its sweeps, or the error the base ended with
                return dataclasses.replace(found, uses=())  # the persistent cache's use: counted where it trained
            # A folder of its own (0700): a child orphaned by a killed worker writes into its own, never this one.
            training = Path(tempfile.mkdtemp(prefix=f"{out.name}-", dir=self.shared))
            code = self._run_child(training, configs)
            if out.is_symlink() or out.is_file():  # what no process of this run leaves: not read, replaced
                out.unlink()
            elif out.exists():  # a child that ended without a report: tried again, and replaced
                shutil.rmtree(out)
            training.replace(out)  # the other workers find the report, the sweeps and the log together
            return self._read_back(out, configs, code)

    def _run_child(self, out: Path, configs: list[SweepConfig]) -> int:
        """Train ``configs`` at the base in a child process writing into ``out`` (a private folder); its exit
        status."""
        module = _module_of(configs[0].model_name)
        assert module is not None  # sweeps() compares repository models only
        head_folder = import_folder(module)
        assert head_folder is not None
        tree = self.tree()
        base_folder = tree / head_folder.relative_to(self.root.resolve())
        request = {
            "configs": [dataclasses.asdict(config) for config in configs],
            "module": module,
            "tree": str(tree),
            "head": str(self.root),
            "cache": self.cache,
            "out": str(out),
        }
        (out / "request.json").write_text(json.dumps(request))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(base_folder), *self._in_the_checkout(env.get("PYTHONPATH", ""))])
        with (out / LOG_NAME).open("w") as output:
            done = subprocess.run(
                [sys.executable, "-m", "trainstab.gate.base_worker", str(out / "request.json")],
                cwd=tree,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode == -signal.SIGINT:  # Ctrl-C reached the child first: the run stops, as it would
            raise KeyboardInterrupt
        return done.returncode

    def _in_the_checkout(self, python_path: str) -> list[str]:
        """``PYTHONPATH``'s folders with those in the working tree moved to the checkout: the head's copy of a module
        must not stand in for one the base does not have."""
        root, tree = self.root.resolve(), self.tree()
        moved = []
        for entry in filter(None, python_path.split(os.pathsep)):
            folder = Path(entry).resolve()
            moved.append(str(tree / folder.relative_to(root)) if _inside(folder, root) else entry)
        return moved

    def _read_back(self, out: Path, configs: list[SweepConfig], code: int) -> BaseSweeps:
        """The child's report and sweeps, validated (module docstring, step 4)."""
        try:
            report = read_json_file(out / "report.json", MAX_REPORT_BYTES, owner_only=True)
        except (FileNotFoundError, UntrustedFileError):
            try:
                output = read_text_file(out / LOG_NAME, MAX_LOG_BYTES, owner_only=True)
            except (FileNotFoundError, UntrustedFileError) as error:
                output = f"its output could not be read ({error})"
            tail = " | ".join(output.strip().splitlines()[-TAIL_LINES:])
            raise TrainstabError(
                f"training the base {self.name} failed (exit status {code}) without saying why: {tail or 'no output'}"
            ) from None
        status = report.get("status") if isinstance(report, dict) else None
        line = str(report.get("line", "")) if isinstance(report, dict) else ""
        if status == "absent":
            return BaseSweeps(absent=f"{line} there, so it is new in this change")
        if status != "ok":
            raise TrainstabError(f"the base {self.name} could not be trained: {line or written(report)}")
        sweeps, uses = [], []
        for index, config in enumerate(configs):
            try:
                sweeps.append(load_sweep(out / f"sweep-{index}.json", config))
            except (FileNotFoundError, UntrustedFileError) as error:
                raise TrainstabError(f"the base {self.name}'s sweep {index} could not be read back: {error}") from None
        for entry in report.get("uses", []) if self.cache is not None else []:
            if isinstance(entry, dict) and isinstance(entry.get("entry"), str):
                uses.append(CacheUse(entry["entry"], bool(entry.get("read")), str(entry.get("stale", ""))))
        return BaseSweeps(tuple(sweeps), uses=tuple(uses))
