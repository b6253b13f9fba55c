"""Cache entries are untrusted input (issue 27): an entry that is not exactly this run's sweep is never judged.

It is trained again and rewritten, and the run says so; the cache line says what happened to each sweep (read,
trained and kept, trained but not kept and why, or a stale entry retrained). One real entry is trained for the
module; every damaged entry is a copy of it.
"""

import dataclasses
import errno
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trainstab.cache.session_cache import read_sweep
from trainstab.cache.sweep_cache import cached, cached_many
from trainstab.cli.main import main
from trainstab.core.config import ModelConfig, SweepConfig
from trainstab.train.sweep import run_sweep

pytest_plugins = ["pytester"]

SMALL = ModelConfig(width=16, heads=2, depth=2, context_length=16)
TINY = SweepConfig(model=SMALL, lrs=(1e-2, 3e-1), workers=1)
TINY = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=8, probe_every=4))


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, str]:
    """TINY's sweep, trained once and stored by the cache: the entry's file, the sweep and the entry's text."""
    folder = tmp_path_factory.mktemp("cache")
    result, hit = cached(folder, TINY, run_sweep)
    (path,) = folder.glob("sweep-*.json")
    assert not hit
    return path, result, path.read_text()


def _edited(edit: Callable[[dict[str, Any]], object]) -> Callable[[str], str]:
    """A damage that edits the entry's JSON value in place."""

    def damage(text: str) -> str:
        data = json.loads(text)
        edit(data)
        return json.dumps(data)

    return damage


def _set(where: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: object) -> Callable[[str], str]:
    return _edited(lambda data: where(data).__setitem__(key, value))


def _run(index: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: data["runs"][index]


def _entry(data: dict[str, Any]) -> dict[str, Any]:
    return data


DAMAGES = {
    # Case 1: the LR-0.3 run is gone; case 2: no runs at all. Each check would judge what is left, or nothing.
    "missing the lr 0.3 run": (_edited(lambda d: d["runs"].pop()), r"holds runs at lr \[0.01\], this run's grid"),
    "no runs": (_set(_entry, "runs", []), r"holds runs at lr \[\], this run's grid is \[0.01, 0.3\]"),
    "runs in another order": (_edited(lambda d: d["runs"].reverse()), r"holds runs at lr \[0.3, 0.01\]"),
    "an lr off by one ulp": (_set(_run(1), "lr", 0.30000000000000004), r"lr \[0.01, 0.30000000000000004\]"),
    "an lr as a boolean": (_set(_run(0), "lr", True), r"holds runs at lr \[a boolean, 0.3\]"),
    "a third run": (_edited(lambda d: d["runs"].append(d["runs"][0])), r"holds runs at lr \[0.01, 0.3, 0.01\]"),
    # Case 3: what raised AttributeError, TypeError or RecursionError.
    "null": (lambda text: "null", "the entry is null, not an object"),
    "runs as an object": (_set(_entry, "runs", {}), "its runs are an object, not a list"),
    "a run as null": (_edited(lambda d: d["runs"].__setitem__(1, None)), r"lr \[0.01, null\]"),
    "a string metric": (_set(_run(1), "final_loss", "3.1"), r"run 2 \(lr 0.3\) final_loss is a string, not a number"),
    "a null metric": (_set(_run(0), "max_attention_logit", None), "max_attention_logit is null, not a number"),
    "nested 100,000 deep": (lambda text: "[" * 100_000 + "]" * 100_000, "the file is nested too deeply"),
    "a string in the losses": (_edited(lambda d: d["runs"][0]["losses"].__setitem__(3, "x")), "loss 4 is a string"),
    # A run records finite losses only (a non-finite step ends it as diverged): a NaN would hide from no_divergence.
    "a NaN loss": (_edited(lambda d: d["runs"][0]["losses"].__setitem__(2, math.nan)), "loss 3 is nan, but a run"),
    "a probe that is a list": (_edited(lambda d: d["runs"][0]["history"].__setitem__(0, [])), "probe 1 is a list"),
    "a probe value that is null": (_set(lambda d: d["runs"][0]["history"][1], "loss", None), "probe 2 'loss' is null"),
    "a probe without its attention logit": (
        _edited(lambda d: d["runs"][1]["history"][0].pop("attn/max_logit")),
        r"run 2 \(lr 0.3\) probe 1 lacks attn/max_logit",
    ),
    "a probe with a key the others lack": (
        _set(lambda d: d["runs"][1]["history"][2], "grads/rms/extra", 1.0),
        "probe snapshots do not all hold the same keys",
    ),
    # Every field of its type, no key missing or extra.
    "an extra key": (_set(_entry, "surprise", 1), "the entry has the unexpected key 'surprise'"),
    "a missing key": (_edited(lambda d: d.pop("lr_sensitivity")), "the entry lacks lr_sensitivity"),
    "a run's extra key": (_set(_run(0), "note", "x"), r"run 1 \(lr 0.01\) has the unexpected key 'note'"),
    "diverged as 0": (_set(_run(0), "diverged", 0), "diverged is a number, not true or false"),
    "diverged_at_step as 2.5": (_set(_run(0), "diverged_at_step", 2.5), "diverged_at_step is a number, not a step"),
    "diverged without a step": (_set(_run(0), "diverged", True), "diverged is true at step None"),
    "no losses": (_set(_run(0), "losses", []), "holds 0 losses, not one per step of its 8"),
    "no probes": (_set(_run(1), "history", []), "holds 0 probe snapshots, not the 3 its 8 steps record"),
    "a probe at another step": (_set(lambda d: d["runs"][0]["history"][1], "step", 5.0), "probe 2 is at step 5.0"),
    "an environment that nests": (_set(lambda d: d["environment"], "cpu", {"a": 1}), "environment's 'cpu' is an"),
    "a best lr off the grid": (_set(_entry, "best_lr", 0.5), "its best_lr 0.5 is not one of the grid's LRs"),
    "elapsed seconds as a string": (_set(_entry, "elapsed_seconds", "1"), "elapsed_seconds is a string"),
    "a key twice": (
        lambda text: text.replace('{"runs": ', '{"best_lr": 0.01, "runs": ', 1),
        'the file has the key "best_lr" twice',
    ),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=list(DAMAGES))
def test_an_entry_that_is_not_exactly_this_runs_sweep_is_not_read(stored, tmp_path, damage):
    path, _, text = stored
    edit, why = damage
    entry = tmp_path / path.name
    entry.write_text(edit(text))
    assert read_sweep(entry, TINY) is None  # before: a sweep missing runs, or AttributeError/TypeError/RecursionError

    from trainstab.cache.session_cache import load_sweep  # why: the reader that says it
    from trainstab.core.untrusted import UntrustedFileError

    with pytest.raises(UntrustedFileError, match=why):
        load_sweep(entry, TINY)


def test_the_real_entry_reads_back_exactly_and_only_for_its_own_protocol(stored):
    path, result, _ = stored
    back = read_sweep(path, TINY)
    assert back is not None and repr(back) == repr(result)  # NaN and inf included: repr prints them alike
    assert read_sweep(path, dataclasses.replace(TINY, lrs=(1e-2,))) is None
    longer = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=9))
    assert read_sweep(path, longer) is None


