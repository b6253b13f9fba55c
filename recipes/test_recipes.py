"""The training libraries' recipes (the factories next to this file), gated as a user gates them.

Each library is installed only for this tier (``recipes/README.md`` gives the commands; none replaces the CPU
torch); a test whose library is absent skips with its install line. Run with ``pytest recipes``: the README's
test command and CI's tiers leave it out (the installs would fit CI's time budget; the ten sweeps do not).
"""

import importlib
import importlib.util

import pytest

from trainstab.pytest_plugin.testing import case, expect_failure

INSTALL = {  # module: what to install, pinned, with --no-deps (recipes/README.md)
    "torchtitan": "torchtitan==0.3.0 spmd_types==0.2.3 einops tyro docstring_parser triton",
    "litgpt": "litgpt==0.5.13 lightning lightning_utilities torchmetrics psutil",
    "x_transformers": "x-transformers==2.31.10 loguru einops einx frozendict torch_einops_utils",
    "olmo_core": "torch==2.13.0 ai2-olmo-core==3.0.0 (with its dependencies: name your torch in the same command)",
    "transformers": "'trainstab[hf]' (transformers with its dependencies)",
}
NANOGPT = "nanoGPT is not on PyPI: clone karpathy/nanoGPT and put its folder (its model.py) on PYTHONPATH"


def _missing(module):
    """Whether ``module`` cannot be imported; nanoGPT's is the ``model`` module that defines GPT and GPTConfig."""
    if module != "model":
        return importlib.util.find_spec(module) is None
    try:
        nanogpt = importlib.import_module("model")
    except ImportError:
        return True
    return not (hasattr(nanogpt, "GPT") and hasattr(nanogpt, "GPTConfig"))


def _needs(module):
    missing = _missing(module)
    no_deps = "" if module in ("olmo_core", "transformers") else "--no-deps "
    why = NANOGPT if module == "model" else f"needs {module}: pip install {no_deps}{INSTALL[module]}"
    return pytest.mark.skipif(missing, reason=why)


@pytest.mark.parametrize(
    ("model", "check"),
    [
        expect_failure("torchtitan_models:llama3", "attention_logits", "no qk-norm", _needs("torchtitan")),
        case("torchtitan_models:qwen3", "attention_logits", _needs("torchtitan")),
        expect_failure("litgpt_models:gpt", "attention_logits", "no norm_qk", _needs("litgpt")),
        case("litgpt_models:gpt_qk_norm", "attention_logits", _needs("litgpt")),
        expect_failure("x_transformers_models:decoder", "attention_logits", "no qk-norm", _needs("x_transformers")),
        case("x_transformers_models:decoder_qk_norm", "attention_logits", _needs("x_transformers")),
        expect_failure("olmo_core_models:olmo2_no_qk_norm", "attention_logits", "no qk-norm", _needs("olmo_core")),
        case("olmo_core_models:olmo2", "attention_logits", _needs("olmo_core")),
        expect_failure("nanogpt_models:gpt", "attention_logits", "nanoGPT has no qk-norm", _needs("model")),
        expect_failure("hf:llama", "attention_logits", "no qk-norm", _needs("transformers")),
        case("hf:olmo2", "attention_logits", _needs("transformers")),
    ],
)
def test_each_librarys_model_is_judged_as_its_attention_deserves(model, check):
    check(model)
