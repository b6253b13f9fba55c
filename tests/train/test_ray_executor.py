"""The Ray executor: a Ray started here, on loopback, gives the local executor's numbers bit for bit.

Each test compares the two executors on the same config in the same run: a sweep of two stacks, a width
ladder, a fuzz exploration, a user's factory (imported on the Ray workers through the driver's path) and
the pytest plugin. The Ray is started once for the module (one xdist worker runs them all) and stopped
after it.
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import user_models
from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.core.errors import TrainstabError
from trainstab.core.ladder import run_ladder, width_configs
from trainstab.explore.fuzz import explore
from trainstab.explore.strategies import stability_region
from trainstab.train.ray_executor import ray_module, run_calls
from trainstab.train.sweep import run_sweep, run_sweeps

# One worker, one Ray; the long tier (`pytest -m long`, run by .ci/run after the README's command): Ray starts.
pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.long]
pytest_plugins = ["pytester"]

LOCAL = SweepConfig(
    model=ModelConfig(width=16, heads=2, depth=1, context_length=16),
    train=TrainConfig(steps=12, batch_size=4, probe_every=4),
    lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1),  # two stacks: 4 LRs and 1
    workers=2,
)
ON_RAY = dataclasses.replace(LOCAL, executor="ray")
RAY_PROCESSES = ("gcs_server", "raylet", "ray::")
LOOPBACK = ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]")


@pytest.fixture(scope="module")
def local_ray():
    """The Ray trainstab starts when no RAY_ADDRESS is set: this machine's cores, on loopback."""
    saved = os.environ.pop("RAY_ADDRESS", None)
    if importlib.util.find_spec("ray") is None:  # found, not imported: trainstab imports it, as users' runs do
        pytest.skip("Ray is the optional extra: pip install 'trainstab[ray]'")
    try:
        ray = ray_module()
        yield ray
    finally:
        ray.shutdown()
        if saved is not None:
            os.environ["RAY_ADDRESS"] = saved


def _numbers(result):
    return [(r.lr, r.losses, r.history, r.eval_loss, r.diverged_at_step) for r in result.runs], result.lr_sensitivity


def test_the_ray_started_here_listens_on_loopback_only(local_ray):
    (node,) = local_ray.nodes()
    assert node["NodeManagerAddress"] == "127.0.0.1"
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=False)
    if ss.returncode != 0:
        pytest.skip("ss (iproute2) is not on this machine: the sockets cannot be listed")
    ray_sockets = [line.split()[3] for line in ss.stdout.splitlines() if any(n in line for n in RAY_PROCESSES)]
    assert ray_sockets, "no Ray process listens: the test cannot see them"
    assert all(address.rsplit(":", 1)[0] in LOOPBACK for address in ray_sockets), ray_sockets


def test_a_sweep_on_ray_equals_the_local_sweep(local_ray):
    on_ray, local = run_sweep(ON_RAY), run_sweep(LOCAL)
    assert _numbers(on_ray) == _numbers(local)
    assert (on_ray.environment["workers"], local.environment["workers"]) == (0, 2)  # 0: trained by Ray tasks


def test_a_ladder_on_ray_trains_its_rungs_together_and_equals_the_local_ladder(local_ray):
    widths = (16, 24, 32)
    on_ray = run_ladder("width", width_configs(ON_RAY, widths), run_sweeps)
    local = run_ladder("width", width_configs(LOCAL, widths), run_sweeps)
    assert on_ray.parameters == local.parameters
    for a, b in zip(on_ray.rungs, local.rungs, strict=True):
        assert _numbers(a.sweep) == _numbers(b.sweep)


def test_a_fuzz_exploration_on_ray_equals_the_local_one(local_ray):
    region = stability_region(lr=(1e-3, 1.0), qk_layernorm=(True, False))
    base = dataclasses.replace(LOCAL, lrs=(1e-2,))
    local = explore(region, budget=6, steps=12, base=base)
    on_ray = explore(region, budget=6, steps=12, base=dataclasses.replace(base, executor="ray"))
    assert on_ray == local
    assert len({outcome.point for outcome in local}) == 6


