"""The persistent sweep cache (opt-in): a rerun of an unchanged model reads its sweep instead of training it.

``--trainstab-cache DIR`` (ini ``trainstab_cache``, ``trainstab check --cache DIR``) names a folder
that outlives the run; CI restores it between runs. A sweep is stored under a key that covers
everything its numbers depend on, so a hit is the sweep this run would have trained, bit for bit:

- trainstab's, torch's and transformers' versions, the Python version and the CPU's kernel set;
- the whole resolved protocol and recipe (model, training and LR grid, stack size) and the
  corpus's content;
- the model's fingerprint (:mod:`trainstab.train.fingerprint`): its parameters at init, and its logits
  and every gradient on a fixed batch. A changed model misses, whatever its name.

Its limit: a code path that only activates late in training is not fingerprinted (a switch on the
step count). Files are JSON numbers written atomically, read only if they are regular files of this
user, as untrusted input (CI restores the folder): an entry that is not exactly this run's protocol
(:func:`trainstab.cache.session_cache.parse_sweep`) is never judged, but trained again and rewritten, and the
run says so (:func:`cache_notes`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from trainstab.cache.session_cache import CacheUse, lookup_sweep, write_sweep
from trainstab.core.config import SweepConfig, resolved_config
from trainstab.core.environment import trainstab_version
from trainstab.core.optimizer_table import optimizers
from trainstab.core.results import SweepResult

FORMAT = 1  # bumped when what a key covers, or the file layout, changes


def _version(package: str) -> str | None:
    """An installed package's version, or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: The trainstab package: every module in it, in every subpackage, is code that computes the numbers.
PACKAGE = Path(__file__).resolve().parents[1]


def package_sources() -> list[Path]:
    """Every ``.py`` file of the trainstab package, subpackages included (what the cache's code digest covers)."""
    return sorted(PACKAGE.rglob("*.py"))


def _source_digest(files: list[Path], root: Path | None = None) -> str:
    """The SHA-256 of the given source files' paths (relative to ``root``) and bytes (the code that computes the
    numbers): two modules of one name in two subpackages are two files."""
    digest = hashlib.sha256()
    for path in sorted(files):
        name = path.relative_to(root).as_posix() if root is not None else path.name
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _optimizer_source(optimizer: str) -> str | None:
    """For a user's optimizer (``package.module:callable``, or a name a team registered), the digest of the file of
    the module that builds it: its code is the key. None for trainstab's own (covered by its code digest)."""
    registered = optimizers().get(optimizer)
    if registered is not None and registered.build is None:
        return None
    module = registered.source if registered is not None else optimizer.partition(":")[0]
    if registered is None and ":" not in optimizer:
        return None
    spec = importlib.util.find_spec(module)
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    return _source_digest([origin]) if origin is not None and origin.is_file() else "unreadable"


def cache_key(config: SweepConfig) -> str:
    """The key of ``config``'s sweep: versions, machine, resolved config, corpus content and model fingerprint.

    Checks the config, corpus and model first (:func:`trainstab.train.sweep.preflight`: a clear error, not a
    traceback), then builds the model once and runs it forward and backward (about one training step).
    """
    from trainstab.train.fingerprint import model_fingerprint  # builds the model: torch
    from trainstab.train.sweep import preflight

    preflight(config)

    recipe = resolved_config(config)
    recipe.pop("workers")  # how many processes trained the stacks does not change a number,
    recipe.pop("executor")  # nor where they trained
    identity = {
        "format": FORMAT,
        "trainstab": trainstab_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "python": sys.version.split()[0],
        # trainstab's own code, not only its version: an editable install changes without a new version.
        "trainstab_code": _source_digest(package_sources(), PACKAGE),
        "optimizer_code": _optimizer_source(config.train.optimizer),
        "machine": platform.machine(),
        "recipe": recipe,
        "corpus": _file_digest(Path(recipe["corpus"])),
        "model": model_fingerprint(config),  # includes the CPU kernel set that computed it
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached(folder: Path, config: SweepConfig, train: Callable[[SweepConfig], SweepResult]) -> tuple[SweepResult, bool]:
    """``config``'s sweep from ``folder`` if an identical run stored it, else ``train(config)``, stored there.

    Returns the sweep and whether it came from the cache (see :func:`cached_many`).
    """
    ((result, use),) = cached_many(folder, [config], lambda configs: [train(c) for c in configs])
    return result, use.read


def cached_many(
    folder: Path, configs: list[SweepConfig], train: Callable[[list[SweepConfig]], list[SweepResult]]
) -> list[tuple[SweepResult, CacheUse]]:
    """Each config's sweep from ``folder`` if an identical run stored it; the rest trained by ``train`` as one
    batch, and stored there.

    Returns each sweep and what the cache did for it (:class:`~trainstab.cache.session_cache.CacheUse`): read, or
    trained, with why an entry there did not match and why the trained sweep could not be stored. A sweep that
    cannot be stored (a full disk) is still returned: the next run trains it again.
    """
    paths = [folder / f"sweep-{cache_key(config)}.json" for config in configs]
    looked_up = [lookup_sweep(path, config) for path, config in zip(paths, configs, strict=True)]
    found = [result for result, _ in looked_up]
    stale = {index: why for index, (_, why) in enumerate(looked_up) if why}
    missing = [index for index, result in enumerate(found) if result is None]
    trained = dict(zip(missing, train([configs[index] for index in missing]), strict=True))
    unstored: dict[int, str] = {}
    for index, result in trained.items():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_sweep(paths[index], result)
        except OSError as error:  # a full disk costs the next run a retrain, not this run its result
            unstored[index] = error.strerror or str(error)
    return [
        (result, CacheUse(str(paths[index]), read=True))
        if result is not None
        else (trained[index], CacheUse(str(paths[index]), False, stale.get(index, ""), unstored.get(index, "")))
        for index, result in enumerate(found)
    ]


def cache_counts(uses: Sequence[CacheUse]) -> tuple[int, int, int]:
    """How many sweeps were read from the cache, trained and kept in it, and trained but not kept."""
    read = sum(1 for use in uses if use.read)
    unkept = sum(1 for use in uses if use.unstored)
    return read, len(uses) - read - unkept, unkept


def cache_notes(folder: str, uses: Sequence[CacheUse]) -> list[str]:
    """What the counts of a run's cache use do not say: each entry that did not match this run (retrained), and
    each reason sweeps could not be kept in ``folder``."""
    notes = [use.stale_line() for use in uses if use.stale]
    reasons = Counter(use.unstored for use in uses if use.unstored and not use.stale and not use.session)
    for why, count in reasons.items():
        sweeps, them = ("a sweep", "it") if count == 1 else (f"{count} sweeps", "them")
        notes.append(f"{sweeps} trained but not kept in the cache {folder} ({why}); the next run trains {them} again")
    return notes
