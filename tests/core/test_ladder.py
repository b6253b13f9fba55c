"""Size ladders: configs per rung and the parameter count the forecasts use."""

import pytest

from trainstab.core.config import ModelConfig, SweepConfig
from trainstab.core.errors import TrainstabError
from trainstab.core.ladder import depth_configs, non_embedding_parameters, width_configs


def test_a_width_ladder_keeps_the_head_dimension():
    configs = width_configs(SweepConfig(), [64, 32, 48])
    shapes = [(c.model.width, c.model.heads, c.model.head_dim) for c in configs]
    assert shapes == [(32, 2, 16), (48, 3, 16), (64, 4, 16)]


def test_a_width_that_does_not_fit_the_head_dimension_is_refused_with_examples():
    with pytest.raises(TrainstabError, match=r"not a positive multiple of the head dimension 16.*16, 32, 48, 64"):
        width_configs(SweepConfig(), [40])


def test_a_depth_ladder_changes_only_the_depth():
    configs = depth_configs(SweepConfig(), [4, 1])
    assert [c.model.depth for c in configs] == [1, 4]
    assert {c.model.width for c in configs} == {SweepConfig().model.width}


def test_non_embedding_parameters_of_the_reference_are_twelve_d_squared_per_block_plus_gains():
    for width in (32, 128):  # at 128 the MLP's hidden width equals the vocabulary size, 512
        config = ModelConfig(width=width, heads=width // 16)
        blocks = config.depth * (12 * width**2 + 2 * width + 2 * config.head_dim)  # matrices, 2 norms, q/k norms
        assert non_embedding_parameters("reference", config) == blocks + width  # + the final norm


def test_the_count_does_not_change_with_the_vocabulary():
    small, large = ModelConfig(vocab_size=256), ModelConfig(vocab_size=1024)
    assert non_embedding_parameters("reference", small) == non_embedding_parameters("reference", large)
