"""Gating a change against its base with ``--trainstab-against``, in a user's git repository (pytester, none of our
conftest): the demonstrations of issue 32. Each run trains the model on 3 seeds as the working tree has it and as
``main`` has it (the quick profile, 60 steps: about 6 small sweeps a run).

Long tier: each test trains two to four runs of six sweeps.
"""

import json
import re
import subprocess

import pytest

from user_project import USER_MODELS

pytestmark = pytest.mark.long
pytest_plugins = ["pytester"]

BASE_MODELS = USER_MODELS.replace(
    """def stable(size):
    return Tiny(size, qk_norm=True)


def unstable(size):
    return Tiny(size, qk_norm=False)
""",
    """def build(size):
    return Tiny(size, qk_norm=True)
""",
)
TEST_FILE = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["mymodels:build"], checks=["no_divergence", "attention_logits", "log_z", "lr_sensitivity"])
def test_training_stability(model, check):
    check(model)
"""
PYPROJECT = """
[tool.pytest.ini_options]
pythonpath = ["."]
trainstab_profile = "quick"
trainstab_steps = 60
"""


def _git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repository(pytester):
    """A user's repository: the model, its stability test and configuration committed on main; then a branch."""
    assert "def build(size)" in BASE_MODELS
    pytester.makepyfile(mymodels=BASE_MODELS, test_stability=TEST_FILE)
    pytester.makefile(".toml", pyproject=PYPROJECT)
    pytester.makefile("", **{".gitignore": "__pycache__/\n.pytest_cache/\n"})
    _git(pytester.path, "init", "-q", "-b", "main")
    _git(pytester.path, "config", "user.email", "dev@example.com")
    _git(pytester.path, "config", "user.name", "dev")
    _git(pytester.path, "add", ".")
    _git(pytester.path, "commit", "-q", "-m", "the model")
    _git(pytester.path, "checkout", "-q", "-b", "change")
    return pytester


def _change(pytester, old, new):
    """Edit the working tree's model (left uncommitted: the head is the working tree)."""
    path = pytester.path / "mymodels.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _run(pytester, *args, env=None):
    if env:
        for key, value in env.items():
            pytester._monkeypatch.setenv(key, value)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--trainstab-against=main", *args)


def _summary_row(result, check):
    """The row of ``check`` in the summary's side-by-side table (lr, base, head, difference, band, call)."""
    lines = result.stdout.lines
    start = next(
        i for i, line in enumerate(lines) if line.startswith("trainstab: against main (") and "(means)" in line
    )
    return next(line for line in lines[start:] if line.startswith("mymodels:build") and f" {check} " in line)


def _difference_and_call(row):
    """The paired difference (a number, in its scale) and the call of a summary row."""
    found = re.search(r"\s([+-][\d.e+-]+)(?: dex)?\s+\S+(?: dex)?\s+(within|worse)$", row)
    assert found, row
    return float(found.group(1)), found.group(2)


def test_a_change_that_removes_qk_norm_fails_its_attention_logits_against_main(repository):
    _change(repository, "return Tiny(size, qk_norm=True)", "return Tiny(size, qk_norm=False)")
    result = _run(repository, "-n", "2", "--dist", "loadgroup", "--junitxml=junit.xml", "--trainstab-report=report")
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines(
        [
            "*attention_logits failed for mymodels:build (seed 0): attention logits grew to*",
            "worse than main (*) beyond the noise of the pair (seeds 0,1,2):",
            "  max_attention_logit at lr=0.3: base *, head *, difference +*dex (band *dex)",
        ]
    )
    assert _summary_row(result, "attention_logits").endswith(" worse")
    assert "trainstab: against main (" in result.stdout.str() and "3 seeds on each side" in result.stdout.str()
    # Both sides in the JUnit properties and the report's JSON (per seed) and figure data.
    junit = (repository.path / "junit.xml").read_text()
    assert 'name="trainstab_against_status" value="worse"' in junit
    report = json.loads((repository.path / "report" / "trainstab-report.json").read_text())
    (row,) = [r for r in report["checks"] if r["check"] == "attention_logits"]
    assert row["against"]["status"] == "worse" and row["against"]["seeds"] == [0, 1, 2]
    at_top = next(d for d in row["against"]["differences"] if d["lr"] == 0.3)
    assert len(at_top["base"]) == len(at_top["head"]) == 3 and at_top["worse"]
    assert report["models"]["mymodels:build"]["against"]["name"].startswith("main (")


def test_a_rename_passes_with_a_paired_difference_of_zero_and_with_the_cache_the_base_trains_nothing(repository):
    _change(repository, "y = F.scaled_dot_product_attention(", "attended = F.scaled_dot_product_attention(")
    _change(repository, "x = x + y.transpose(1, 2)", "x = x + attended.transpose(1, 2)")
    result = _run(repository, "--trainstab-cache=sweeps")
    result.assert_outcomes(passed=4)
    for check in ("no_divergence", "attention_logits", "log_z", "lr_sensitivity"):
        assert _difference_and_call(_summary_row(result, check)) == (0.0, "within")
    # The head's 3 sweeps trained and kept; the base, the same model, read all 3 of them from the cache.
    result.stdout.fnmatch_lines(["trainstab: cache *sweeps: 3 sweep(s) read, 3 trained and kept"])


def test_a_tenfold_init_fails_against_main(repository):
    _change(
        repository,
        "def build(size):\n    return Tiny(size, qk_norm=True)",
        "def build(size):\n    model = Tiny(size, qk_norm=True)\n"
        "    for name, weight in model.named_parameters():\n"
        "        if name.endswith('weight') and weight.ndim == 2 and not name.startswith('emb'):\n"
        "            weight.data.mul_(10)\n"
        "    return model",
    )
    result = _run(repository)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1
    result.stdout.fnmatch_lines(["*log_z failed for mymodels:build*", "worse than main (*) beyond the noise*"])


def test_another_cpu_kernel_set_with_no_code_change_passes(repository):
    result = _run(repository, env={"ATEN_CPU_CAPABILITY": "avx2"})
    result.assert_outcomes(passed=4)
    for check in ("no_divergence", "attention_logits", "log_z", "lr_sensitivity"):
        assert _difference_and_call(_summary_row(result, check)) == (0.0, "within")


def test_a_base_that_does_not_build_fails_each_check_with_a_line_naming_the_revision(repository):
    # The base's factory raises: committed as main's code, then the working tree fixes it.
    _git(repository.path, "checkout", "-q", "main")
    _change(repository, "def build(size):\n", "def build(size):\n    raise ValueError('width must be even')\n")
    _git(repository.path, "commit", "-q", "-am", "a broken factory on main")
    _git(repository.path, "checkout", "-q", "change")
    _git(repository.path, "merge", "-q", "main")
    _change(repository, "    raise ValueError('width must be even')\n", "")
    result = _run(repository)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        ["*trainstab: mymodels:build: the base main (*) could not be trained: *ValueError: width must be even*"]
    )


def test_a_model_only_the_change_has_is_judged_by_its_bounds_alone_and_says_so(repository):
    (repository.path / "newmodels.py").write_text(BASE_MODELS)
    repository.makepyfile(
        test_new="""
        from trainstab.testing import parametrize_with_checks


        @parametrize_with_checks(["newmodels:build"], checks=["attention_logits"])
        def test_new_model(model, check):
            check(model)
        """
    )
    result = _run(repository, "test_new.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "trainstab: newmodels:build: not compared with main (*): newmodels does not exist there, "
            "so it is new in this change; judged by its absolute bound alone"
        ]
    )
