"""Typed configurations: one frozen dataclass per concern.

Defaults follow the paper (Wortsman et al. 2023),
scaled down to a model that trains in seconds on two CPU cores. Tiny variants
are made with ``dataclasses.replace``; ``validate`` turns an inconsistent
configuration into a :class:`TrainstabError` that names the fix.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trainstab.core import values
from trainstab.core.errors import TrainstabError
from trainstab.core.model_names import canonical_model_name, format_value, split_model_name
from trainstab.core.optimizer_table import BUILT_IN, is_optimizer, newer_torch_needed
from trainstab.core.optimizer_table import choices as optimizer_choices
from trainstab.core.option_fields import PYTEST_FLAGS, declared_options, option
from trainstab.core.values import DEVICE_PATTERN as DEVICE_PATTERN
from trainstab.core.values import EXECUTORS as EXECUTORS
from trainstab.core.values import MAX_SEED, MAX_STEPS
from trainstab.core.values import PRECISIONS as PRECISIONS
from trainstab.core.values import Executor as Executor
from trainstab.core.values import Precision as Precision

NormKind = Literal["layernorm", "rmsnorm"]
NormPlacement = Literal["pre", "post"]
AttentionScale = Literal["inv_sqrt_d_head", "inv_d_head"]
InitScheme = Literal["paper", "gpt2"]
Parameterization = Literal["standard", "mup_simple"]
WeightDecayMode = Literal["independent", "coupled", "none"]

#: The paper's learning-rate grid (peak of warm-up plus cosine).
PAPER_LR_GRID: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


#: Named presets of (steps, LR grid): quick for PR runs, thorough for nightly ones.
PROFILES: dict[str, tuple[int, tuple[float, ...]]] = {
    "quick": (100, (1e-3, 1e-2, 1e-1, 3e-1)),
    "default": (200, PAPER_LR_GRID),
    "thorough": (400, (*PAPER_LR_GRID, 1.0)),
}


@dataclass(frozen=True)
class ModelConfig:
    """Shape and architecture switches of the reference transformer."""

    vocab_size: int = 512  # V; must cover every token id of the corpus
    context_length: int = 64  # T, tokens per training sequence
    width: int = 32  # d_model
    depth: int = 2  # number of transformer blocks
    heads: int = 2  # attention heads; width must divide by heads
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * width (paper: 4)
    qk_layernorm: bool = True  # LayerNorm per head on q and k (paper default: on)
    norm: NormKind = "layernorm"  # LayerNorm (no bias) or RMSNorm
    norm_placement: NormPlacement = "pre"  # pre-LN (paper) or post-LN (original transformer)
    tie_embeddings: bool = False  # paper: untied
    attention_scale: AttentionScale = "inv_sqrt_d_head"  # 1/sqrt(d_head) (paper) or 1/d_head
    init: InitScheme = "paper"  # paper: emb N(0, 1/sqrt(d)), rest trunc-normal 1/sqrt(fan_in)
    init_scale: float = 1.0  # multiplies the std of every non-embedding weight
    parameterization: Parameterization = "standard"  # or µParam (simple)
    mup_base_width: int = 32  # base width of µParam (simple): hidden LR *= base/width
    # Logit soft-capping (Gemma 2: 50 and 30): cap * tanh(z / cap) before the softmax; 0 is off.
    attention_softcap: float = 0.0  # on the attention logits (the capture records them before the cap)
    final_logit_softcap: float = 0.0  # on the output logits
    # QK-clip (Kimi K2's MuonClip; Megatron's qk_clip: 100): after each step, a head whose max |attention logit|
    # in that step's forward passed tau has its W_q and W_k columns scaled by sqrt(tau / max). 0 is off.
    qk_clip: float = 0.0

    @property
    def head_dim(self) -> int:
        """Per-head width d_head = width / heads."""
        return self.width // self.heads


#: The model keys every model takes: a user factory or ``hf:`` config receives them as its ModelSize.
SIZE_KEYS = ("vocab_size", "context_length", "width", "depth", "heads")
#: The model keys only the built-in reference is built from; another model's own code decides these.
REFERENCE_ONLY_KEYS = tuple(name for name in ModelConfig.__dataclass_fields__ if name not in SIZE_KEYS)


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule, loss and probing of one training run."""

    steps: int = 200  # optimizer steps per run
    batch_size: int = 16  # sequences per step (B)
    warmup_fraction: float = 0.1  # linear warm-up over this share of the steps
    lr_floor: float = 1e-5  # cosine decays to this absolute LR (paper: 1e-5)
    beta1: float = 0.9  # AdamW beta1 (paper: 0.9)
    beta2: float = 0.95  # AdamW beta2 (paper: 0.95)
    eps: float = 1e-8  # AdamW epsilon (paper: 1e-8; 1e-15 fixes the epsilon stall)
    grad_clip: float = 1.0  # clip the global grad norm to this; 0 disables clipping
    weight_decay_mode: WeightDecayMode = "independent"  # paper: independent
    weight_decay: float | None = None  # None: 1e-4 independent, 0.1 coupled, 0 none
    z_loss: float = 1e-4  # coefficient c of c * (log Z)^2 (PaLM: 1e-4); 0 disables
    # adamw (the paper's; batched), muon, adafactor, lion, sgd, or package.module:callable (trainstab.train.optimizers)
    optimizer: str = option(
        "adamw",
        "optimizer",
        values.optimizer,
        f"{', '.join(BUILT_IN)}, a team's registered name or package.module:callable",
    )
    probe_every: int = 10  # attention/output probes every this many steps (and the last)
    # cpu, cuda or cuda:N; the model is built on the CPU (same init everywhere), then moved
    device: str = option("cpu", "device", values.device, "device to train on: cpu, cuda or cuda:N")
    # fp32, or bf16 autocast of the forward (the paper's); the loss, log Z, probes, weights and optimizer stay fp32
    precision: Precision = option(
        "fp32", "precision", values.precision, "fp32, or bf16 autocast of the forward (probes and loss stay fp32)"
    )
    final_loss_fraction: float = 0.1  # final loss = mean train loss over this last share
    # Seeds the init and the data order; printed with every result.
    seed: int = option(0, "seed", values.seed, "seed of init and data order")

    @property
    def resolved_weight_decay(self) -> float:
        """The decay coefficient lambda actually used for the chosen mode."""
        if self.weight_decay is not None:
            return self.weight_decay
        return {"independent": 1e-4, "coupled": 0.1, "none": 0.0}[self.weight_decay_mode]

    @property
    def warmup_steps(self) -> int:
        """Warm-up length in steps (at least one)."""
        return max(1, round(self.warmup_fraction * self.steps))


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep: the model, its training, the LR grid and the corpus."""

    model_name: str = "reference"  # "reference", "hf:<model_type>" or "package.module:callable", + "[k=v,...]"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lrs: tuple[float, ...] = PAPER_LR_GRID  # peak learning rates, one run each
    corpus: str | None = None  # token file; None means the bundled corpus
    workers: int | None = None  # processes to train in; None: one per available core (one on a GPU)
    executor: Executor = option(  # Ray tasks: trainstab.train.ray_executor
        "local",
        "executor",
        values.executor,
        "where the stacks train: local processes, or ray tasks (RAY_ADDRESS picks the cluster)",
    )

    def __post_init__(self) -> None:
        # One spelling per model, so caches, baselines and reports see "[a=1,b=2]" and "[b=2,a=1]" as one.
        object.__setattr__(self, "model_name", canonical_model_name(self.model_name))


#: The optimizers trainstab builds by name (trainstab.core.optimizer_table); a team may register more, and a user's own
#: is named package.module:callable.
BUILT_IN_OPTIMIZERS = tuple(BUILT_IN)

#: The coordinate check's band: halfway between Θ(1) (slope 0, transfers) and Θ(width) (slope 1, standard Adam's
#: worst case).
DEFAULT_SLOPE_BAND = 0.5


@dataclass(frozen=True)
class CoordinateConfig:
    """What the coordinate check (trainstab.train.coordinates) trains."""

    widths: tuple[int, ...] = (32, 64, 128)  # at least 3; heads keep the base's head dimension
    steps: int = 10  # training steps recorded (the "first steps" of µP's check)
    lr: float = 1e-2  # constant LR after a one-step warm-up (the base model's best on the paper grid)
    band: float = DEFAULT_SLOPE_BAND  # max |log-log slope of activation RMS against width|


@dataclass(frozen=True)
class TimeLimits:
    """How long training may go without finishing a step before the run says so, and how long it may train.

    Not part of a :class:`SweepConfig`: a limit changes no number a sweep measures, so it is in no cache key
    or baseline recipe.
    """

    # No step of a stack finished for this long: one line naming the stack, then at most one per interval.
    slow_step_seconds: float = option(
        10.0,
        "slow-step-seconds",
        values.positive,
        "print a line when no training step has finished for this long, progress off or on",
    )
    # One batch of sweeps (a sweep, with the ladder rungs trained beside it) training longer is stopped, its
    # workers ended: the run is inconclusive (exit 4). None: no limit.
    time_limit_seconds: float | None = option(
        None,
        "time-limit-seconds",
        values.positive,
        "stop training that runs longer than this (a sweep, with the ladder rungs trained beside it): "
        "inconclusive, exit 4 (off when unset); worker processes are ended at once, training in the run's own "
        "process only between steps; not with the ray executor",
    )
    flags: str = PYTEST_FLAGS  # how messages spell the flags: the front end's (the CLI's are "--<name>")

    def __post_init__(self) -> None:
        for name, spec in declared_options(TimeLimits):  # each value through its option's own parser
            value = getattr(self, name)
            try:
                if value is not None:
                    spec.parse(value)
            except ValueError:
                raise TrainstabError(f"{name}={value}: expected a finite number of seconds above 0") from None


#: The corpus every sweep trains on unless told otherwise: shipped in the package, or the repository's fixtures/.
BUNDLED_CORPUS = Path(__file__).resolve().parents[3] / "fixtures" / "corpus.npy"


def bundled_corpus_path() -> Path:
    """Path of the bundled corpus (shipped in the package, or the repository's fixtures/)."""
    packaged = Path(__file__).resolve().parents[1] / "data" / "corpus.npy"  # trainstab/data/, beside core/
    return packaged if packaged.exists() else BUNDLED_CORPUS


def check_scope(config: SweepConfig) -> None:
    """Refuse a built-in-model key set for a model that is not the reference: it would be silently ignored.

    Training keys (optimizer, schedule, loss, data) and the size keys apply to every model; the rest of
    :class:`ModelConfig` builds the reference alone. A key left at its default is not a setting.
    """
    base, options = split_model_name(config.model_name)
    if base == "reference" and options:
        as_set_keys = " ".join(f"--set {key}={format_value(value)}" for key, value in options.items())
        raise TrainstabError(
            f"model {config.model_name!r}: the reference takes no [options]; its switches are --set keys "
            f"(trainstab_set in the ini): {as_set_keys}"
        )
    if config.model_name == "reference":
        return
    defaults = ModelConfig()
    changed = [name for name in REFERENCE_ONLY_KEYS if getattr(config.model, name) != getattr(defaults, name)]
    if changed:
        shown = ", ".join(f"{name}={getattr(config.model, name)}" for name in changed)
        if base.startswith("hf:"):
            how = f"set the architecture through its config fields, e.g. {base}[tie_word_embeddings=true]"
        else:
            how = (
                "put the switch in your factory as a keyword option and name it in the model, e.g. "
                f"{base}[qk_norm=false] calls build(size, qk_norm=False)"
            )
        raise TrainstabError(
            f"{shown}: built-in-model setting(s) of the reference model only, and {config.model_name} is built by "
            f"its own code, which would ignore them. Instead, {how}. Every model takes the training keys and "
            f"{', '.join(SIZE_KEYS)} (set by --set / trainstab_set, a ModelUnderTest's overrides or a FuzzPoint)"
        )


#: Ranges every front end is held to before any training: a value outside is a one-line error.
LR_RANGE = (1.2e-38, 3.4e38)  # what a float32 holds: 1e-50 would train at LR 0, 1e400 at inf
MEMORY_SHARE = 0.8  # a sweep estimated to need more than this share of the machine's memory is refused
STACK_SIZE = 4  # learning rates trained together as one stacked model (one stack per worker process)


def _check_finite(config: SweepConfig) -> None:
    """Every number of the config is a number: NaN nowhere, infinity only where it means "off" (grad_clip)."""
    for section, owner in (("model", config.model), ("train", config.train)):
        for name, value in vars(owner).items():
            if not isinstance(value, float) or math.isfinite(value):
                continue
            if name == "grad_clip" and value == math.inf:
                continue  # clipping at infinity is clipping off, and is written so
            raise TrainstabError(f"{name}={value} in the {section} config is not a finite number; give a number")


def estimated_bytes(config: SweepConfig) -> float:
    """A rough upper bound of the memory a sweep needs (fp32 weights, Adam, activations) for the LRs in flight.

    At most a stack per worker trains at once: ``STACK_SIZE`` LRs times the workers (every core when unset).
    """
    m, t = config.model, config.train
    parameters = m.depth * 12 * m.width**2 + 2 * m.vocab_size * m.width + m.context_length * m.width
    weights = 4 * 4 * parameters  # weights, gradients, Adam's two moments
    tokens = t.batch_size * m.context_length
    activations = 4 * tokens * (m.depth * 34 * m.width + 3 * m.vocab_size)
    activations += 4 * 5 * t.batch_size * m.depth * m.heads * m.context_length**2  # attention scores
    workers = 1 if on_gpu(config) else config.workers or os.cpu_count() or 1  # a GPU trains a stack at a time
    in_flight = min(len(config.lrs), STACK_SIZE * workers)
    return float(in_flight * (weights + activations))


def on_gpu(config: SweepConfig) -> bool:
    """Whether ``config`` trains on a CUDA GPU."""
    return config.train.device.startswith("cuda")


def _machine_bytes() -> float:
    """The machine's physical memory in bytes (inf where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def validate(config: SweepConfig) -> None:
    """Raise :class:`TrainstabError` naming the first inconsistency in ``config``."""
    check_scope(config)
    _check_finite(config)
    m, t = config.model, config.train
    positives = {
        "vocab_size": m.vocab_size,
        "context_length": m.context_length,
        "width": m.width,
        "depth": m.depth,
        "heads": m.heads,
        "mlp_ratio": m.mlp_ratio,
        "mup_base_width": m.mup_base_width,
        "steps": t.steps,
        "batch_size": t.batch_size,
        "probe_every": t.probe_every,
    }
    for name, value in positives.items():
        if value <= 0:
            raise TrainstabError(f"{name}={value} must be a positive integer; set it with --set {name}=N")
    if m.width % m.heads:
        raise TrainstabError(
            f"width={m.width} is not divisible by heads={m.heads}; choose heads that divide the width "
            f"(e.g. --set heads={_largest_divisor_at_most(m.width, m.heads)})"
        )
    if m.init_scale <= 0:
        raise TrainstabError(f"init_scale={m.init_scale} must be > 0")
    if m.qk_clip > 0 and m.qk_layernorm:
        raise TrainstabError(
            f"qk_clip={m.qk_clip:g} rescales W_q and W_k, which qk-layernorm normalises away: QK-clip is the "
            "alternative to qk-layernorm; add --set qk_layernorm=false (or drop qk_clip)"
        )
    if not 0 <= t.warmup_fraction < 1:
        raise TrainstabError(f"warmup_fraction={t.warmup_fraction} must be in [0, 1)")
    if not 0 < t.final_loss_fraction <= 1:
        raise TrainstabError(f"final_loss_fraction={t.final_loss_fraction} must be in (0, 1]")
    for name, beta in (("beta1", t.beta1), ("beta2", t.beta2)):
        if not 0 <= beta < 1:
            raise TrainstabError(f"{name}={beta} must be in [0, 1)")
    non_negatives = {
        "eps": t.eps,
        "lr_floor": t.lr_floor,
        "grad_clip": t.grad_clip,
        "z_loss": t.z_loss,
        "attention_softcap": m.attention_softcap,
        "final_logit_softcap": m.final_logit_softcap,
        "qk_clip": m.qk_clip,
    }
    for name, number in non_negatives.items():
        if number < 0:
            raise TrainstabError(f"{name}={number} must be >= 0")
    if t.weight_decay is not None and t.weight_decay < 0:
        raise TrainstabError(f"weight_decay={t.weight_decay} must be >= 0")
    if not is_optimizer(t.optimizer):
        raise TrainstabError(
            f"optimizer {t.optimizer!r} is unknown; use {optimizer_choices()} (a factory taking "
            "(param_groups, peak_lr))"
        )
    if (too_old := newer_torch_needed(t.optimizer)) is not None:
        raise TrainstabError(too_old)
    if not config.lrs:
        raise TrainstabError("the LR grid is empty; pass e.g. --lrs 1e-3,1e-2,1e-1")
    for lr in config.lrs:
        if math.isnan(lr):
            raise TrainstabError("a learning rate is nan; pass numbers, e.g. --lrs 1e-3,1e-2")
        if not lr > 0:
            raise TrainstabError(f"learning rate {lr} must be > 0; pass positive values, e.g. --lrs 1e-3,1e-2")
        if not LR_RANGE[0] <= lr <= LR_RANGE[1]:
            raise TrainstabError(
                f"learning rate {lr:g} is outside [{LR_RANGE[0]:g}, {LR_RANGE[1]:g}], what float32 training can "
                "hold (it would train at 0 or at inf); pass e.g. --lrs 1e-3,1e-2,1e-1"
            )
    if config.workers is not None and config.workers <= 0:
        raise TrainstabError(f"workers={config.workers} must be a positive integer")
    if not re.fullmatch(DEVICE_PATTERN, t.device):
        raise TrainstabError(f"device {t.device!r} is not a device; use cpu, cuda or cuda:N (N the GPU's index)")
    if t.precision not in PRECISIONS:
        raise TrainstabError(f"precision {t.precision!r} is unknown; use {' or '.join(PRECISIONS)}")
    if config.executor not in EXECUTORS:
        raise TrainstabError(f"executor {config.executor!r} is unknown; use {' or '.join(EXECUTORS)}")
    if t.steps > MAX_STEPS:
        raise TrainstabError(f"steps={t.steps} is more than {MAX_STEPS:,}; a proxy needs hundreds, e.g. --steps 200")
    if not 0 <= t.seed <= MAX_SEED:
        raise TrainstabError(f"seed={t.seed} must be an integer from 0 to 2**63-1, e.g. --seed 0")
    need, have = estimated_bytes(config), _machine_bytes()
    if need > MEMORY_SHARE * have and not on_gpu(config):  # a GPU's own memory is checked where torch is imported
        raise TrainstabError(
            f"this sweep would need about {need / 2**30:,.1f} GiB (width {m.width}, depth {m.depth}, batch "
            f"{t.batch_size}, context {m.context_length}, vocab {m.vocab_size}, up to {STACK_SIZE} LRs per worker "
            f"at once) and the machine has {have / 2**30:,.1f} GiB; choose smaller sizes"
        )


def _largest_divisor_at_most(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is <= ``k`` (a suggestion for heads)."""
    return max(d for d in range(1, max(1, k) + 1) if n % d == 0)


def resolved_config(config: SweepConfig) -> dict[str, Any]:
    """The config as data, with every default that depends on others filled in (for JSON and baselines)."""
    data = dataclasses.asdict(config)
    data["train"]["weight_decay"] = config.train.resolved_weight_decay
    data["train"]["warmup_steps"] = config.train.warmup_steps
    data["corpus"] = str(config.corpus) if config.corpus is not None else str(bundled_corpus_path())
    data["stack_size"] = STACK_SIZE
    return data
