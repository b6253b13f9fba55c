"""Device and precision: bf16 autocast on the CPU, the CUDA path (skipped without a GPU), and the baselines."""

import dataclasses
import json
import warnings

import pytest
import torch

from trainstab.checks.battery import Thresholds
from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.core.errors import TrainstabError
from trainstab.gate.baseline import describe_config, new_baseline, protocol_changes, read_baseline
from trainstab.run.options import ModelUnderTest, parse_options, sweep_config
from trainstab.train import engine
from trainstab.train import sweep as sweep_module
from trainstab.train.devices import check_device
from trainstab.train.models import FunctionalStack
from trainstab.train.sweep import run_sweep

TINY = SweepConfig(
    model=ModelConfig(width=16, heads=2, depth=1, context_length=16),
    train=TrainConfig(steps=24, batch_size=4, probe_every=4),
    lrs=(1e-3, 1e-2),
    workers=1,
)
# bf16 keeps 8 bits of mantissa, so the forward's numbers move by about 0.4% of their size. Over these 24
# steps the final loss moved by at most 3.2e-4 nats (reference, LR 1e-2) and the max attention logit by at most
# 0.09% (both models, LR 1e-3): the bounds leave 15x and 11x for other CPUs' bf16 kernels.
BF16_LOSS_SHIFT = 0.005
BF16_LOGIT_SHIFT = 0.01
# A GPU's kernels sum in other orders than the CPU's. Not measured (no GPU here): a first guess, 6x the bf16 bound.
CUDA_LOSS_SHIFT = 0.03


def _bf16(config: SweepConfig) -> SweepConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, precision="bf16"))


def _numbers(result):
    return [(r.losses, r.history, r.eval_loss) for r in result.runs]


@pytest.mark.parametrize("model", ["reference", "user_models:stable"])
def test_bf16_trains_close_to_fp32_and_not_identical_to_it(model):
    fp32 = run_sweep(dataclasses.replace(TINY, model_name=model))
    bf16 = run_sweep(_bf16(dataclasses.replace(TINY, model_name=model)))
    for a, b in zip(fp32.runs, bf16.runs, strict=True):
        assert abs(a.final_loss - b.final_loss) < BF16_LOSS_SHIFT
        assert abs(a.max_attention_logit - b.max_attention_logit) < BF16_LOGIT_SHIFT * a.max_attention_logit
        assert a.losses != b.losses  # the forward really ran in bf16
    assert bf16.environment["precision"] == "bf16"
    assert fp32.environment["precision"] == "fp32"


def test_a_bf16_sweep_is_identical_on_rerun():
    assert _numbers(run_sweep(_bf16(TINY))) == _numbers(run_sweep(_bf16(TINY)))


def test_bf16_autocasts_the_forward_only_weights_and_the_loss_stay_fp32(monkeypatch):
    seen: dict[str, set[torch.dtype]] = {"head": set(), "weights": set(), "logits": set(), "losses": set()}
    original_forward, original_loss = FunctionalStack.forward, engine.cross_entropy_with_log_z

    def watched_forward(self, idx):
        template = self.__dict__["template"]
        handle = template.head.register_forward_hook(lambda m, i, out: seen["head"].add(out.dtype))
        try:
            return original_forward(self, idx)
        finally:
            handle.remove()
            seen["weights"].update(p.dtype for p in self.parameters())

    def watched_loss(logits, targets):
        seen["logits"].add(logits.dtype)
        ce, log_z = original_loss(logits, targets)
        seen["losses"].update((ce.dtype, log_z.dtype))
        return ce, log_z

    monkeypatch.setattr(FunctionalStack, "forward", watched_forward)
    monkeypatch.setattr(engine, "cross_entropy_with_log_z", watched_loss)
    # Only training's forwards: the preflight's first step (fp32, memoised per process) is not what is asked.
    monkeypatch.setattr(sweep_module, "preflight", lambda config: None)
    run_sweep(_bf16(dataclasses.replace(TINY, model_name="user_models:stable")))
    assert seen["head"] == {torch.bfloat16}  # a user model's unembedding ran under autocast
    assert seen["weights"] == {torch.float32}  # the weights (and so the optimizer's state) are fp32 masters
    run_sweep(_bf16(TINY))
    assert torch.bfloat16 in seen["logits"]  # the reference's logits come out of autocast in bf16...
    assert seen["losses"] == {torch.float32}  # ...and the loss and log Z are computed from an fp32 copy


# The preflight's one forward (outside the sweep's recording) says the kernel words too; on a real GPU run
# it would not (the preflight runs on the CPU, without deterministic algorithms).
@pytest.mark.filterwarnings("ignore:scatter_add_cuda_kernel does not have a deterministic implementation")
def test_an_op_without_a_deterministic_kernel_makes_the_run_say_it_is_not_repeatable(monkeypatch):
    # PyTorch's words when deterministic algorithms only warn (on a GPU); a CPU run has no such op, so a
    # model says them here. Its other warnings reach the user as they would have.
    original_forward = FunctionalStack.forward

    def warning_forward(self, idx):
        warnings.warn(
            "scatter_add_cuda_kernel does not have a deterministic implementation, but you set ...", stacklevel=2
        )
        warnings.warn("a warning of the model's own", stacklevel=2)
        return original_forward(self, idx)

    monkeypatch.setattr(FunctionalStack, "forward", warning_forward)
    with pytest.warns(UserWarning, match="a warning of the model's own"):
        result = run_sweep(dataclasses.replace(TINY, model_name="user_models:stable"))
    reproducibility = result.environment["reproducibility"]
    assert reproducibility == "not repeatable: no deterministic kernel for scatter_add_cuda_kernel"
    assert run_sweep(TINY).environment["reproducibility"] == "bit-exact on the same CPU kernel set"


