"""The base revision's side of ``--against``: which models it can compare, and what it says when it cannot.

Each test makes a git repository with a user's model file; nothing here trains but two 5-step sweeps, in the long
tier (the training demonstrations are ``tests/end_to_end/test_gating_against_the_base.py``)."""

import dataclasses
import json
import stat
import subprocess

import pytest

from trainstab.core.config import SweepConfig, TrainConfig
from trainstab.core.errors import TrainstabError
from trainstab.gate import base_worker
from trainstab.gate.against import BaseTrainer, import_folder, not_in_the_repository

MODEL = """
from torch import nn


def build(size):
    return nn.Sequential(nn.Embedding(size.vocab_size, size.width), nn.Linear(size.width, size.vocab_size))
"""

# The smallest model the battery can train: one head of attention (its logits are captured) and an output layer.
ATTENTION_MODEL = """
import torch.nn.functional as F
from torch import nn


class Tiny(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.emb = nn.Embedding(size.vocab_size, size.width)
        self.head = nn.Linear(size.width, size.vocab_size)

    def forward(self, idx):
        x = self.emb(idx).unsqueeze(1)  # (B, 1, T, d): one head
        return self.head(F.scaled_dot_product_attention(x, x, x, is_causal=True).squeeze(1))  # (B, T, V)


def build(size):
    return Tiny(size)
"""


def _git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def _repository(tmp_path, files):
    tmp_path.mkdir(parents=True, exist_ok=True)
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "dev@example.com")
    _git(tmp_path, "config", "user.name", "dev")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


@pytest.fixture
def module_name(request):
    """A model module name no other test imports (find_spec answers from sys.modules once one is imported)."""
    return f"againstmodels_{request.node.name.replace('-', '_')[:40]}"


def _worktrees(folder):
    done = subprocess.run(["git", "-C", str(folder), "worktree", "list"], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()


def test_a_model_built_into_trainstab_or_installed_outside_the_repository_is_not_compared(tmp_path):
    assert "built into trainstab" in not_in_the_repository("reference", tmp_path)
    assert "built into trainstab" in not_in_the_repository("hf:llama", tmp_path)
    outside = not_in_the_repository("json.decoder:JSONDecoder", tmp_path)
    assert "outside the repository" in outside and "same code at both revisions" in outside


def test_a_repository_model_is_found_in_the_folder_the_head_imports_it_from(tmp_path, monkeypatch, module_name):
    repo = _repository(tmp_path, {f"src/{module_name}/__init__.py": "", f"src/{module_name}/models.py": MODEL})
    monkeypatch.syspath_prepend(str(repo / "src"))
    assert import_folder(f"{module_name}.models") == (repo / "src").resolve()
    assert not_in_the_repository(f"{module_name}.models:build", repo) == ""


def test_outside_a_git_repository_the_error_says_so(tmp_path):
    with pytest.raises(TrainstabError, match="is not in a git repository"):
        BaseTrainer(tmp_path, "main", None)


def test_a_revision_that_does_not_exist_is_named_in_the_error(tmp_path, module_name):
    repo = _repository(tmp_path, {f"{module_name}.py": MODEL})
    with pytest.raises(TrainstabError, match="'no-such-branch' is not a revision of the repository"):
        BaseTrainer(repo, "no-such-branch", None)


def test_the_default_base_is_the_merge_base_with_the_default_branch(tmp_path, module_name):
    repo = _repository(tmp_path, {f"{module_name}.py": MODEL})
    _git(repo, "checkout", "-q", "-b", "change")
    (repo / f"{module_name}.py").write_text(MODEL + "\n# changed\n")
    _git(repo, "commit", "-q", "-am", "change")
    base = BaseTrainer(repo, "merge-base", None)
    main = subprocess.run(["git", "-C", str(repo), "rev-parse", "main"], capture_output=True, text=True, check=True)
    assert base.revision.commit == main.stdout.strip()
    assert base.name.startswith("the merge base of HEAD with main (")


def _config(model):
    return SweepConfig(model_name=model)


def test_a_model_the_base_does_not_have_is_new_and_judged_by_its_bounds_alone(tmp_path, monkeypatch, module_name):
    repo = _repository(tmp_path, {"README.md": "a repository\n"})
    _git(repo, "checkout", "-q", "-b", "change")
    (repo / f"{module_name}.py").write_text(MODEL)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "a new model")
    monkeypatch.syspath_prepend(str(repo))
    base = BaseTrainer(repo, "main", None)
    try:
        found = base.sweeps([_config(f"{module_name}:build")])
    finally:
        base.close()
    assert found.sweeps == ()
    assert found.absent == f"{module_name} does not exist there, so it is new in this change"


