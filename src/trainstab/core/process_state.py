"""What a model's code can change in the whole process, which trainstab cannot undo: the working folder and
the environment variables.

torch's global state (the default dtype, the thread count, grad mode, the RNG) is set and restored around
every model (:mod:`trainstab.train.torch_state`), so a model cannot leave it changed. The working folder and the
environment are not: a model module that calls ``os.chdir`` when it is imported moves every relative path
of the rest of the process. trainstab makes its own paths absolute before any model's code runs
(:func:`trainstab.core.files.absolute`) and names a model that changed either: the CLI with a ``WARNING:`` line,
pytest with a :class:`~trainstab.core.errors.TrainstabWarning`. Imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Variables trainstab and the libraries it drives set on their own (Ray when it starts or connects, torch and
#: its compiler's caches, CUDA when it starts, trainstab's switches for them and for its pytest session): never
#: the model's doing, so never named in a warning.
SET_BY_TRAINSTAB = frozenset({"PYTHONBREAKPOINT", "CUBLAS_WORKSPACE_CONFIG", "TRAINSTAB_SESSION"})
SET_BY_TRAINSTAB_PREFIXES = ("RAY_", "TORCH", "CUDA_")

#: Variables the libraries a model is written with set by themselves, at import or on first use, while trainstab
#: builds or trains it: a model that only calls torch.compile or imports transformers never touches os.environ,
#: and a warning telling its author to keep os.environ out of the module would be a false alarm. Found by
#: reading torch 2.13's and transformers 5.24's sources for writes to os.environ (os.putenv leaves os.environ,
#: which is all a snapshot compares, unchanged); the distributed launchers and Trainer's arguments are left
#: out: those are the user's own calls, not a side effect of building or training a model.
SET_BY_LIBRARIES = frozenset(
    {
        "TOKENIZERS_PARALLELISM",  # transformers, when a pipeline or generate() runs: tokenizers' fork safety
        "NCCL_GRAPH_MIXING_SUPPORT",  # transformers' GenerationConfig, in a distributed run
        "PYTORCH_CNDEV_BASED_MLU_CHECK",  # transformers' import checks, on a machine with Cambricon's torch_mlu
        "KMP_DUPLICATE_LIB_OK",  # torch.compile on Windows, loading clang's or icx's OpenMP beside torch's
        "JAX_PLATFORMS",  # torch.compile's Pallas backend
    }
)
#: Prefixes of the variables those libraries set: torch's compiler (``_TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR``
#: on the CPU, besides the ``TORCH*`` caches above) and Triton's paths and cache (``TRITON_CACHE_DIR``,
#: ``TRITON_PTXAS_PATH``, ``TRITON_LIBDEVICE_PATH``), which torch sets when it compiles for a GPU.
SET_BY_LIBRARIES_PREFIXES = ("_TORCH", "TRITON_")
#: Parts of the names those libraries set: torch.compile's CUDA graphs and the profiler set CUPTI's switches
#: (``DISABLE_CUPTI_LAZY_REINIT``, ``TEARDOWN_CUPTI``).
SET_BY_LIBRARIES_CONTAINING = ("CUPTI",)


def _folder() -> str:
    """The working folder, or what stands for one that was removed under the process."""
    try:
        return os.getcwd()
    except OSError:
        return "(a folder that no longer exists)"


def _watched(name: str) -> bool:
    """Whether a change of the environment variable ``name`` is a model's (not trainstab's or its libraries')."""
    if name in SET_BY_TRAINSTAB or name in SET_BY_LIBRARIES:
        return False
    if name.startswith(SET_BY_TRAINSTAB_PREFIXES + SET_BY_LIBRARIES_PREFIXES):
        return False
    return not any(part in name for part in SET_BY_LIBRARIES_CONTAINING)


@dataclass(frozen=True)
class ProcessState:
    """The working folder and the environment variables of this process, at one moment."""

    folder: str = field(default_factory=_folder)
    environment: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def changes(self) -> list[str]:
        """What differs now from this snapshot, as a warning names it; empty when nothing does."""
        now = ProcessState()
        changed = []
        if now.folder != self.folder:
            changed.append(f"the working folder (from {self.folder} to {now.folder})")
        names = sorted(
            name
            for name in self.environment.keys() | now.environment.keys()
            if self.environment.get(name) != now.environment.get(name) and _watched(name)
        )
        if names:
            changed.append(f"the environment variable(s) {', '.join(names)}")
        return changed


def warning_text(models: Sequence[str], changes: list[str]) -> str:
    """The one line naming the model (or the models, when several ran together) and what changed (``changes``,
    from :meth:`ProcessState.changes`)."""
    named = f"model {models[0]!r}" if len(models) == 1 else "one of the models " + ", ".join(map(repr, models))
    return (
        f"{named} changed {' and '.join(changes)} while trainstab imported, built or trained it; trainstab's own "
        "files use the paths as given when the run started, but the rest of this process sees the change: keep "
        "os.chdir and os.environ out of the model's module and factory"
    )
