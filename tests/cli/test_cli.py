import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainstab.cli.main import EXIT_FAILED, main

_HAS_GPU = torch.cuda.is_available()
QUICK = ["sweep", "--steps", "8", "--lrs", "1e-2,3e-1", "--set", "width=16", "--set", "batch_size=4", "--no-progress"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainstab", *args], capture_output=True, text=True, timeout=300)


def test_sweep_prints_a_table_and_writes_json_with_every_required_field(tmp_path):
    out = tmp_path / "sweep.json"
    assert main([*QUICK, "--json", str(out), "--seed", "3"]) == 0
    data = json.loads(out.read_text())
    assert set(data) >= {"runs", "lr_sensitivity", "best_lr", "config", "environment"}
    for run in data["runs"]:
        assert set(run) >= {"lr", "final_loss", "initial_loss", "max_attention_logit", "log_z_mean", "diverged"}
    assert data["config"]["model"]["width"] == 16
    assert data["config"]["train"]["seed"] == 3
    assert set(data["environment"]) >= {"trainstab", "torch", "python", "cpu", "threads_per_stack", "seed"}
    assert data["environment"]["seed"] == 3


def test_the_same_command_twice_gives_identical_metrics(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert _cli(*QUICK, "--json", str(a)).returncode == 0
    assert _cli(*QUICK, "--json", str(b)).returncode == 0
    first, second = json.loads(a.read_text()), json.loads(b.read_text())
    for data in (first, second):
        del data["elapsed_seconds"]
    assert first == second


def test_the_table_shows_each_lr_and_the_summary(capsys):
    assert main(QUICK) == 0
    out = capsys.readouterr().out
    for header in ("LR", "final loss", "max attn logit", "log Z", "diverged", "LR sensitivity", "seed 0"):
        assert header in out
    assert "0.3" in out


def _bad_corpus(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_bytes(b"garbage")
    return str(path)


def _short_corpus(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.zeros(10, dtype=np.int64))
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "colour=blue"], "unknown --set key 'colour'"),
        (["--set", "width=big"], "expected an integer"),
        (["--lrs", "0,1e-2"], "must be > 0"),
        (["--lrs=-1e-3"], "must be > 0"),
        (["--set", "heads=3"], "not divisible by heads=3"),
        (["--corpus", "/no/such/corpus.npy"], "does not exist"),
        (["--corpus", _bad_corpus], "could not be read"),
        (["--corpus", _short_corpus], "fewer than the"),
        (["--json", "/no/such/dir/out.json"], "does not exist"),
        (["--json", "/proc/version"], "not writable"),
        (["--model", "gpt5"], "is not 'reference'"),
        (["--model", "no_such_package.models:build"], "cannot import"),
        (["--steps", "many"], "'many': expected a whole number of steps from 1 to 1000000"),
        (["--precision", "fp16"], "'fp16': expected fp32 or bf16"),
        (["--device", "gpu"], "'gpu': expected cpu, cuda or cuda:N"),
        (["--executor", "slurm"], "'slurm': expected local or ray"),
        pytest.param(
            ["--device", "cuda"],
            "sees no CUDA GPU on this machine",
            marks=pytest.mark.skipif(_HAS_GPU, reason="this machine has a GPU: the error is for machines without"),
        ),
    ],
)
def test_bad_input_gets_one_line_and_exit_code_2(tmp_path, args, message):
    args = [a(tmp_path) if callable(a) else a for a in args]
    result = _cli("sweep", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bf16_sweep_says_so_in_its_header_and_its_json(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    assert main([*QUICK, "--precision", "bf16", "--json", str(out)]) == 0
    assert "precision=bf16" in capsys.readouterr().out.splitlines()[0]
    data = json.loads(out.read_text())
    assert data["config"]["train"]["precision"] == "bf16"
    assert (data["environment"]["precision"], data["environment"]["device"]) == ("bf16", "cpu")


def test_the_json_config_is_resolved(tmp_path):
    out = tmp_path / "sweep.json"
    assert main([*QUICK, "--json", str(out), "--set", "weight_decay_mode=coupled"]) == 0
    config = json.loads(out.read_text())["config"]
    assert config["train"]["weight_decay"] == 0.1
    assert config["train"]["warmup_steps"] == 1
    assert config["corpus"].endswith("corpus.npy")


def test_fuzz_writes_the_map_as_json_and_png(tmp_path):
    out, png = tmp_path / "fuzz.json", tmp_path / "fuzz.png"
    args = ["fuzz", "--set", "qk_layernorm=false", "--budget", "4", "--json", str(out), "--plot", str(png)]
    status = main([*args, "--no-progress"])
    data = json.loads(out.read_text())
    assert status == (EXIT_FAILED if sum(data["unstable_by_cause"].values()) else 0)  # gate-able, like check
    assert data["model"] == "reference" and data["steps_per_example"] == 60
    assert 1 <= len(data["points"]) <= 4
    assert all(p["qk_layernorm"] is False for p in data["points"])
    assert set(data["unstable_by_cause"]) == {"divergence", "attention_logits", "output_logits", "epsilon"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--budget", "0"], "'0': expected a whole number above 0"), (["--set", "depth=zero"], "expected an integer")],
)
def test_fuzz_bad_input_exits_2(args, message):
    result = _cli("fuzz", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_an_existing_json_file_is_kept_not_silently_overwritten(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    out.write_text('{"mine": true}')
    assert main([*QUICK, "--json", str(out)]) == 0
    assert json.loads((tmp_path / "sweep.json.previous").read_text()) == {"mine": True}
    assert "runs" in json.loads(out.read_text())
    assert "the file it replaced is now" in capsys.readouterr().out


CHECK = ["check", "--steps", "40", "--lrs", "1e-2,3e-1", "--no-progress"]


def test_check_passes_the_reference_with_exit_0_and_prints_the_table(capsys):
    assert main(CHECK) == 0
    out = capsys.readouterr().out
    assert "trainstab check: model=reference seed=0 steps=40 lrs=0.01,0.3" in out
    for name in ("no_divergence", "attention_logits", "lr_sensitivity", "parameters_move"):
        assert name in out
    assert "all 7 checks passed" in out


def test_check_exits_1_on_a_failed_check_with_its_message(capsys):
    assert main([*CHECK, "--set", "qk_layernorm=false", "--attention-logit-bound", "100"]) == 1
    out = capsys.readouterr().out
    assert "FAIL attention_logits: attention logits grew to" in out
    assert "1 of 7 checks failed" in out


def test_a_report_only_check_over_its_bound_warns_with_exit_0_unless_asserted(capsys):
    strict = [*CHECK, "--grad-rms-over-eps", "1e12", "--checks", "grad_rms_vs_eps,no_divergence"]
    assert main(strict) == 0
    out = capsys.readouterr().out
    assert "warn grad_rms_vs_eps: gradient RMS of" in out and "report-only, so the test passes" in out
    assert "all 2 checks passed (1 report-only warning(s) above)" in out
    assert main([*strict, "--report-only", "none"]) == 1
    assert "FAIL grad_rms_vs_eps" in capsys.readouterr().out


def test_check_gates_on_baselines_and_writes_the_report_folder(tmp_path, capsys):
    baselines, report = tmp_path / "baselines", tmp_path / "report"
    gate = [*CHECK, "--baselines", str(baselines), "--attention-logit-bound", "1e6"]
    assert main(gate) == 1  # no baselines yet: written, and the run fails until they are committed
    assert (baselines / "reference" / "attention_logits.json").exists()
    assert main(gate) == 0
    assert main([*gate, "--set", "qk_layernorm=false", "--report", str(report)]) == 1
    out = capsys.readouterr().out
    assert "worse than the baseline" in out and "max_attention_logit at lr=0.3" in out
    assert {p.name for p in report.iterdir()} == {"trainstab-report.json", "trainstab-report.html", "reference.png"}
    assert main([*gate, "--set", "qk_layernorm=false", "--update-baseline"]) == 0
    assert main([*gate, "--set", "qk_layernorm=false"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "x"], "--seed='x': expected an integer"),
        (["--checks", "speed"], "unknown check(s) ['speed']"),
        (["--profile", "fastest"], "profile 'fastest' is unknown"),
        (["--regen-all"], "needs a baseline folder"),
        (["--set", "qk_layernorm=maybe"], "--set: "),
        (["--update-baseline", "--regen-all"], "not allowed with argument"),
        (["--report-only", "speed"], "--report-only='speed': expected none or check names from no_divergence"),
        (["--model", "hf:llama", "--set", "qk_layernorm=false"], "qk_layernorm=False: built-in-model setting(s)"),
    ],
)
def test_check_exits_2_on_bad_input_with_a_one_line_message(args, message):
    result = _cli(*CHECK, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_check_fails_a_check_whose_baseline_is_corrupted_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "reference" / "log_z.json"
    path.parent.mkdir()
    path.write_text("{ not json")
    result = _cli(*CHECK, "--baselines", str(tmp_path), "--checks", "log_z,no_divergence", "--update-baseline")
    assert result.returncode == 1
    assert "log_z.json: is not valid JSON (line 1, column 3" in result.stdout
    assert "1 of 2 checks failed" in result.stdout
    assert "Traceback" not in result.stderr
    assert path.read_text() == "{ not json"


def test_check_and_the_plugin_share_one_option_table():
    from trainstab.cli.main import build_parser
    from trainstab.run.options import OPTIONS

    check = build_parser()._subparsers._group_actions[0].choices["check"]
    flags = {flag for action in check._actions for flag in action.option_strings}
    assert {f"--{option.name}" for option in OPTIONS} <= flags


def test_a_model_name_with_options_is_printed_as_written_not_eaten_as_markup(capsys):
    name = "user_models:build[qk_norm=false]"
    assert main(["check", "--model", name, "--checks", "no_divergence", "--steps", "5", "--lrs", "1e-2"]) == 0
    assert f"trainstab check: model={name} seed=0 steps=5 lrs=0.01" in capsys.readouterr().out
    assert main(["sweep", "--model", name, "--steps", "5", "--lrs", "1e-2", "--no-progress"]) == 0
    assert f"trainstab sweep: model={name} seed=0" in capsys.readouterr().out


def test_the_header_names_the_set_overrides_as_written(capsys):
    argv = ["check", "--set", "init_scale=10", "--set", "qk_layernorm=false", "--checks", "no_divergence"]
    assert main([*argv, "--steps", "5", "--lrs", "1e-2", "--no-progress"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert (
        header
        == "trainstab check: model=reference --set init_scale=10 --set qk_layernorm=false seed=0 steps=5 lrs=0.01"
    )
