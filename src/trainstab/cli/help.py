"""The help of each ``trainstab`` subcommand: what it does, an example, and what its exit status means.

The exit statuses are :mod:`trainstab.core.errors`' and mean one thing each in every subcommand; each help says
what makes that subcommand's run "fail" (status 1).
"""

from __future__ import annotations

from trainstab.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_CRASHED,
    EXIT_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EXIT_PASSED,
)

#: The commands that train nothing, and so never exit 3 (a crash in training) or 4 (inconclusive).
TRAINING_FREE = frozenset({"init", "baselines"})


def exit_status(failed: str, trains: bool = True) -> str:
    """The exit-status block of a subcommand's help; ``failed`` says what status 1 means there; a command that
    ``trains`` nothing lists no crash or inconclusive status."""
    rows = (
        (EXIT_PASSED, "success"),
        (EXIT_FAILED, failed),
        (EXIT_BAD_INPUT, "bad input, or a model that cannot be built or fails its first training step (one line)"),
        (EXIT_CRASHED, "the model crashed during training (one line; --traceback prints the whole traceback)"),
        (EXIT_INCONCLUSIVE, "inconclusive: it trained, but cannot answer (a refused forecast, --time-limit-seconds)"),
        (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
    )
    shown = [(code, meaning) for code, meaning in rows if trains or code not in (EXIT_CRASHED, EXIT_INCONCLUSIVE)]
    return "exit status:\n" + "\n".join(f"  {code:<3}  {meaning}" for code, meaning in shown)


#: Per subcommand: (description, example, what status 1 means there).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "sweep": (
        "Train one tiny model per learning rate and print each run's losses, max attention logit and log Z.",
        "trainstab sweep --model mypkg.models:build --lrs 1e-3,1e-2,1e-1 --json sweep.json",
        "a file the run owed (--json) could not be written (a sweep reports, it does not judge)",
    ),
    "check": (
        "Judge one model with the checks pytest runs (the battery by default; the scaling and paired checks by\n"
        "name), held to its committed baselines. The same options, configuration file and verdicts as the\n"
        "pytest plugin, without the --trainstab- prefix.",
        "trainstab check --model mypkg.models:build --profile quick --baselines stability-baselines\n"
        "  trainstab check --checks attention_forecast,z_loss_effect --widths 32,48,64,128",
        "a check failed: the model is unstable (or a file the run owed could not be written)",
    ),
    "compare": (
        "Gate the change against its base: train the model as the working tree has it and as a git revision\n"
        "has it (by default the merge base of HEAD with the default branch), with the same seeds, batches and\n"
        "LR grid, on --against-seeds seeds each, and compare every check side by side: the head fails where\n"
        "it is worse than the base by more than the noise of the pair. The absolute bounds (and baselines,\n"
        "when given) apply too. trainstab check --against REF does the same.",
        "trainstab compare --model mypkg.models:build --against main",
        "a check failed: its absolute bound, or the head is worse than the base beyond the pair's noise",
    ),
    "fuzz": (
        "Search learning rate x width x warm-up for unstable regions (Hypothesis) and map them.",
        "trainstab fuzz --model mypkg.models:build --budget 40 --json fuzz.json --plot fuzz.png",
        "an unstable point was found (or a file the run owed could not be written)",
    ),
    "reproduce": (
        "Run the paper's findings at proxy scale: one PNG each, a Markdown summary and a JSON of the numbers.",
        "trainstab reproduce --quick --out trainstab-findings",
        "a file the run owed could not be written (a finding that did not hold is reported, not failed)",
    ),
    "init": (
        "Scaffold your repository for the stability gate: the test file for your factory, the pytest\n"
        "configuration keys, .gitignore lines, the CI script and a GitHub Actions workflow. A file of yours is\n"
        "never changed: a differing one is shown as a diff and kept (--force writes trainstab's, keeping yours\n"
        "as <name>.previous); the configuration and .gitignore only gain what they lack.",
        "trainstab init --model mypkg.models:build",
        "a file of yours is in the way (its diff, or the keys to add by hand, shown): nothing was written over it",
    ),
    "baselines": (
        "Check a folder of committed baselines without training: every file read as a run reads it, one line per\n"
        "problem (a pre-commit hook can run it). The folder: DIR, else trainstab_baselines of the configuration.",
        "trainstab baselines validate stability-baselines",
        "a baseline file a run could not use (each is named, with what is wrong)",
    ),
    "forecast": (
        "Train a width ladder and forecast max attention logits and gradient RMS at --target-params.",
        "trainstab forecast --model mypkg.models:build --widths 32,48,64,128 --target-params 1e9",
        "an LR is forecast (or measured) to cross its level (or a file the run owed could not be written)",
    ),
}


def epilog(command: str) -> str:
    """The text after a subcommand's options: an example, then its exit statuses."""
    _, example, failed = COMMANDS[command]
    return f"example:\n  {example}\n\n{exit_status(failed, trains=command not in TRAINING_FREE)}"


def description(command: str) -> str:
    """What the subcommand does, above its options."""
    return COMMANDS[command][0]
