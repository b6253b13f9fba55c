"""A team's own check and optimizer, registered from its own package through the ``trainstab`` entry-point group,
run like built-in ones: in the battery, the summary, the baselines, the report, JUnit and ``trainstab check``.

The team's package is installed the way ``pip install -e .`` installs it: a ``.dist-info`` folder with an
``entry_points.txt`` on the path of the pytester project (none of our conftest), so every process of the run (pytest,
the sweep's workers, the CLI) finds it as Python finds any installed package.
"""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from user_project import USER_MODELS

# The long tier (`pytest -m long`, after the README's command in .ci/run):
# a user's package installed, and pytest runs of it.
pytestmark = pytest.mark.long
pytest_plugins = ["pytester"]

EXTENDING = Path(__file__).parents[2] / "docs" / "extending.md"


def doc_block(first_line: str) -> str:
    """docs/extending.md's fenced python block that starts with ``first_line``, as written."""
    blocks = re.findall(r"```python\n(.*?)```", EXTENDING.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


# The team's module as docs/extending.md writes it (its own check, with a baseline metric and a tolerance, and its
# own optimizer), plus one more optimizer that notes in a file each time a process builds it.
TEAM_MODULE = (
    doc_block("# myteam/stability.py\n")
    + doc_block("# myteam/stability.py, continued: an optimizer")
    + """
import os


def logged_amsgrad(param_groups, peak_lr):
    with open(os.environ["MYTEAM_OPTIMIZER_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return torch.optim.AdamW(param_groups, lr=peak_lr, amsgrad=True)


register_optimizer("logged_amsgrad", logged_amsgrad, description="AdamW with AMSGrad, logged")
"""
)

USER_TEST = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["mymodels:stable", "mymodels:unstable"])
def test_training_stability(model, check):
    check(model)
"""

FAST = ["--trainstab-steps=150", "--trainstab-lrs=1e-2,3e-1"]


@pytest.fixture
def team_project(pytester, monkeypatch):
    """A user's project with the team's package installed (its dist-info on the path pytester's runs use)."""
    pytester.makepyfile(mymodels=USER_MODELS, test_stability=USER_TEST)
    package = pytester.mkpydir("myteam")
    (package / "stability.py").write_text(TEAM_MODULE)
    info = pytester.mkdir("myteam-0.1.dist-info")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myteam\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[trainstab]\nmyteam = myteam.stability\n")
    monkeypatch.setenv("MYTEAM_OPTIMIZER_LOG", str(pytester.path / "optimizer.log"))
    return pytester


def test_a_teams_check_runs_with_the_battery_in_the_summary_baselines_report_and_junit(team_project, tmp_path):
    report, junit = tmp_path / "report", tmp_path / "junit.xml"
    result = team_project.runpytest_subprocess(
        *FAST,
        "-p",
        "no:cacheprovider",
        "--trainstab-baselines=baselines",
        "--trainstab-update-baseline",
        f"--trainstab-report={report}",
        f"--junitxml={junit}",
    )
    text = result.stdout.str()
    # The default set is the battery and the team's check: 8 tests per model.
    assert "16 items" in text or "collected 16" in text, text
    rows = {
        (m.group(1), m.group(2)): m.group(3)
        for m in re.finditer(r"^(mymodels:\w+)\s+(attention_below_100)\s+\S+\s+100\s+\S+\s+(pass|FAIL)", text, re.M)
    }
    assert rows == {
        ("mymodels:stable", "attention_below_100"): "pass",
        ("mymodels:unstable", "attention_below_100"): "FAIL",
    }, text
    assert "FAILED test_stability.py::test_training_stability[mymodels:unstable-attention_below_100]" in text
    assert "worst attention logit" in text and "is above 100" in text

    baseline = json.loads(
        (team_project.path / "baselines" / "mymodels_stable" / "attention_below_100.json").read_text()
    )
    assert list(baseline["metrics"]) == ["worst_attention"]
    assert baseline["metrics"]["worst_attention"] < 100
    assert baseline["tolerances"] == {"worst_attention": {"rel": 0.5, "abs": 5.0, "worse": "higher"}}

    data = json.loads((report / "trainstab-report.json").read_text())
    checks = [row["check"] for row in data["checks"] if row["model"] == "mymodels:stable"]
    assert checks[-1] == "attention_below_100" and len(checks) == 8  # after the battery, in report order

    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    stable = cases["test_training_stability[mymodels:stable-attention_below_100]"]
    properties = {p.get("name"): p.get("value") for p in stable.iter("property")}
    assert properties["trainstab_verdict"] == "pass"
    assert cases["test_training_stability[mymodels:unstable-attention_below_100]"].find("failure") is not None

    # A second run is held to the baseline it wrote: the team's metric is compared, and passes unchanged.
    again = team_project.runpytest_subprocess(
        *FAST, "-p", "no:cacheprovider", "--trainstab-baselines=baselines", "-k", "attention_below_100 and not unstable"
    )
    again.assert_outcomes(passed=1)


def test_a_teams_optimizer_and_check_run_in_trainstab_check_and_every_worker_builds_the_optimizer(team_project):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(team_project.path), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "trainstab", "check", "--model", "mymodels:stable", "--steps", "150"]
    command += [
        "--lrs",
        "1e-2,3e-1",
        "--set",
        "optimizer=logged_amsgrad",
        "--checks",
        "attention_logits,attention_below_100",
    ]
    checked = subprocess.run(command, cwd=team_project.path, env=env, capture_output=True, text=True, timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    header = "trainstab check: model=mymodels:stable --set optimizer=logged_amsgrad seed=0 steps=150 lrs=0.01,0.3"
    assert checked.stdout.startswith(header + "\n"), checked.stdout  # the optimizer as written, once
    assert re.search(r"attention_below_100\W+[\d.]+\W+100\W+off\W+pass", checked.stdout), checked.stdout
    assert len((team_project.path / "optimizer.log").read_text().split()) == 2  # one per LR (member)

    # Five LRs on two workers: two stacks (of at most four members), each trained by a process of the sweep's pool,
    # which imports the team's module itself to build the optimizer.
    (team_project.path / "optimizer.log").unlink()
    sweep = [
        sys.executable,
        "-m",
        "trainstab",
        "sweep",
        "--model",
        "mymodels:stable",
        "--steps",
        "20",
        "--workers",
        "2",
    ]
    sweep += ["--lrs", "1e-3,3e-3,1e-2,3e-2,3e-1", "--set", "optimizer=logged_amsgrad", "--no-progress"]
    swept = subprocess.Popen(sweep, cwd=team_project.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = (stream.decode() for stream in swept.communicate(timeout=600))
    assert swept.returncode == 0, out + err
    built = (team_project.path / "optimizer.log").read_text().split()
    assert len(built) == 5 and str(swept.pid) not in built  # every member's, none in the CLI's own process

    unknown = subprocess.run(
        [*command[:-4], "--set", "optimizer=adamw_amsgrd"],
        cwd=team_project.path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2
    assert "adamw_amsgrad" in unknown.stdout + unknown.stderr  # the registered name is offered


def test_a_team_module_that_fails_to_import_is_refused_naming_the_entry_point(team_project):
    (team_project.path / "myteam" / "stability.py").write_text("import not_a_module\n")
    result = team_project.runpytest_subprocess(*FAST, "-p", "no:cacheprovider")
    text = result.stdout.str() + result.stderr.str()
    assert "trainstab extension 'myteam' = 'myteam.stability' (package myteam) failed to import" in text, text
    assert "ModuleNotFoundError" in text
    assert result.ret != 0
