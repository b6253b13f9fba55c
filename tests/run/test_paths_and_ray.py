"""A model's code cannot move trainstab's files, and Ray never hangs a run or listens beyond loopback.

A model module that called ``os.chdir`` at import made ``--json out.json`` land in another folder while
"wrote out.json" was printed, and ``--baselines bl`` miss the committed ``bl/`` and write new baselines
elsewhere: every path is now absolute before any model's code runs, and the model is named in a warning.
``RAY_ADDRESS=127.0.0.1:1`` made Ray retry for over ten minutes: it now fails in seconds, in one line. A
Ray a model started itself (``ray.init()`` at import) is used only on loopback, and refused otherwise. The
variables torch's compiler and transformers set by themselves are not named as the model's doing.
"""

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from hypothesis import settings

from trainstab.core import hypothesis_profiles
from trainstab.core.errors import EXIT_BAD_INPUT, TrainstabError
from trainstab.core.files import set_invocation_folder, shown
from trainstab.core.process_state import _watched
from trainstab.core.values import text
from trainstab.run.options import OPTIONS, PATH_OPTIONS
from user_project import USER_MODELS

# The long tier (`pytest -m long`, after the README's command in .ci/run):
# pytest runs that start a Ray, and models that move the working folder.
pytestmark = pytest.mark.long
pytest_plugins = ["pytester"]

HAS_RAY = importlib.util.find_spec("ray") is not None
#: A model module that moves the working folder when imported and again when its factory builds.
CHDIR_MODELS = (
    USER_MODELS
    + """

import os

os.chdir(os.environ["ELSEWHERE"])  # at import


def wandering(size):
    os.chdir(os.path.join(os.environ["ELSEWHERE"], "deeper"))  # at build
    return stable(size)
"""
)
TINY_CLI = ["--steps", "4", "--lrs", "0.01", "--set", "width=16", "--set", "batch_size=4", "--no-progress"]
TINY_PYTEST = ["--trainstab-steps=4", "--trainstab-lrs=0.01", "--trainstab-profile=quick", "-p", "no:cacheprovider"]


def _project(tmp_path: Path, models: str) -> tuple[Path, Path, dict[str, str]]:
    """A user's folder with the model module, the folder the model moves to, and an environment to run in."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (elsewhere / "deeper").mkdir(parents=True)
    project.mkdir()
    (project / "wandering_models.py").write_text(models)
    env = {**os.environ, "ELSEWHERE": str(elsewhere), "PYTHONPATH": str(project)}
    env.pop("RAY_ADDRESS", None)
    return project, elsewhere, env


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a session of its own, killed with everything it started when ``timeout`` passes: a
    Ray's raylet and GCS server run in the driver's process group and would outlive the driver alone."""
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:  # the timeout, or Ctrl-C: nothing it started keeps running
            with contextlib.suppress(ProcessLookupError):
                if hasattr(os, "killpg"):
                    os.killpg(process.pid, signal.SIGKILL)
                else:  # Windows: no process groups to kill
                    process.kill()
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _trainstab(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300):
    return _run([sys.executable, "-m", "trainstab", *args], cwd, env, timeout)


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_every_path_option_is_made_absolute_by_both_front_ends():
    # A new option naming a file or folder (parsed as text) must join PATH_OPTIONS, or a model's chdir moves it.
    assert {option.name for option in OPTIONS if option.parse is text} == set(PATH_OPTIONS)


def test_messages_show_paths_relative_to_the_folder_the_run_started_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    previous = set_invocation_folder(tmp_path / "start")
    try:
        monkeypatch.chdir("/")  # a model moved the working folder
        assert shown(tmp_path / "start" / "bl" / "a.json") == os.path.join("bl", "a.json")
        assert shown(Path("bl/a.json")) == os.path.join("bl", "a.json")  # relative: to where the run started
    finally:
        set_invocation_folder(previous)


def test_a_model_that_changes_folder_cannot_move_the_cli_json_and_is_named(tmp_path):
    project, elsewhere, env = _project(tmp_path, CHDIR_MODELS)
    model = "wandering_models:wandering"
    done = _trainstab(["sweep", "--model", model, *TINY_CLI, "--workers", "1", "--json", "out.json"], project, env)
    assert done.returncode == 0, done.stderr
    assert (project / "out.json").is_file() and "wrote out.json" in done.stdout
    assert _files(elsewhere) == []
    (warning,) = [line for line in done.stderr.splitlines() if line.startswith("WARNING:")]
    assert f"model {model!r} changed the working folder (from {project} to {elsewhere}" in warning


