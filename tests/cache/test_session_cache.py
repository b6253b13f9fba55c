"""The session's sweep cache: numbers as JSON in a private folder; nothing planted there is ever read."""

import json
import math
import os
import time
from pathlib import Path

import pytest

from trainstab.cache.session_cache import (
    PREFIX,
    STALE_SECONDS,
    check_private,
    make_session_folder,
    read_sweep,
    remove_stale,
    write_sweep,
)
from trainstab.core.config import SweepConfig, TrainConfig
from trainstab.core.errors import TrainstabError
from trainstab.core.results import (
    ATTN_MAX_LOGIT,
    GRAD_NORM,
    GRAD_RMS,
    LOG_Z_MAX,
    LOG_Z_MEAN,
    LOG_Z_MIN,
    LOSS,
    MAX_ABS_OUTPUT_LOGIT,
    PARAM_RMS,
    STEP,
    UPDATE_RMS,
    RunResult,
    SweepResult,
)

SRC = Path(__file__).parents[2] / "src" / "trainstab"


#: A protocol small enough to write its sweep by hand: two LRs, two steps, a probe at each.
PROTOCOL = SweepConfig(lrs=(0.01, 0.3), train=TrainConfig(steps=2, probe_every=1))


def _snapshot(step: float, attention: float) -> dict[str, float]:
    keys = [STEP, LOSS, LOG_Z_MEAN, LOG_Z_MIN, LOG_Z_MAX, MAX_ABS_OUTPUT_LOGIT, GRAD_NORM, GRAD_RMS, UPDATE_RMS]
    return {**dict.fromkeys(keys, 0.5), STEP: step, ATTN_MAX_LOGIT: attention, PARAM_RMS: 1.0, "grads/rms/a": 1e-3}


def _result() -> SweepResult:
    history = (_snapshot(0.0, 12.5), _snapshot(1.0, math.inf))
    runs = (
        RunResult(0.01, 6.2, 3.1, 3.2, 12.5, 0.3, False, None, (6.2, 3.1), history),
        RunResult(0.3, 6.2, math.nan, math.nan, math.nan, math.nan, True, 1, (6.2,), history[:1]),
    )
    return SweepResult(PROTOCOL, runs, 0.25, 0.01, {"torch": "2.13.0", "cpu_count": None}, 1.5)


def test_a_sweep_round_trips_exactly_nan_and_inf_included(tmp_path):
    path = tmp_path / "key.json"
    write_sweep(path, _result())
    back = read_sweep(path, PROTOCOL)
    assert back is not None and back.config == PROTOCOL
    assert repr(back) == repr(_result())  # nan and inf print alike; every other number is equal
    assert [p.name for p in tmp_path.iterdir()] == ["key.json"]  # no temporary file left behind


def test_a_file_cut_short_or_from_another_version_is_trained_again_not_trusted(tmp_path):
    path = tmp_path / "key.json"
    write_sweep(path, _result())
    path.write_text(path.read_text()[:100])  # a worker killed mid-write (before this cache was atomic)
    assert read_sweep(path, PROTOCOL) is None
    path.write_text(json.dumps({"runs": [], "surprise": 1}))
    assert read_sweep(path, PROTOCOL) is None


def test_a_planted_link_or_another_users_file_is_not_read(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere.json"
    write_sweep(target, _result())
    link = tmp_path / "key.json"
    link.symlink_to(target)
    assert read_sweep(link, PROTOCOL) is None
    monkeypatch.setattr(os, "getuid", lambda: os.stat(target).st_uid + 1)  # as if another user wrote it
    assert read_sweep(target, PROTOCOL) is None


def test_the_session_folder_is_private_unpredictable_and_checked(tmp_path):
    first, second = make_session_folder(tmp_path), make_session_folder(tmp_path)
    assert first != second and first.name.startswith(PREFIX) and first.parent == tmp_path
    assert first.stat().st_mode & 0o777 == 0o700
    assert check_private(first) == first
    first.chmod(0o755)
    with pytest.raises(TrainstabError, match="not a private folder of this user"):
        check_private(first)
    link = tmp_path / "link"
    link.symlink_to(second)
    with pytest.raises(TrainstabError, match="not a private folder"):
        check_private(link)


def test_an_unwritable_cache_root_falls_back_to_a_private_temporary_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    folder = make_session_folder(blocker / "cache")  # cannot be created: a file is in the way
    assert folder.name.startswith(PREFIX) and folder.parent != blocker
    folder.rmdir()


def test_stale_session_folders_of_ours_are_removed_and_fresh_ones_kept(tmp_path):
    old, fresh = make_session_folder(tmp_path), make_session_folder(tmp_path)
    (tmp_path / "not-ours").mkdir()
    then = time.time() - STALE_SECONDS - 60
    os.utime(old, (then, then))
    remove_stale(tmp_path)
    assert not old.exists() and fresh.exists() and (tmp_path / "not-ours").exists()


def test_nothing_in_trainstab_unpickles():
    for path in SRC.rglob("*.py"):  # every subpackage
        text = path.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, path.name


def test_a_folder_that_cannot_be_private_is_not_used(tmp_path, monkeypatch):
    # A filesystem without modes (a Windows or FAT mount) shows every folder as 0777: fall back to the temp dir.
    import trainstab.cache.session_cache as cache

    real = cache.check_private

    def no_modes(folder):
        if folder.parent == tmp_path:
            raise TrainstabError(f"the session cache folder {folder} is not a private folder")
        return real(folder)

    monkeypatch.setattr(cache, "check_private", no_modes)
    folder = make_session_folder(tmp_path)
    assert folder.parent != tmp_path and not list(tmp_path.glob(PREFIX + "*"))  # the refused one is removed
    folder.rmdir()
