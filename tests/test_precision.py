"""Device and precision: bf16 autocast on the CPU, the CUDA path (skipped without a GPU), and the baselines."""

import dataclasses
import json
import math

import pytest
import torch

from trainstab.baseline import describe_config, new_baseline, protocol_changes, read_baseline
from trainstab.checks import Thresholds
from trainstab.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.errors import TrainstabError
from trainstab.models import FunctionalStack
from trainstab.options import ModelUnderTest, parse_options, sweep_config
from trainstab.sweep import run_sweep

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


def test_bf16_autocasts_the_forward_only_weights_gradients_loss_and_probes_stay_fp32(monkeypatch):
    seen: dict[str, set[torch.dtype]] = {"outputs": set(), "weights": set(), "logits": set()}
    original_forward = FunctionalStack.forward

    def watched(self, idx):
        template = self.__dict__["template"]
        handle = template.head.register_forward_hook(lambda m, i, out: seen["outputs"].add(out.dtype))
        try:
            logits = original_forward(self, idx)
        finally:
            handle.remove()
        seen["weights"].update(p.dtype for p in self.parameters())
        seen["logits"].add(logits.dtype)
        return logits

    monkeypatch.setattr(FunctionalStack, "forward", watched)
    result = run_sweep(_bf16(dataclasses.replace(TINY, model_name="user_models:stable")))
    assert seen["outputs"] == {torch.bfloat16}  # the unembedding ran under autocast
    assert seen["weights"] == {torch.float32}  # the weights (and so Adam's state) are fp32 masters
    assert seen["logits"] == {torch.float32}  # the loss and log Z see fp32 logits
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.runs[0].history[-1].values())


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
