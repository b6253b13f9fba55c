"""Git revisions to gate against: which one ``--trainstab-against`` means, and a checkout of it beside the work.

A change is judged against its base: by default the merge base of ``HEAD`` with the repository's default branch
(``origin/HEAD``'s branch, else ``main``, else ``master``, local or on ``origin``), or any revision the user names.
The base's code is checked out into a temporary git worktree, outside the working tree, and removed after, also
when the run is interrupted. Nothing here changes the user's working tree, index or branches. Imports no torch.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trainstab.core.errors import TrainstabError

#: The word that names the default base in the ini key and the flag: the merge base with the default branch.
MERGE_BASE = "merge-base"
#: The branches tried, in order, when ``origin/HEAD`` does not name the default branch.
DEFAULT_BRANCHES = ("main", "master", "origin/main", "origin/master")


@dataclass(frozen=True)
class Revision:
    """The revision a change is judged against: as the user named it, the commit, and how it was found."""

    named: str  # "main", "HEAD~1", or "" for the default
    commit: str  # the full commit hash
    how: str  # "the merge base of HEAD with origin/main", "main as given"

    @property
    def short(self) -> str:
        """The commit as logs show it (12 hex digits)."""
        return self.commit[:12]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``git`` in ``root``; never raises for git's own failures (callers say what they meant)."""
    if shutil.which("git") is None:
        raise TrainstabError("comparing with a base revision needs git, which is not installed here")
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)


def repository_root(folder: Path) -> Path:
    """The top folder of the git repository ``folder`` is in; a one-line error when it is in none."""
    found = _git(folder, "rev-parse", "--show-toplevel")
    if found.returncode != 0:
        raise TrainstabError(
            f"{folder} is not in a git repository: comparing with a base revision (--against, --trainstab-against) "
            "needs one"
        )
    return Path(found.stdout.strip())


def default_branch(root: Path) -> str:
    """The repository's default branch: ``origin/HEAD``'s, else the first of :data:`DEFAULT_BRANCHES` that exists."""
    remote_head = _git(root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if remote_head.returncode == 0 and remote_head.stdout.strip():
        return remote_head.stdout.strip()
    for branch in DEFAULT_BRANCHES:
        if _git(root, "rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}").returncode == 0:
            return branch
    raise TrainstabError(
        f"no default branch to compare with (origin/HEAD is not set and none of {', '.join(DEFAULT_BRANCHES)} "
        "exists): name the base, e.g. --against main (pytest: --trainstab-against=main)"
    )


def resolve(root: Path, named: str | None, flag: str = "--trainstab-against") -> Revision:
    """The revision ``named`` (a branch, tag, hash or expression such as ``HEAD~1``), or by default (None, "" or
    :data:`MERGE_BASE`) the merge base of ``HEAD`` with the default branch; a one-line error naming it when it does
    not exist (``flag``: how the front end spells the option)."""
    if named and named != MERGE_BASE:
        found = _git(root, "rev-parse", "--verify", "--quiet", f"{named}^{{commit}}")
        if found.returncode != 0:
            path = Path(named).exists() or (root / named).exists()
            hint = f" ({named} is a path: write the flag as {flag}=REF, or put it last)" if path else ""
            raise TrainstabError(
                f"{flag} {named!r} is not a revision of the repository at {root}: give a branch, tag "
                f"or commit that git rev-parse knows (git fetch it first if it is only on a remote){hint}"
            )
        return Revision(named, found.stdout.strip(), f"{named} as given")
    branch = default_branch(root)
    base = _git(root, "merge-base", "HEAD", branch)
    if base.returncode != 0:
        raise TrainstabError(
            f"HEAD and {branch} share no commit, so there is no merge base to compare with: name the base, e.g. "
            f"{flag} {branch}"
        )
    return Revision("", base.stdout.strip(), f"the merge base of HEAD with {branch}")


@contextmanager
def checked_out(root: Path, revision: Revision) -> Iterator[Path]:
    """The revision's files, checked out as a detached git worktree in a private temporary folder.

    Yields the worktree's top folder (the repository's layout below it); removed afterwards, whatever happens
    (an error, Ctrl-C), and unregistered from the repository: its own entry only (``git worktree prune`` would
    also drop the user's entries of worktrees on a drive that is not mounted).
    """
    holder = Path(tempfile.mkdtemp(prefix="trainstab-base-"))  # 0700: only this user reads the checkout
    tree = holder / "base"
    entry: Path | None = None  # the repository's record of the worktree (.git/worktrees/<name>)
    try:
        added = _git(root, "worktree", "add", "--detach", "--quiet", str(tree), revision.commit)
        if added.returncode != 0:
            raise TrainstabError(
                f"could not check out {revision.named or revision.how} ({revision.short}) for the comparison: "
                f"{added.stderr.strip().splitlines()[-1] if added.stderr.strip() else 'git worktree add failed'}"
            )
        pointer = (tree / ".git").read_text().strip()  # "gitdir: <repository>/.git/worktrees/<name>"
        entry = Path(pointer.removeprefix("gitdir:").strip()) if pointer.startswith("gitdir:") else None
        yield tree
    finally:
        removed = _git(root, "worktree", "remove", "--force", str(tree)).returncode == 0
        shutil.rmtree(holder, ignore_errors=True)
        if not removed and entry is not None and _records(entry, tree):  # left behind, and still ours
            shutil.rmtree(entry, ignore_errors=True)


def _records(entry: Path, tree: Path) -> bool:
    """Whether the repository's worktree record ``entry`` is the record of ``tree`` (its ``gitdir`` names it): git
    reuses a freed record's name, and another process's record must stay."""
    try:
        return entry.parent.name == "worktrees" and (entry / "gitdir").read_text().strip() == str(tree / ".git")
    except OSError:
        return False
