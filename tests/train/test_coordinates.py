"""The µP coordinate check: standard parameterization fails it, µParam (simple) passes it."""

import pytest
from torch import nn

from trainstab.core.config import DEFAULT_SLOPE_BAND, CoordinateConfig, SweepConfig
from trainstab.core.errors import TrainstabError
from trainstab.run.overrides import apply_overrides
from trainstab.train.coordinates import coordinate_check

COORDINATES = CoordinateConfig(widths=(32, 64, 128), steps=10, lr=1e-2)


@pytest.fixture(scope="module")
def standard():
    return coordinate_check(apply_overrides(SweepConfig(), ["parameterization=standard"]), COORDINATES)


@pytest.fixture(scope="module")
def mup():
    return coordinate_check(apply_overrides(SweepConfig(), ["parameterization=mup_simple"]), COORDINATES)


def test_standard_parameterization_activations_grow_with_width_and_fail(standard):
    print("standard slopes", standard.slopes)  # measured: +1.74, +1.51
    assert not standard.passed
    assert max(standard.slopes) > 2 * DEFAULT_SLOPE_BAND


def test_mup_simple_keeps_activation_scale_across_widths_and_passes(mup):
    print("mup slopes", mup.slopes)  # measured: -0.13, -0.24
    assert mup.passed


def test_both_start_from_the_same_width_independent_init(standard, mup):
    assert standard.rms[0][0] == mup.rms[0][0]  # step 0: before any update, same weights


def test_fewer_than_three_widths_are_refused():
    with pytest.raises(TrainstabError, match="at least 3 widths"):
        coordinate_check(SweepConfig(), CoordinateConfig(widths=(32, 64)))


def test_a_model_without_a_block_list_gets_a_clear_error():
    from trainstab.train.coordinates import _blocks

    with pytest.raises(TrainstabError, match=r"nn\.ModuleList of 2 blocks"):
        _blocks(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), depth=2)


def test_the_check_trains_on_one_thread_whatever_the_callers_thread_count(monkeypatch):
    # As a sweep's stacks do: the numbers do not depend on the machine's cores, and beside xdist workers two
    # busy-waiting thread pools do not fight over the cores. The caller's count is restored after.
    import torch

    from trainstab.train import coordinates

    seen = []
    train = coordinates.train_members

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return train(*args, **kwargs)

    monkeypatch.setattr(coordinates, "train_members", counting)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        coordinate_check(SweepConfig(), CoordinateConfig(widths=(16, 32, 48), steps=2, lr=1e-2))
        assert seen == [1, 1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