def test_precision_and_device_come_from_the_options_and_set_keys():
    options = parse_options({"precision": ("--trainstab-precision", "bf16"), "device": ("--trainstab-device", "cpu")})
    config = sweep_config(options, ModelUnderTest("reference"))
    assert (config.train.precision, config.train.device) == ("bf16", "cpu")
    via_set = sweep_config(parse_options({}, ["precision=bf16"]), ModelUnderTest("reference"))
    assert via_set.train.precision == "bf16"


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("precision", "fp16", "expected fp32 or bf16"),
        ("device", "gpu", "expected cpu, cuda or cuda:N"),
        ("executor", "dask", "expected local or ray"),
    ],
)
def test_a_bad_device_precision_or_executor_names_what_is_accepted(option, value, expected):
    with pytest.raises(TrainstabError, match=expected):
        parse_options({option: (f"--trainstab-{option}", value)})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the error is for machines without")
def test_cuda_on_a_machine_without_a_gpu_is_a_clear_error_before_training():
    config = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, device="cuda"))
    with pytest.raises(TrainstabError, match="sees no CUDA GPU on this machine; train on the CPU"):
        run_sweep(config)


NO_GPU = (
    "no CUDA GPU on this machine: the cuda path (moved model, autocast on cuda, deterministic kernels) is untested here"
)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("model", ["reference", "user_models:stable"])
def test_on_cuda_a_sweep_is_repeatable_and_close_to_the_cpu(model, precision):
    cpu = dataclasses.replace(TINY, model_name=model, train=dataclasses.replace(TINY.train, precision=precision))
    cuda = dataclasses.replace(cpu, train=dataclasses.replace(cpu.train, device="cuda"))
    first, again, on_cpu = run_sweep(cuda), run_sweep(cuda), run_sweep(cpu)
    assert _numbers(first) == _numbers(again)  # deterministic algorithms on
    for a, b in zip(on_cpu.runs, first.runs, strict=True):
        assert abs(a.final_loss - b.final_loss) < CUDA_LOSS_SHIFT
    assert first.environment["device"] == "cuda"


def test_baselines_record_device_kind_and_precision_in_their_protocol(tmp_path):
    result = run_sweep(TINY)
    protocol, _ = describe_config(result)
    assert (protocol["train.device"], protocol["train.precision"]) == ("cpu", "fp32")
    cuda_one = dataclasses.replace(
        result, config=dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, device="cuda:1"))
    )
    assert describe_config(cuda_one)[0]["train.device"] == "cuda"  # which GPU does not change the measurement


def test_an_older_baseline_without_device_or_precision_reads_as_cpu_fp32(tmp_path):
    result = run_sweep(TINY)
    data = new_baseline("tiny", "log_z", result, Thresholds())
    for key in ("train.device", "train.precision"):
        del data["protocol"][key]
    path = tmp_path / "log_z.json"
    path.write_text(json.dumps(data))
    baseline = read_baseline(path, "log_z")
    assert protocol_changes(baseline, new_baseline("tiny", "log_z", result, Thresholds())) == []
    bf16 = new_baseline("tiny", "log_z", run_sweep(_bf16(TINY)), Thresholds())
    assert protocol_changes(baseline, bf16) == ['train.precision: baseline "fp32", this run "bf16"']


class _FakeGpu:
    """torch.cuda as a machine with one 16 GiB GPU would answer, for the checks made before training."""

    total = 16 * 2**30

    def __init__(self, monkeypatch, free=16 * 2**30, capability=(9, 0)):
        for name, value in {
            "is_available": lambda: True,
            "device_count": lambda: 1,
            "current_device": lambda: 0,
            "get_device_name": lambda index=0: "Fake GPU",
            "get_device_capability": lambda index=0: capability,
            "mem_get_info": lambda index=0: (free, self.total),
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)


def _on_cuda(config, device="cuda", **train):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, device=device, **train))


def test_the_device_check_names_a_missing_gpu_index(monkeypatch):
    _FakeGpu(monkeypatch)
    with pytest.raises(TrainstabError, match=r"has 1 GPU\(s\), cuda:0 to cuda:0"):
        check_device(_on_cuda(TINY, "cuda:3"))
    check_device(_on_cuda(TINY, "cuda:0"))  # there: no error


def test_the_device_check_refuses_bf16_on_a_gpu_without_it(monkeypatch):
    _FakeGpu(monkeypatch, capability=(7, 5))
    with pytest.raises(TrainstabError, match="Fake GPU has no bf16 support; train in fp32"):
        check_device(_on_cuda(TINY, precision="bf16"))
    check_device(_on_cuda(TINY))  # fp32 is fine there


def test_the_device_check_refuses_a_sweep_larger_than_the_gpus_free_memory(monkeypatch):
    big = dataclasses.replace(TINY, model=ModelConfig(width=1024, heads=16, depth=8, vocab_size=32768))
    _FakeGpu(monkeypatch, free=2 * 2**30)
    with pytest.raises(TrainstabError, match=r"would need about .* GiB .* and Fake GPU has 2.0 GiB free"):
        check_device(_on_cuda(big))
    _FakeGpu(monkeypatch, free=80 * 2**30)
    check_device(_on_cuda(big))
