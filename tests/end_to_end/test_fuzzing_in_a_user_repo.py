"""The README's fuzzing example, as written, in a user's repository with none of our conftest.

Hypothesis' own defaults fail training properties (a 200 ms deadline against
one-second examples); the ``@training_settings`` decorator the example carries
(trainstab.core.hypothesis_profiles) must make it pass as written, off CI and on it,
while a profile of the user's own still wins.
"""

import re

import pytest

from user_project import USER_MODELS, readme_block

pytestmark = pytest.mark.long  # the long tier: `pytest -m long` (.ci/run runs it after the main command)

pytest_plugins = ["pytester"]

# The user's factory: a pre-LN block with qk-layernorm, written the way a user writes one.
MODELS = (
    USER_MODELS
    + """

def build(size):
    return Tiny(size, qk_norm=True)
"""
)


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)  # this repository's CI sets its own
    pytester.mkpydir("mypkg")
    (pytester.path / "mypkg" / "models.py").write_text(MODELS)
    pytester.makepyfile(test_fuzz=readme_block("from hypothesis import example, given"))
    pytester.syspathinsert()
    return pytester


@pytest.mark.parametrize("ci", [None, "true"], ids=["dev", "ci"])
def test_the_readmes_fuzzing_example_passes_as_written_off_ci_and_on_it(project, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--hypothesis-show-statistics")
    result.assert_outcomes(passed=1)
    examples = "10" if ci else "5"  # trainstab-ci: 10 derandomized; trainstab-dev: 5
    assert re.search(rf"{examples} passing, 0 failing", result.stdout.str()), result.stdout


def test_a_users_own_settings_still_win_over_the_shipped_profile(project, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    project.makeconftest(
        "from hypothesis import settings\n"
        "settings.register_profile('mine', max_examples=2, deadline=None)\n"
        "settings.load_profile('mine')\n"
    )
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--hypothesis-show-statistics")
    result.assert_outcomes(passed=1)
    assert re.search(r"2 passing, 0 failing", result.stdout.str()), result.stdout
