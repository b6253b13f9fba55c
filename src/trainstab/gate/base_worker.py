"""The child process that trains a model at the base revision (:mod:`trainstab.gate.against` starts it).

    python -m trainstab.gate.base_worker REQUEST.json

Run in the base's checkout, with the folder the model's package lives in first on ``PYTHONPATH``. The request
(written by the parent into its private folder) names the sweep configs, the model's module, the checkout and
the persistent cache. The worker:

1. finds the module; one missing from the checkout, or without the factory, is new in the head (``absent``);
   one imported from anywhere but the checkout is an error (an installed copy shadowing it);
2. trains the configs (through the cache when there is one) and writes each sweep, as the cache writes one,
   beside the request;
3. writes ``report.json``: ``ok``, ``absent``, ``crashed`` or ``error``, with one line saying why.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from trainstab.cache import session_cache, sweep_cache
from trainstab.core.config import ModelConfig, SweepConfig, TrainConfig
from trainstab.core.errors import ModelCrashed, TrainstabError
from trainstab.core.model_names import split_model_name


def config_from(data: dict[str, Any]) -> SweepConfig:
    """The sweep config ``dataclasses.asdict`` wrote."""
    return SweepConfig(
        **{
            **data,
            "model": ModelConfig(**data["model"]),
            "train": TrainConfig(**data["train"]),
            "lrs": tuple(data["lrs"]),
        }
    )


def _located(module: str, tree: Path, factory: str, head: Path | None = None) -> tuple[str, str]:
    """(status, line): ``ok`` when the checkout's module has the factory; ``absent`` or ``error`` with why.

    A module found in the head's working tree (``head``; reached through a ``.pth`` file of an editable install)
    is one the checkout does not have.
    """
    try:
        spec = importlib.util.find_spec(module)  # imports its parent packages
    except ModuleNotFoundError as error:  # a parent package the checkout does not have; else the base is broken
        parents = {".".join(module.split(".")[: i + 1]) for i in range(module.count(".") + 1)}
        if error.name not in parents:
            raise
        spec = None
    if spec is None:
        return "absent", f"{module} does not exist"
    origin = Path(spec.origin).resolve() if spec.origin else None
    if (
        origin is not None
        and head is not None
        and head.resolve() in origin.parents
        and tree.resolve() not in (origin.parents)
    ):
        return "absent", f"{module} does not exist"
    if origin is None or tree.resolve() not in origin.parents:
        return "error", (
            f"{module} was imported from {origin}, not from the checkout: an installed copy shadows it; "
            "install the package in editable mode (pip install -e .) or not at all"
        )
    loaded = importlib.import_module(module)
    if not hasattr(loaded, factory):
        return "absent", f"{module} has no {factory}"
    return "ok", ""


def run(request_path: Path) -> dict[str, Any]:
    """Do the request's work (module docstring); the report to write."""
    request = json.loads(request_path.read_text())
    out, tree = Path(request["out"]), Path(request["tree"])
    configs = [config_from(data) for data in request["configs"]]
    base, _ = split_model_name(configs[0].model_name)
    status, line = _located(request["module"], tree, base.partition(":")[2], Path(request["head"]))
    if status != "ok":
        return {"status": status, "line": line}
    from trainstab.train.sweep import run_sweeps

    uses: list[dict[str, Any]] = []
    if request["cache"] is not None:
        found = sweep_cache.cached_many(Path(request["cache"]), configs, run_sweeps)
        results = [result for result, _ in found]
        uses = [{"entry": use.entry, "read": use.read, "stale": use.stale} for _, use in found]
    else:
        results = run_sweeps(configs)
    for index, result in enumerate(results):
        session_cache.write_sweep(out / f"sweep-{index}.json", result)
    return {"status": "ok", "line": "", "uses": uses}


def main(argv: list[str]) -> int:
    """Entry point: run the request, write the report; the exit status says only whether the report was written."""
    request_path = Path(argv[0])
    try:
        report = run(request_path)
    except ModelCrashed as error:
        report = {"status": "crashed", "line": error.crash.line()}
    except TrainstabError as error:
        report = {"status": "error", "line": str(error)}
    except Exception as error:  # the base's model failed to import or build: its own error, one line
        frames = traceback.extract_tb(error.__traceback__)
        where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        report = {"status": "error", "line": f"{type(error).__name__}: {error}{where}"}
    out = request_path.parent
    temporary = out / "report.json.tmp"
    temporary.write_text(json.dumps(report))
    temporary.replace(out / "report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