def test_a_users_factory_trains_on_ray_workers_through_the_drivers_import_path(local_ray, tmp_path, monkeypatch):
    (tmp_path / "my_ray_models.py").write_text(
        "from user_models import Tiny\n\ndef build(size):\n    return Tiny(size)\n"  # tests/ is on the path too
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = dataclasses.replace(ON_RAY, model_name="my_ray_models:build")
    assert _numbers(run_sweep(config)) == _numbers(run_sweep(dataclasses.replace(config, executor="local")))


def test_the_plugin_trains_every_sweep_ahead_as_one_batch_on_ray_with_the_local_numbers(
    local_ray, pytester, monkeypatch
):
    pytester.makepyfile(
        test_stability="""
        from trainstab.testing import ModelUnderTest, parametrize_with_checks

        MODELS = [ModelUnderTest("reference"), ModelUnderTest("reference", ("z_loss=0",))]

        @parametrize_with_checks(MODELS, checks=["log_z", "no_divergence"])
        def test_training_stability(model, check):
            check(model)
        """
    )
    # A pytest run of its own, as a user's CI runs it: it starts (and stops) a Ray of its own.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    common = ("--trainstab-steps=12", "--trainstab-lrs=1e-3,1e-2", "-p", "no:cacheprovider")
    kept = {}
    for executor in ("ray", "local"):
        cache = pytester.path / executor
        result = pytester.runpytest_subprocess(
            *common, f"--trainstab-executor={executor}", f"--trainstab-cache={cache}"
        )
        result.assert_outcomes(passed=4)
        ahead = [line for line in result.outlines if "as one batch of Ray tasks" in line]
        assert ahead == (
            ["trainstab: trained 2 sweep(s) as one batch of Ray tasks, ahead of the tests"] if executor == "ray" else []
        )
        # The kept sweeps: their numbers and where they were trained, by their keys (the same on both).
        kept[executor] = {path.name: json.loads(path.read_text()) for path in cache.glob("sweep-*.json")}
    assert kept["ray"].keys() == kept["local"].keys() and len(kept["ray"]) == 2
    for name, on_ray in kept["ray"].items():
        assert on_ray["runs"] == kept["local"][name]["runs"]
        assert on_ray["environment"]["workers"] == 0  # 0: trained by Ray tasks
        assert kept["local"][name]["environment"]["workers"] == 1  # one stack: trained in the pytest process


def test_a_failing_task_raises_its_own_message_and_a_gpu_task_on_a_cpu_cluster_is_refused(local_ray):
    with pytest.raises(TrainstabError) as raised:
        run_calls(user_models.fails_in_a_task, [()], [0.0])
    assert str(raised.value) == "model 'x' failed on a batch: fix its forward\n(second line of the message)"
    with pytest.raises(TrainstabError, match=r"trains on CUDA, and the Ray cluster has 0 GPU\(s\)"):
        run_calls(user_models.fails_in_a_task, [()], [1.0])


def test_a_function_from_a_module_only_the_driver_can_import_runs_in_a_fresh_task(local_ray, tmp_path, monkeypatch):
    # Ray unpickles a task's arguments before the task runs: the function must travel by name and be imported
    # after the driver's paths are in place (a fresh module here, so no worker has imported it before).
    (tmp_path / "only_on_the_drivers_path.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_drivers_path

    assert run_calls(only_on_the_drivers_path.double, [(1,), (4,)], [0.0, 0.0]) == [2, 8]


def test_a_function_a_task_cannot_import_is_refused_before_any_task_starts():
    def local_function():
        return None

    with pytest.raises(TrainstabError, match=r"cannot import .*local_function.*top level of an importable module"):
        run_calls(local_function, [()], [0.0])


def test_without_ray_installed_the_ray_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(TrainstabError, match=r"pip install 'trainstab\[ray\]'"):
        ray_module()


def test_a_model_that_crashes_on_ray_errors_its_tests_and_the_session_goes_on(local_ray, pytester, monkeypatch):
    pytester.makepyfile(
        test_stability="""
        from trainstab.testing import parametrize_with_checks

        @parametrize_with_checks(["bad_models:crashes_at_step[step=3]", "reference"], checks=["no_divergence"])
        def test_training_stability(model, check):
            check(model)
        """
    )
    # A pytest process of its own, with a Ray of its own, as the test above (an in-process run would drop torch
    # modules that cannot be imported twice).
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    tests = str(Path(__file__).parents[1])  # bad_models and user_models
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess(
        "--trainstab-steps=5", "--trainstab-lrs=1e-2", "--trainstab-executor=ray", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*training ahead on Ray failed (model 'bad_models:crashes_at_step*crashed at step 3*"])
