"""The device a sweep trains on: whether this machine has it, and whether the sweep fits in its memory.

Every model is built on the CPU and moved (:func:`trainstab.train.models.build_stack`), so one seed gives one
init on every device. A GPU trains one stack at a time; its memory is checked here, before anything
trains, against :func:`trainstab.core.config.estimated_bytes` (the CPU's is checked by ``validate``).
"""

from __future__ import annotations

import torch

from trainstab.core.config import MEMORY_SHARE, SweepConfig, estimated_bytes, on_gpu
from trainstab.core.errors import TrainstabError

#: The compute capability from which NVIDIA GPUs compute in bf16 (Ampere).
BF16_CAPABILITY = (8, 0)


def check_device(config: SweepConfig) -> None:
    """Raise :class:`TrainstabError` when ``config``'s device is missing here, lacks bf16, or is too small."""
    if not on_gpu(config):
        return
    device = config.train.device
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise TrainstabError(
            f"device {device!r}: torch {torch.__version__} ({build}) sees no CUDA GPU on this machine; train on the "
            "CPU (drop the device option or pass cpu), or run on a machine with a GPU and a CUDA build of torch"
        )
    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise TrainstabError(f"device {device!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    name = torch.cuda.get_device_name(index)
    if config.train.precision == "bf16" and torch.cuda.get_device_capability(index) < BF16_CAPABILITY:
        raise TrainstabError(f"{name} has no bf16 support; train in fp32 (precision fp32) on this GPU")
    need, free = estimated_bytes(config), float(torch.cuda.mem_get_info(index)[0])  # free: others may share it
    if need > MEMORY_SHARE * free:
        m = config.model
        raise TrainstabError(
            f"a stack of this sweep would need about {need / 2**30:,.1f} GiB (width {m.width}, depth {m.depth}, "
            f"batch {config.train.batch_size}, context {m.context_length}, vocab {m.vocab_size}) and {name} has "
            f"{free / 2**30:,.1f} GiB free; choose smaller sizes"
        )
