"""The direction of each of the paper's findings, measured on the reference model.

Each test runs one finding of :mod:`trainstab.paper.findings` at the default 200
steps, with its sweeps shared through the session cache (the scaling checks
train the same ladders). A finding that does not reproduce at proxy scale is
a strict xfail with the measured numbers in its reason: it is reported, never
forced, and the suite notices if it starts to hold.
"""

import functools

import pytest

from trainstab.core.config import SweepConfig
from trainstab.paper import findings
from trainstab.pytest_plugin.testing import cached_sweep

PLAN = findings.FindingsPlan()  # 200 steps, widths 32/48/64, depths 1/2/4, target 1e9
pytestmark = [pytest.mark.trainstab, pytest.mark.xdist_group("reference-findings"), pytest.mark.long]


@functools.cache
def _lab(config):
    return findings.Lab(SweepConfig(), sweep=lambda sweep: cached_sweep(config, sweep))


def measure(request, key):
    result = findings.FINDINGS[key](_lab(request.config), PLAN)
    print(f"seed={SweepConfig().train.seed} {key}: {result.evidence}")
    return result


def test_qk_layernorm_keeps_attention_logits_small_and_lowers_lr_sensitivity(request):
    assert measure(request, "qk_layernorm").held


def test_a_longer_warmup_lowers_lr_sensitivity(request):
    result = measure(request, "warmup")
    assert result.numbers["sensitivity[warm-up 0.3]"] < result.numbers["sensitivity[warm-up 0.02]"]


def test_independent_weight_decay_lowers_lr_sensitivity_versus_coupled(request):
    assert measure(request, "weight_decay").held


def test_depth_raises_lr_sensitivity_faster_than_width(request):
    result = measure(request, "width_vs_depth")
    assert result.numbers["slope_depth"] > result.numbers["slope_width"]


def test_mup_simple_keeps_the_optimal_lr_within_one_grid_step_across_widths(request):
    result = measure(request, "mup")
    assert result.numbers["span_mup"] <= 0.5  # the paper grid's step: half a decade
    assert abs(result.numbers["drift_mup"]) < abs(result.numbers["drift_standard"])


def test_eps_1e_15_keeps_gradient_rms_clear_of_eps_where_1e_8_does_not_at_the_target_size(request):
    result = measure(request, "epsilon")
    assert result.numbers["flagged_1e-8"] > 0 and result.numbers["flagged_1e-15"] == 0
    assert result.numbers["smallest_grad_rms"] > 100 * 1e-8  # the proxy itself never nears eps: stated, measured


def test_the_forecast_flags_the_model_without_qk_layernorm_and_passes_it_with(request):
    assert measure(request, "forecast").held