def test_a_factory_the_base_does_not_have_is_new_too(tmp_path, monkeypatch, module_name):
    repo = _repository(tmp_path, {f"{module_name}.py": MODEL})
    (repo / f"{module_name}.py").write_text(MODEL + "\n\ndef wider(size):\n    return build(size)\n")
    monkeypatch.syspath_prepend(str(repo))
    base = BaseTrainer(repo, "main", None)
    try:
        found = base.sweeps([_config(f"{module_name}:wider")])
    finally:
        base.close()
    assert found.absent == f"{module_name} has no wider there, so it is new in this change"


def test_a_base_that_does_not_build_is_an_error_naming_the_revision_and_the_checkout_is_removed(
    tmp_path, monkeypatch, module_name
):
    repo = _repository(tmp_path, {f"{module_name}.py": MODEL.replace("def build(size):", "def build(size) oops:")})
    (repo / f"{module_name}.py").write_text(MODEL)  # the head is fixed; main's file does not parse
    monkeypatch.syspath_prepend(str(repo))
    base = BaseTrainer(repo, "main", None)
    try:
        with pytest.raises(TrainstabError) as error:
            base.sweeps([_config(f"{module_name}:build")])
        checkout = base.tree()
        assert checkout.exists() and len(_worktrees(repo)) == 2
    finally:
        base.close()
    assert str(error.value).startswith(f"the base main ({base.revision.short}) could not be trained: SyntaxError")
    assert f"{module_name}.py" in str(error.value)
    assert not checkout.exists() and not checkout.parent.exists()
    assert len(_worktrees(repo)) == 1  # unregistered from the repository too
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == f" M {module_name}.py\n"  # the user's working tree is as it was


