"""z-loss and log Z on the bundled corpus.

What the proxy shows (see the core issue's note for the search): without
z-loss, log Z starts at about ln V + 0.4 = 6.6 and drifts slowly *down* (to
about 5 after 1,000 steps at constant LR 0.03-0.3, no weight decay); it never
grew away from 0 within the 2,000-step, 512- and 4,096-token settings we tried,
so the paper's late-training output-logit divergence is not reproduced here.
What is reproduced and tested is the mitigation's mechanism: z-loss pulls log Z
to 0, monotonically in its coefficient, without hurting the loss.
"""

import dataclasses
import functools

import pytest

from trainstab.core.config import SweepConfig, TrainConfig
from trainstab.core.results import RunResult
from trainstab.train.sweep import run_sweep

LOG_Z_NEAR_ZERO = 1.0  # |log Z| below this counts as pinned at 0
LOG_Z_FAR_FROM_ZERO = 4.0  # without z-loss log Z stays above this (ln 512 = 6.2 at init)
LOSS_COST_OF_Z_LOSS = 0.05  # z-loss must not cost more final loss than this
DRIFT_SETTING = TrainConfig(steps=300, weight_decay_mode="none", lr_floor=10.0, probe_every=50)  # constant LR


@functools.cache
def run_with_z_loss(coefficient: float) -> RunResult:
    config = SweepConfig(train=dataclasses.replace(DRIFT_SETTING, z_loss=coefficient), lrs=(0.1,), workers=1)
    (run,) = run_sweep(config).runs
    print(f"seed={config.train.seed} z_loss={coefficient} log_z={run.log_z_mean:.3f} final={run.final_loss:.4f}")
    return run


@pytest.mark.slow
def test_without_z_loss_log_z_stays_far_from_zero():
    assert run_with_z_loss(0.0).log_z_mean > LOG_Z_FAR_FROM_ZERO


@pytest.mark.slow
def test_z_loss_pins_log_z_near_zero_without_hurting_the_loss():
    with_z, without = run_with_z_loss(1e-2), run_with_z_loss(0.0)
    assert abs(with_z.log_z_mean) < LOG_Z_NEAR_ZERO
    assert with_z.final_loss < without.final_loss + LOSS_COST_OF_Z_LOSS


@pytest.mark.slow
def test_log_z_falls_monotonically_with_the_z_loss_coefficient():
    log_z = [run_with_z_loss(c).log_z_mean for c in (0.0, 1e-4, 1e-3, 1e-2)]
    assert log_z == sorted(log_z, reverse=True)
