"""One model's training cannot change the next one's numbers: torch's global state is set and restored.

A user's forward may change process-wide torch settings (the default dtype, grad mode, deterministic
algorithms, the thread count, the RNG). Under pytest every model trains in the same processes, so a
leak would move the numbers of models trained later (a reference's LR sensitivity measured 0.0729 alone
and 0.0390 after such a model). Each stack is trained, and each model checked, inside
:func:`isolated_torch_state`: it starts from the state torch starts in and gives back the caller's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

# The state torch starts a process in, read when trainstab is imported (before any user model ran here).
_START_DTYPE = torch.get_default_dtype()
_START_DETERMINISTIC = torch.are_deterministic_algorithms_enabled()


#: cuBLAS is deterministic only with a fixed workspace (PyTorch's reproducibility notes); read at its first use.
CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def isolated_torch_state(threads: int | None = None, deterministic: bool = False) -> Iterator[None]:
    """Run the body from torch's start-up state (and ``threads`` intra-op threads); restore everything after.

    ``deterministic`` turns PyTorch's deterministic algorithms on for the body (a GPU's kernels are otherwise
    free to reorder sums between runs); an op that has no deterministic kernel warns instead of failing.
    """
    saved_threads = torch.get_num_threads()
    saved_dtype = torch.get_default_dtype()
    saved_grad = torch.is_grad_enabled()
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    saved_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    saved_rng = torch.get_rng_state()
    # A GPU's generators too, once CUDA is up (asking earlier would start it for nothing).
    saved_cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]
    try:
        torch.set_default_dtype(_START_DTYPE)
        torch.set_grad_enabled(True)
        torch.use_deterministic_algorithms(_START_DETERMINISTIC or deterministic, warn_only=deterministic)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        if threads is not None:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.set_default_dtype(saved_dtype)
        torch.set_grad_enabled(saved_grad)
        torch.use_deterministic_algorithms(saved_deterministic, warn_only=saved_warn_only)
        torch.set_rng_state(saved_rng)
        if saved_cuda_rng is not None:
            torch.cuda.set_rng_state_all(saved_cuda_rng)
