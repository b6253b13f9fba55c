"""The JSON Schemas of the baseline files and the report (trainstab.gate.schemas), and ``trainstab baselines
validate``: the shipped schemas are the generated ones, committed files pass both the schema and the reader, and
a damaged file is named in one line."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from trainstab.cli.main import main
from trainstab.gate.schemas import SCHEMA_FOLDER, SCHEMAS, baseline_schema

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "fixtures" / "baselines"


def test_the_shipped_schemas_are_the_generated_ones():
    for name, make in SCHEMAS.items():
        assert json.loads((SCHEMA_FOLDER / name).read_text()) == make(), f"regenerate {name}"
        jsonschema.Draft202012Validator.check_schema(make())


def test_every_committed_baseline_passes_the_schema_and_the_reader(capsys):
    files = sorted(COMMITTED.rglob("*.json"))
    assert len(files) >= 7
    for path in files:
        jsonschema.validate(json.loads(path.read_text()), baseline_schema())
    assert main(["baselines", "validate", str(COMMITTED)]) == 0
    said = capsys.readouterr().out.strip()
    assert said.startswith(f"{len(files)} baseline file(s) in ") and said.endswith("baselines: every one valid")


def _attention(path: Path) -> dict:
    return json.loads((path / "reference" / "attention_logits.json").read_text())


#: Damage a pull request could do, each refused by the schema and by the reader (what the command prints).
DAMAGE = {
    "another format version": (lambda d: d.update(trainstab_baseline=2), '"trainstab_baseline" is 2'),
    "a tolerance turned around": (
        lambda d: d["tolerances"]["max_attention_logit"].update(worse="lower"),
        'has "worse": "lower"',
    ),
    "a negative tolerance": (lambda d: d["tolerances"]["max_attention_logit"].update(rel=-1), "must be"),
    "a metric removed": (lambda d: d["metrics"].pop("max_attention_logit"), 'has no "max_attention_logit"'),
    "a metric of another check": (lambda d: d["metrics"].update(lr_sensitivity=0.1), "does not record"),
    "a value of the wrong type": (
        lambda d: d["metrics"]["max_attention_logit"].update({"0.01": "12"}),
        "not a number or null",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_baseline_fails_the_schema_and_is_named_in_one_line(tmp_path, capsys, damage):
    folder = tmp_path / "baselines"
    shutil.copytree(COMMITTED, folder)
    edit, words = DAMAGE[damage]
    data = _attention(folder)
    edit(data)
    path = folder / "reference" / "attention_logits.json"
    path.write_text(json.dumps(data, indent=2))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, baseline_schema())
    assert main(["baselines", "validate", str(folder)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{path}: ") and words in lines[0]
    assert lines[1] == f"1 of 7 baseline file(s) in {folder} cannot be used"


def test_what_a_schema_cannot_say_the_reader_still_refuses(tmp_path, capsys):
    # Per-LR keys that are not the protocol's LRs: valid JSON Schema, a file no run can compare with.
    folder = tmp_path / "baselines"
    shutil.copytree(COMMITTED, folder)
    data = _attention(folder)
    data["metrics"]["max_attention_logit"]["0.5"] = data["metrics"]["max_attention_logit"].pop("0.3")
    (folder / "reference" / "attention_logits.json").write_text(json.dumps(data))
    jsonschema.validate(data, baseline_schema())
    assert main(["baselines", "validate", str(folder)]) == 1
    assert 'but "protocol" lists' in capsys.readouterr().out


def test_files_out_of_place_are_named_and_the_folder_must_exist(tmp_path, capsys):
    folder = tmp_path / "baselines"
    shutil.copytree(COMMITTED, folder)
    (folder / "stray.json").write_text("{}")  # not in a model's folder
    (folder / "reference" / "no_such_check.json").write_text("{}")
    moved = folder / "other-model"
    moved.mkdir()
    shutil.copy(folder / "reference" / "log_z.json", moved / "log_z.json")  # its "model" is reference
    (folder / "reference" / "log_z.obtained.json").write_text("{}")  # a run's scratch file: not read
    assert main(["baselines", "validate", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"{folder / 'stray.json'}: not where a baseline lives" in out
    assert "no check named 'no_such_check' records a baseline" in out
    assert f"{moved / 'log_z.json'}: \"model\" is 'reference', whose baselines live in reference/" in out
    assert "obtained" not in out and "3 of 10 baseline file(s)" in out
    assert main(["baselines", "validate", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_without_a_folder_it_validates_the_configured_one(pytester, capsys):
    pytester.makeini("[pytest]\ntrainstab_baselines = kept\n")
    shutil.copytree(COMMITTED, pytester.path / "kept")
    assert main(["baselines", "validate"]) == 0
    assert "7 baseline file(s)" in capsys.readouterr().out


def test_the_readmes_pre_commit_hook_runs_the_command_on_the_folder_init_configures(pytester):
    yaml = pytest.importorskip("yaml")  # transformers' dependency, in the test extra
    from user_project import readme_block

    (hook,) = yaml.safe_load(readme_block("# .pre-commit-config.yaml", "yaml"))["repos"][0]["hooks"]
    assert hook["pass_filenames"] is False and re.match(hook["files"], "stability/baselines/m/log_z.json")
    pytester.makeini("[pytest]\ntrainstab_baselines = stability/baselines\n")  # what trainstab init writes
    shutil.copytree(COMMITTED, pytester.path / "stability" / "baselines")
    command = [sys.executable, "-m", "trainstab", *hook["entry"].split()[1:]]
    assert hook["entry"].split()[0] == "trainstab"
    assert subprocess.run(command, cwd=pytester.path, capture_output=True, check=False).returncode == 0
    (pytester.path / "stability" / "baselines" / "reference" / "log_z.json").write_text("{")
    result = subprocess.run(command, cwd=pytester.path, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "log_z.json: " in result.stdout


def test_links_are_read_as_a_run_reads_them(tmp_path, capsys):
    folder = tmp_path / "baselines"
    shutil.copytree(COMMITTED, tmp_path / "elsewhere")
    folder.mkdir()
    (folder / "reference").symlink_to(tmp_path / "elsewhere" / "reference")  # a linked model folder: read
    (tmp_path / "elsewhere" / "reference" / "log_z.json").rename(tmp_path / "moved.json")
    (tmp_path / "elsewhere" / "reference" / "log_z.json").symlink_to(tmp_path / "nowhere.json")  # dangling
    (folder / "loop").symlink_to(folder)  # a link back up: walked once
    assert main(["baselines", "validate", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "log_z.json: is a broken link: a run would see no baseline here" in out
    assert "1 of 7 baseline file(s)" in out


def test_an_empty_folder_says_there_is_nothing_to_validate(tmp_path, capsys):
    assert main(["baselines", "validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("no baseline file in ")


def test_a_teams_metric_tolerance_fits_the_schema_and_a_turned_battery_one_does_not():
    data = json.loads((COMMITTED / "reference" / "attention_logits.json").read_text())
    data["tolerances"]["attention_below_100"] = {"rel": 0.1, "abs": 0.0, "worse": "higher"}  # a team's check
    jsonschema.validate(data, baseline_schema())
    data["tolerances"]["attention_below_100"]["worse"] = "sideways"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, baseline_schema())
