"""The revision ``--trainstab-against`` compares with (trainstab.core.revisions): found as documented, refused in one
line when there is none, and checked out beside the work without touching it, then removed, also on Ctrl-C."""

import shutil
import subprocess

import pytest

from trainstab.core.errors import TrainstabError
from trainstab.core.revisions import Revision, checked_out, default_branch, repository_root, resolve


def git(folder, *args):
    command = ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", "-C", str(folder), *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """main with two commits, and a branch `change` one commit past the first."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "model.py").write_text("QK_NORM = True\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    git(root, "switch", "-q", "-c", "change")
    (root / "model.py").write_text("QK_NORM = False\n")
    git(root, "commit", "-q", "-am", "remove qk-norm")
    git(root, "switch", "-q", "main")
    (root / "other.py").write_text("x = 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "main moves on")
    git(root, "switch", "-q", "change")
    return root


def test_by_default_the_base_is_the_merge_base_with_the_default_branch(repo):
    first = git(repo, "rev-list", "--max-parents=0", "HEAD")
    base = resolve(repo, None)
    assert base == Revision("", first, "the merge base of HEAD with main")
    assert default_branch(repo) == "main"
    git(repo, "branch", "-m", "main", "master")  # an older repository's default branch
    assert resolve(repo, None).how == "the merge base of HEAD with master"


def test_a_named_revision_is_used_as_given(repo):
    main = git(repo, "rev-parse", "main")
    assert resolve(repo, "main") == Revision("main", main, "main as given")
    assert resolve(repo, "HEAD~1").commit == git(repo, "rev-parse", "HEAD~1")


def test_what_does_not_exist_is_one_line_naming_it(repo, tmp_path):
    with pytest.raises(TrainstabError, match=r"^--trainstab-against 'nope' is not a revision of the repository"):
        resolve(repo, "nope")
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(TrainstabError, match="is not in a git repository"):
        repository_root(outside)
    git(repo, "branch", "-m", "main", "trunk")
    with pytest.raises(
        TrainstabError,
        match=r"no default branch to compare with .* --against main \(pytest: --trainstab-against=main\)",
    ):
        resolve(repo, None)


def test_the_base_is_checked_out_beside_the_work_and_removed_after(repo):
    status = git(repo, "status", "--porcelain")
    base = resolve(repo, None)
    with checked_out(repo, base) as tree:
        assert (tree / "model.py").read_text() == "QK_NORM = True\n" and not (tree / "other.py").exists()
        assert (repo / "model.py").read_text() == "QK_NORM = False\n"  # the working tree as it was
        assert str(tree) in git(repo, "worktree", "list")
    assert not tree.exists() and str(tree) not in git(repo, "worktree", "list")
    assert git(repo, "status", "--porcelain") == status and git(repo, "branch", "--show-current") == "change"


@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt])
def test_an_error_or_ctrl_c_inside_still_removes_the_checkout(repo, stop):
    with pytest.raises(stop), checked_out(repo, resolve(repo, "main")) as tree:
        assert tree.exists()
        raise stop()
    assert not tree.exists() and str(tree) not in git(repo, "worktree", "list")


def test_only_its_own_worktree_entry_is_removed_not_a_users_stale_one(repo, tmp_path):
    # The user's worktree on a drive that is not mounted now: its folder is gone, its entry must stay.
    theirs = tmp_path / "elsewhere"
    git(repo, "worktree", "add", "--detach", "--quiet", str(theirs), "main")
    shutil.rmtree(theirs)
    with checked_out(repo, resolve(repo, "main")) as tree:
        assert tree.exists()
    listed = git(repo, "worktree", "list")
    assert str(theirs) in listed and str(tree) not in listed