def test_an_entry_over_the_size_cap_is_not_read_nor_a_sweep_over_it_written(stored, tmp_path, monkeypatch):
    import trainstab.cache.session_cache as session_cache
    from trainstab.cache.session_cache import load_sweep, write_sweep
    from trainstab.core.untrusted import UntrustedFileError

    path, result, text = stored
    monkeypatch.setattr(session_cache, "MAX_ENTRY_BYTES", len(text) - 1)
    with pytest.raises(UntrustedFileError, match=f"is {len(text)} bytes, more than the {len(text) - 1}"):
        load_sweep(path, TINY)
    with pytest.raises(OSError, match="more than the") as error:
        write_sweep(tmp_path / "big.json", result)
    assert error.value.errno == errno.EFBIG and list(tmp_path.iterdir()) == []


def test_a_link_in_the_cache_is_not_followed(stored, tmp_path):
    from trainstab.cache.session_cache import load_sweep
    from trainstab.core.untrusted import UntrustedFileError

    path, _, _ = stored
    link = tmp_path / path.name
    link.symlink_to(path)
    with pytest.raises(UntrustedFileError, match="the file is a link"):
        load_sweep(link, TINY)


def test_a_damaged_entry_is_retrained_rewritten_and_said(stored, tmp_path):
    path, result, text = stored
    entry = tmp_path / path.name
    entry.write_text("null")  # before: AttributeError out of the cache
    trained: list[SweepConfig] = []

    def train(configs: list[SweepConfig]) -> list[Any]:
        trained.extend(configs)
        return [result for _ in configs]

    ((found, use),) = cached_many(tmp_path, [TINY], train)
    assert trained == [TINY] and found is result
    assert (use.read, use.stale, use.unstored) == (False, "the entry is null, not an object", "")
    assert use.stale_line() == (
        f"cache entry {entry} did not match this run (the entry is null, not an object); retrained and rewritten"
    )
    assert entry.read_text() == text  # rewritten: the sweep as the cache writes it
    ((again, use),) = cached_many(tmp_path, [TINY], train)
    assert use.read and len(trained) == 1 and repr(again) == repr(result)