def test_a_model_that_changes_folder_cannot_move_the_checks_baselines_report_or_cache(tmp_path):
    project, elsewhere, env = _project(tmp_path, CHDIR_MODELS)
    args = ["check", "--model", "wandering_models:wandering", "--checks", "attention_logits", *TINY_CLI]
    folders = ["--baselines", "bl", "--report", "rep", "--cache", "cache", "--update-baseline"]
    done = _trainstab([*args, *folders], project, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [name for name in _files(project / "bl") if name.endswith(".json")], _files(project)
    assert _files(project / "rep") and _files(project / "cache")
    assert _files(elsewhere) == []
    assert "wrote bl/" in done.stdout  # relative to where the run started, as the user typed it
    assert "WARNING: model 'wandering_models:wandering' changed the working folder" in done.stderr


def test_a_model_that_changes_folder_in_pytest_cannot_move_the_baselines_or_report_and_warns(
    pytester, tmp_path, monkeypatch
):
    _, elsewhere, _ = _project(tmp_path, CHDIR_MODELS)
    monkeypatch.setenv("ELSEWHERE", str(elsewhere))
    monkeypatch.delenv("TRAINSTAB_SESSION", raising=False)
    pytester.makepyfile(
        wandering_models=CHDIR_MODELS,
        test_stability="""
        from trainstab.testing import parametrize_with_checks


        @parametrize_with_checks(["wandering_models:wandering"], checks=["attention_logits"])
        def test_training_stability(model, check):
            check(model)
        """,
    )
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    folders = ["--trainstab-baselines=bl", "--trainstab-report=rep", "--trainstab-update-baseline"]
    result = pytester.runpytest_subprocess(*TINY_PYTEST, *folders)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*TrainstabWarning: model 'wandering_models:wandering' changed the working folder*"])
    assert _files(pytester.path / "bl") and _files(pytester.path / "rep")
    assert _files(elsewhere) == []


def test_a_ray_address_where_nothing_listens_fails_the_cli_in_seconds_in_one_line(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}
    done = _trainstab(["sweep", *TINY_CLI, "--executor", "ray"], tmp_path, env, timeout=60)  # Ray alone: 10+ min
    assert done.returncode == EXIT_BAD_INPUT
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("trainstab: error: nothing answers at RAY_ADDRESS=127.0.0.1:1 (")
    assert "unset RAY_ADDRESS" in line


@pytest.mark.skipif(not HAS_RAY, reason="Ray is the optional extra: pip install 'trainstab[ray]'")
def test_a_ray_address_where_nothing_listens_fails_each_pytest_check_in_seconds(pytester, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.delenv("TRAINSTAB_SESSION", raising=False)
    pytester.makepyfile(
        test_stability="""
        from trainstab.testing import parametrize_with_checks


        @parametrize_with_checks(["reference"], checks=["attention_logits", "log_z"])
        def test_training_stability(model, check):
            check(model)
        """
    )
    result = pytester.runpytest_subprocess(*TINY_PYTEST, "--trainstab-executor=ray", timeout=90)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*nothing answers at RAY_ADDRESS=127.0.0.1:1 (*"])


class _FakeRay(types.ModuleType):
    """A Ray a model initialized itself on every interface: what trainstab sees of it, without starting one."""

    def __init__(self) -> None:
        super().__init__("ray")
        self.shut_down = False

    def is_initialized(self) -> bool:
        return True

    def nodes(self) -> list[dict[str, str]]:
        return [{"NodeManagerAddress": "10.1.2.3"}]

    def get_runtime_context(self):
        return types.SimpleNamespace(gcs_address="10.1.2.3:6379")

    def shutdown(self) -> None:
        self.shut_down = True


def test_a_ray_the_model_started_beyond_loopback_is_refused_in_one_line_and_left_alone(monkeypatch):
    from trainstab.train.ray_executor import ray_module

    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(TrainstabError, match=r"Ray was already initialized in this process before trainstab") as e:
        ray_module()
    assert "connected to 10.1.2.3:6379" in str(e.value) and "\n" not in str(e.value)
    assert not fake.shut_down  # not trainstab's to stop


PREINITIALIZED = """
import os
from trainstab.core.errors import TrainstabError
from trainstab.core.ray_address import LOOPBACK_ONLY
from trainstab.train.ray_executor import ray_module

os.environ.setdefault(*LOOPBACK_ONLY)  # before Ray is imported: the only time it reads the switch
import ray

ray.init(address="local", include_dashboard=False, log_to_driver=False)  # the user's own, on loopback
gcs = ray.get_runtime_context().gcs_address
assert ray_module() is ray and ray.get_runtime_context().gcs_address == gcs  # used as it is
os.environ["RAY_ADDRESS"] = "127.0.0.1:1"  # not the Ray the process holds
try:
    ray_module()
except TrainstabError as error:
    print("REFUSED", error)
finally:
    ray.shutdown()
"""


@pytest.mark.skipif(not HAS_RAY, reason="Ray is the optional extra: pip install 'trainstab[ray]'")
def test_a_ray_initialized_before_trainstab_is_used_on_loopback_and_refused_when_it_is_not_ray_address(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    done = _run([sys.executable, "-c", PREINITIALIZED], tmp_path, env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    (refused,) = [line for line in done.stdout.splitlines() if line.startswith("REFUSED")]
    assert "Ray was already initialized in this process before trainstab" in refused
    assert "it is not the cluster at RAY_ADDRESS=127.0.0.1:1" in refused


RAY_AT_IMPORT = USER_MODELS + textwrap.dedent(
    """

    import atexit
    import json
    import os
    import subprocess

    import ray


    def _descendants():
        children = {}
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):  # not a process, or one that ended meanwhile
                continue
            children.setdefault(parent, []).append(int(entry))
        found, todo = set(), [os.getpid()]
        while todo:
            found.update(children.get(todo[-1], []))
            todo.extend(children.pop(todo.pop(), []))
        return found | {os.getpid()}


    def _record_the_listening_sockets():  # registered after ray.init: runs before Ray's own shutdown at exit
        ss = subprocess.run(["ss", "-ltunpH"], capture_output=True, text=True, check=False)
        ours = {str(pid) for pid in _descendants()}
        sockets = [
            line.split()[4]
            for line in ss.stdout.splitlines()
            if any(f"pid={pid}," in line for pid in ours)
        ]
        with open(os.environ["SOCKETS"], "w") as out:
            json.dump({"ss": ss.returncode, "sockets": sockets}, out)


    # The driver; a Ray worker importing this module is already connected. An explicit local start: a Ray
    # already running on this machine (another test's, a user's) is not attached to.
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        if os.environ.get("SOCKETS"):
            atexit.register(_record_the_listening_sockets)
    """
)
#: How ``ss`` writes a local address on loopback (IPv4, IPv4 mapped into IPv6, IPv6), with a port after it.
LOOPBACK = ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]")


@pytest.mark.skipif(not HAS_RAY, reason="Ray is the optional extra: pip install 'trainstab[ray]'")
def test_a_model_module_that_starts_ray_at_import_gets_a_loopback_ray_that_trainstab_uses(tmp_path):
    project, _, env = _project(tmp_path, RAY_AT_IMPORT)
    sockets = tmp_path / "sockets.json"
    env["SOCKETS"] = str(sockets)
    done = _trainstab(["sweep", "--model", "wandering_models:stable", *TINY_CLI, "--executor", "ray"], project, env)
    # trainstab uses a Ray it did not start only when it listens on loopback only: the switch came before the model
    assert done.returncode == 0, done.stderr[-3000:]
    assert "executor=ray" in done.stdout
    # What the Ray's processes (the driver's descendants: GCS server, raylet, agents, workers) listen on.
    seen = json.loads(sockets.read_text())
    if seen["ss"] != 0:
        pytest.skip("ss (iproute2) cannot list the sockets on this machine")
    assert seen["sockets"], "no Ray process listens: the test cannot see them"
    assert all(address.rsplit(":", 1)[0] in LOOPBACK for address in seen["sockets"]), seen["sockets"]


def test_variables_torch_and_transformers_set_by_themselves_are_not_named_as_the_models():
    by_the_libraries = [
        "_TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR",  # torch.compile on the CPU
        "TORCHINDUCTOR_CACHE_DIR",
        "TRITON_CACHE_DIR",  # torch.compile on a GPU
        "TRITON_PTXAS_PATH",
        "TRITON_LIBDEVICE_PATH",
        "DISABLE_CUPTI_LAZY_REINIT",  # CUDA graphs, the profiler
        "TEARDOWN_CUPTI",
        "TOKENIZERS_PARALLELISM",  # transformers
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
        "CUBLAS_WORKSPACE_CONFIG",
    ]
    assert [name for name in by_the_libraries if _watched(name)] == []
    assert all(_watched(name) for name in ("MY_SETTING", "PATH", "OMP_NUM_THREADS", "HF_HOME", "WANDB_MODE"))


COMPILED = """
import os
import sys

from trainstab.core.process_state import ProcessState

before = ProcessState()  # as the CLI takes it: before torch is imported
import torch

try:
    model = torch.compile(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 2)))
    model(torch.randn(4, 8)).sum().backward()
except Exception as error:  # no C compiler, or a platform inductor does not support
    print("UNAVAILABLE", type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    sys.exit(0)
print("SET", sorted(name for name in os.environ if before.environment.get(name) != os.environ[name]))
print("CHANGES", before.changes())
"""


def test_a_torch_compiled_model_is_not_named_for_what_the_compiler_set(tmp_path):
    # 5 s with inductor's cache warm, about 20 s cold: a C++ kernel compiled and loaded on the CPU.
    done = _run([sys.executable, "-c", COMPILED], tmp_path, dict(os.environ), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    if done.stdout.startswith("UNAVAILABLE"):
        pytest.skip(f"torch.compile does not run here: {done.stdout.strip()}")
    assert "CHANGES []" in done.stdout.splitlines(), done.stdout


def test_the_nightly_profiles_example_database_stays_where_the_session_started(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a model module moved the working folder
    hypothesis_profiles.register_profiles()  # registered again, as each training property's decorator does
    database = settings.get_profile("trainstab-nightly").database
    assert Path(database.path) == hypothesis_profiles.EXAMPLES and hypothesis_profiles.EXAMPLES.is_absolute()
    assert tmp_path not in hypothesis_profiles.EXAMPLES.parents