def test_an_installed_copy_that_shadows_the_checkout_is_refused_by_the_child(tmp_path, monkeypatch, module_name):
    installed = tmp_path / "site"
    installed.mkdir()
    (installed / f"{module_name}.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(installed))
    status, line = base_worker._located(module_name, tmp_path / "checkout", "build")
    assert status == "error"
    assert f"{module_name} was imported from {installed / module_name}.py, not from the checkout" in line


def test_a_base_package_that_fails_to_import_is_an_error_not_a_new_model(tmp_path, monkeypatch, module_name):
    broken = "import a_dependency_that_is_not_installed\n"
    repo = _repository(tmp_path, {f"{module_name}/__init__.py": broken, f"{module_name}/models.py": MODEL})
    (repo / module_name / "__init__.py").write_text("")  # the head dropped the dependency
    monkeypatch.syspath_prepend(str(repo))
    base = BaseTrainer(repo, "main", None)
    try:
        with pytest.raises(TrainstabError, match="could not be trained: ModuleNotFoundError: No module named 'a_dep"):
            base.sweeps([_config(f"{module_name}.models:build")])
    finally:
        base.close()


def test_an_installed_copy_in_a_virtual_environment_inside_the_repository_is_not_compared(
    tmp_path, monkeypatch, module_name
):
    site = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / f"{module_name}.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(site))
    why = not_in_the_repository(f"{module_name}:build", tmp_path)
    assert why.startswith(f"{module_name} is imported from an installed copy") and "pip install -e ." in why


def _shared_folder(tmp_path):
    """A private folder two processes of one run share (pytest's session folder stands for it)."""
    folder = tmp_path / "session"
    folder.mkdir(mode=0o700)
    return folder


def _two_workers_on_a_base_that_does_not_parse(tmp_path, monkeypatch, module_name):
    """The shared folder and two processes' trainers of a repository whose main has a model file that does not
    parse (the head's is fixed): trying the base fails fast, in the child, without training."""
    broken = MODEL.replace("def build(size):", "def build(size) x:")
    repo = _repository(tmp_path / "repo", {f"{module_name}.py": broken})
    (repo / f"{module_name}.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(repo))
    shared = _shared_folder(tmp_path)
    return shared, *(BaseTrainer(repo, "main", None, shared=shared) for _ in range(2))


def test_a_second_worker_reads_the_first_ones_error_and_never_checks_the_base_out(tmp_path, monkeypatch, module_name):
    # Two xdist workers whose checks of one model were not grouped (pytest 9.2 ignores --dist loadgroup): the base
    # is tried once; the second reads how it ended, with the same line, and makes no checkout of its own.
    shared, first, second = _two_workers_on_a_base_that_does_not_parse(tmp_path, monkeypatch, module_name)
    try:
        with pytest.raises(TrainstabError) as error_of_first:
            first.sweeps([_config(f"{module_name}:build")])
        with pytest.raises(TrainstabError) as error_of_second:
            second.sweeps([_config(f"{module_name}:build")])
        assert second._tree is None  # never checked out: nothing was trained again
    finally:
        first.close()
        second.close()
    assert "could not be trained: SyntaxError" in str(error_of_first.value)
    assert str(error_of_second.value) == str(error_of_first.value)
    (published,) = [path for path in shared.iterdir() if path.is_dir()]  # nothing else: no half-written folder
    assert stat.S_IMODE(published.stat().st_mode) == 0o700


def test_a_report_in_the_shared_folder_that_is_a_link_is_not_read_and_the_base_is_trained_again(
    tmp_path, monkeypatch, module_name
):
    # The session folder is private; still, what is read from it is untrusted input: a report that is a link (here
    # to one claiming the model is new in the change, which would skip the comparison) is never read.
    shared, first, second = _two_workers_on_a_base_that_does_not_parse(tmp_path, monkeypatch, module_name)
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"status": "absent", "line": "planted"}))
    try:
        with pytest.raises(TrainstabError):
            first.sweeps([_config(f"{module_name}:build")])
        (published,) = [path for path in shared.iterdir() if path.is_dir()]
        (published / "report.json").unlink()
        (published / "report.json").symlink_to(planted)
        with pytest.raises(TrainstabError, match="could not be trained: SyntaxError"):  # tried again, not "absent"
            second.sweeps([_config(f"{module_name}:build")])
        assert second._tree is not None
    finally:
        first.close()
        second.close()
    (republished,) = [path for path in shared.iterdir() if path.is_dir()]
    assert not (republished / "report.json").is_symlink()


@pytest.mark.long  # one 5-step sweep, in a child process
def test_a_second_worker_reads_the_base_sweeps_the_first_one_trained(tmp_path, monkeypatch, module_name):
    repo = _repository(tmp_path / "repo", {f"{module_name}.py": ATTENTION_MODEL})
    monkeypatch.syspath_prepend(str(repo))
    shared = _shared_folder(tmp_path)
    config = dataclasses.replace(_config(f"{module_name}:build"), train=TrainConfig(steps=5), lrs=(1e-2,))
    first, second = (BaseTrainer(repo, "main", None, shared=shared) for _ in range(2))
    try:
        trained = first.sweeps([config])
        read = second.sweeps([config])
        assert first._tree is not None and second._tree is None
    finally:
        first.close()
        second.close()
    assert read.sweeps == trained.sweeps and len(read.sweeps) == 1 and read.absent == ""
    other = dataclasses.replace(config, lrs=(3e-2,))  # another config is another base: not read for this one
    third = BaseTrainer(repo, "main", None, shared=shared)
    try:
        assert third.sweeps([other]).sweeps[0].config == other
        assert third._tree is not None
    finally:
        third.close()