def test_a_sweep_that_cannot_be_stored_says_why(stored, tmp_path, monkeypatch):
    import trainstab.cache.sweep_cache as sweep_cache

    path, result, _ = stored

    def full_disk(path: Path, result: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sweep_cache, "write_sweep", full_disk)
    (tmp_path / path.name).write_text('{"runs": []}')
    ((_, stale),) = cached_many(tmp_path, [TINY], lambda configs: [result for _ in configs])
    assert stale.stale_line().endswith(
        "did not match this run (the entry lacks best_lr, elapsed_seconds, environment, lr_sensitivity); "
        "retrained, but could not rewrite it (No space left on device)"
    )
    (tmp_path / path.name).unlink()
    ((_, unkept),) = cached_many(tmp_path, [TINY], lambda configs: [result for _ in configs])
    assert (unkept.read, unkept.stale, unkept.unstored) == (False, "", "No space left on device")
    notes = sweep_cache.cache_notes("DIR", [unkept, dataclasses.replace(unkept, entry="other")])
    assert notes == [
        "2 sweeps trained but not kept in the cache DIR (No space left on device); the next run trains them again"
    ]


# ----- end to end: the CLI, with the unstable model of tests/end_to_end/test_exit_codes.py -----

UNSTABLE = ["check", "--set", "qk_layernorm=false", "--steps", "40", "--lrs", "1e-2,3e-1", "--no-progress"]
CASE_1 = ["--attention-logit-bound", "100", "--checks", "attention_logits"]
# log_z: 7.2 at lr 0.3 (qk-layernorm off), over a bound of 5; the three others read every run, so judge nothing on none
CASE_2 = ["--log-z-bound", "5", "--checks", "no_divergence,log_z,parameters_move,loss_spikes"]


def _damage_entry(folder: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    (entry,) = folder.glob("sweep-*.json")
    data = json.loads(entry.read_text())
    edit(data)
    entry.write_text(json.dumps(data))
    return entry


def test_the_unstable_verdict_survives_a_damaged_cache_entry(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = ["--cache", str(tmp_path / "cache")]
    assert main([*UNSTABLE, *CASE_1, *cache]) == 1
    assert "sweep trained and kept in the cache" in capsys.readouterr().out
    original = next((tmp_path / "cache").glob("sweep-*.json")).read_text()

    # Case 1: the entry lost its LR-0.3 run (before: attention_logits passed on the run left, exit 0).
    entry = _damage_entry(tmp_path / "cache", lambda data: data["runs"].pop())
    assert main([*UNSTABLE, *CASE_1, *cache]) == 1
    out = capsys.readouterr().out
    assert "FAIL attention_logits: attention logits grew to" in out and "at lr=0.3" in out
    assert (
        f"cache entry {entry} did not match this run (it holds runs at lr [0.01], this run's grid is [0.01, 0.3]); "
        "retrained and rewritten"
    ) in out
    rewritten = json.loads(entry.read_text())
    assert [run["lr"] for run in rewritten["runs"]] == [0.01, 0.3]
    assert rewritten["runs"] == json.loads(original)["runs"]

    # Case 2: no runs (before: no_divergence, log_z, parameters_move and loss_spikes passed, checking nothing).
    _damage_entry(tmp_path / "cache", lambda data: data.__setitem__("runs", []))
    assert main([*UNSTABLE, *CASE_2, *cache]) == 1
    out = capsys.readouterr().out
    assert "FAIL log_z" in out and "(it holds runs at lr [], this run's grid is [0.01, 0.3]); retrained" in out

    # The rewritten entry is read back, and judged the same.
    assert main([*UNSTABLE, *CASE_2, *cache]) == 1
    out = capsys.readouterr().out
    assert "sweep read from the cache" in out and "FAIL log_z" in out


def test_the_cli_says_when_a_trained_sweep_could_not_be_kept(tmp_path, capsys, monkeypatch):
    import trainstab.cache.sweep_cache as sweep_cache

    def read_only(path: Path, result: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweep_cache, "write_sweep", read_only)
    assert main([*UNSTABLE, *CASE_1, "--cache", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr().out
    assert "trained and kept" not in out  # before: "sweep trained and kept in the cache", with nothing kept
    assert (
        f"a sweep trained but not kept in the cache {tmp_path / 'cache'} (Read-only file system); "
        "the next run trains it again"
    ) in out


# ----- end to end: pytest -----------------------------------------------------------------------------------------

TEST = """
from trainstab.testing import parametrize_with_checks


@parametrize_with_checks(["reference"], checks=["no_divergence", "attention_logits"])
def test_stability(model, check):
    check(model)
"""


def test_a_damaged_entry_under_pytest_is_retrained_and_said_in_the_summary(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_stability=TEST)
    pytester.makeini("[pytest]\ntrainstab_cache = .trainstab-cache\ntrainstab_steps = 8\ntrainstab_lrs = 1e-2\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
    (entry,) = (pytester.path / ".trainstab-cache").glob("sweep-*.json")
    entry.write_text("null")  # before: AttributeError, both tests errored (with -n 2 too)
    again = pytester.runpytest_subprocess("-n", "2")  # the workers share the retrained sweep through the session
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(
        [
            "trainstab: cache *.trainstab-cache: 0 sweep(s) read, 1 trained and kept",
            "trainstab: cache entry *sweep-*.json did not match this run (the entry is null, not an object); "
            "retrained and rewritten",
        ]
    )
    assert json.loads(entry.read_text())["runs"][0]["lr"] == 0.01
