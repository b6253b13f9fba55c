import math

import pytest
from hypothesis import given, settings

from trainstab import TrainstabError
from trainstab.explore.strategies import (
    POINTS_PER_DECADE,
    FuzzPoint,
    batch_sizes,
    beta2s,
    depths,
    epsilons,
    grad_clips,
    learning_rates,
    stability_region,
    warmup_fractions,
    widths_and_heads,
)


@settings(max_examples=50)
@given(learning_rates(1e-3, 0.3))
def test_learning_rates_stay_inside_their_bounds(lr):
    assert 1e-3 <= lr <= 0.3 * 1.001


@settings(max_examples=50)
@given(widths_and_heads((16, 24, 32), (2, 3, 4)))
def test_heads_always_divide_the_width(pair):
    width, heads = pair
    assert width % heads == 0


@settings(max_examples=20)
@given(stability_region(lr=(1e-3, 1.0), qk_layernorm=(False, True), depth=(1, 3), widths=(16, 32)))
def test_a_region_yields_complete_points(point):
    assert isinstance(point, FuzzPoint)
    assert 1 <= point.depth <= 3 and point.width in (16, 32)
    overrides = dict(item.split("=", 1) for item in point.overrides())
    assert overrides["qk_layernorm"] in ("True", "False")
    assert "lr" not in overrides


@settings(max_examples=50)
@given(learning_rates(1e-3, 1.0))
def test_learning_rates_lie_on_a_log_grid_so_shrinking_walks_it(lr):
    position = math.log10(lr / 1e-3) * POINTS_PER_DECADE
    assert abs(position - round(position)) < 0.02  # 3 significant digits of rounding


def test_a_point_pastes_into_an_example_line():
    point = FuzzPoint(lr=0.3, qk_layernorm=False)
    assert eval(repr(point)) == point  # the @example(...) line the failure prints


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: learning_rates(0.3, 1e-3), "learning rate bounds"),
        (lambda: learning_rates(0.0, 1.0), "learning rate bounds"),
        (lambda: epsilons(1e-6, math.inf), "eps bounds"),
        (lambda: warmup_fractions(0.0, 1.0), "must be < 1"),
        (lambda: beta2s(0.9, 1.0), "must be < 1"),
        (lambda: grad_clips(-1.0, 1.0), "grad clip bounds"),
        (lambda: batch_sizes(5, 7), "no power of two"),
        (lambda: depths(3, 1), "depth bounds"),
        (lambda: widths_and_heads((30,), (4,)), "divides by a head count"),
        (lambda: stability_region(weight_decay_mode=("l2",)), "weight decay modes"),
    ],
)
def test_invalid_bounds_get_a_clear_error(make, message):
    with pytest.raises(TrainstabError, match=message):
        make()


def test_the_optimizer_is_a_knob_pinned_in_the_repr_when_it_is_not_adamw():
    from hypothesis import find

    from trainstab.core.errors import TrainstabError

    region = stability_region(optimizer=("adamw", "muon"))
    muon = find(region, lambda point: point.optimizer == "muon")
    assert eval(repr(muon)) == muon and "optimizer='muon'" in repr(muon) and "optimizer=muon" in muon.overrides()
    assert "optimizer" not in repr(FuzzPoint(lr=0.3))  # examples pinned before the knob existed read the same
    with pytest.raises(TrainstabError, match="optimizer 'adam' is unknown"):
        stability_region(optimizer=("adam",))
