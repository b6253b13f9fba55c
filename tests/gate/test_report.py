"""The gate's report folder: JSON, one figure per model, one self-contained HTML page."""

import base64
import dataclasses
import json
from html.parser import HTMLParser

import jsonschema
import pytest

from trainstab.checks.battery import BATTERY, Thresholds
from trainstab.core.config import SweepConfig
from trainstab.core.files import write_files
from trainstab.gate.report import HTML_NAME, JSON_NAME, model_curves, write_report
from trainstab.gate.schemas import REPORT_FORMAT_VERSION, report_schema
from trainstab.gate.verdict import Verdict, gate
from trainstab.run.options import BaselinePolicy
from trainstab.train.sweep import run_sweep

BASE = SweepConfig(lrs=(1e-2, 1e-1, 3e-1), workers=1)
BASE = dataclasses.replace(BASE, train=dataclasses.replace(BASE.train, steps=40))
NO_QK = dataclasses.replace(BASE, model=dataclasses.replace(BASE.model, qk_layernorm=False))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects the table's rows (cell texts) and the images of a page."""

    def __init__(self):
        super().__init__()
        self.rows, self.images, self.headings, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        elif data.strip():
            self.headings.append(data.strip())


@pytest.fixture(scope="module")
def gated_rows(tmp_path_factory):
    """The battery on main (recorded as baselines), then on a change that removes qk-layernorm."""
    folder = tmp_path_factory.mktemp("baselines")
    bounds = Thresholds(attention_logit=1e6)
    rows, curves = [], {}
    for config, label in ((BASE, "main"), (NO_QK, "pull-request")):
        sweep = run_sweep(config)
        for check in BATTERY.values():
            result = check.run(sweep, bounds)
            gated = gate(
                label="reference", result=result, sweep=sweep, bounds=bounds, policy=BaselinePolicy(folder), seed=0
            )
            write_files(gated.writes)
            if label == "pull-request":
                rows.append(gated)
        curves = {"reference": model_curves("reference", sweep)}
    return rows, curves


def test_the_report_folder_holds_json_figures_and_one_self_contained_page(gated_rows, tmp_path):
    rows, curves = gated_rows
    written = write_report(tmp_path, rows, curves, {"seed": 0, "environment": {"torch": "x"}})
    assert sorted(p.name for p in written) == sorted([JSON_NAME, "reference.png", HTML_NAME])
    assert (tmp_path / "reference.png").read_bytes().startswith(PNG_MAGIC)

    data = json.loads((tmp_path / JSON_NAME).read_text())
    assert data["passed"] is False and data["trainstab_report"] == REPORT_FORMAT_VERSION
    jsonschema.validate(data, report_schema())  # the schema shipped in the package and the docs
    assert {row["check"] for row in data["checks"]} == set(BATTERY)
    attention = next(row for row in data["checks"] if row["check"] == "attention_logits")
    assert attention["baseline"]["status"] == "worse"
    assert any(c["worse"] and c["lr"] == "0.3" for c in attention["baseline"]["comparisons"])
    model = data["models"]["reference"]
    assert model["baseline"]["max_attention_logit"]["0.3"] < model["max_attention_logit"][-1]  # main's, from file
    assert set(model["baseline"]["final_loss"]) == {"0.01", "0.1", "0.3"}
    assert len(model["log_z"]["0.3"]["steps"]) == len(model["log_z"]["0.3"]["mean"]) > 2
    log_z = next(row for row in data["checks"] if row["check"] == "log_z")  # the panel draws what the check reads
    # log_z reads the first and the last probe of each LR's series (where training starts and leaves log Z).
    ends = max(max(series["max_abs"][0], series["max_abs"][-1]) for series in model["log_z"].values())
    assert ends == pytest.approx(log_z["value"])

    page = _Page()
    page.feed((tmp_path / HTML_NAME).read_text())
    header, *table = [row for row in page.rows if row]
    assert header == ["model", "check", "verdict", "value", "bound", "baseline", "details"]
    assert len(table) == len(BATTERY)
    verdicts = [row[2] for row in table]
    assert verdicts == sorted(verdicts, key=lambda v: v != "FAIL")  # failures first, at the top of the page
    failed = next(row for row in table if row[1] == "attention_logits")
    assert failed[2] == "FAIL" and failed[5] == "worse" and "max_attention_logit at lr=0.3" in failed[6]
    assert "FAILED" in " ".join(page.headings[:6])  # the verdict right under the title
    (image,) = page.images  # embedded: the page alone is the report
    assert image.startswith("data:image/png;base64,")
    assert base64.b64decode(image.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_a_second_report_keeps_the_first_aside(gated_rows, tmp_path):
    rows, curves = gated_rows
    write_report(tmp_path, rows, curves, {"seed": 0})
    first = (tmp_path / HTML_NAME).read_text()
    write_report(tmp_path, rows, curves, {"seed": 0})
    assert (tmp_path / f"{HTML_NAME}.previous").read_text() == first
    assert (tmp_path / "reference.png.previous").exists()


def test_junit_properties_are_flat_key_metrics(gated_rows):
    rows, _ = gated_rows
    attention = next(verdict for verdict in rows if verdict.check == "attention_logits")
    props = dict(attention.junit_properties())
    assert props["trainstab_verdict"] == "fail"
    assert props["trainstab_baseline"] == "worse"
    assert props["trainstab_worst_regression"].startswith("max_attention_logit@lr=")
    assert all(isinstance(v, str | int | float | type(None)) for v in props.values())


def test_the_worst_regression_property_names_the_largest_overshoot():
    tolerance = {"rel": 0.5, "abs": 5.0, "worse_is": "higher", "worse": True}
    comparisons = [
        {"metric": "max_attention_logit", "lr": "0.01", "baseline": 4.0, "measured": 12.0, **tolerance},
        {"metric": "max_attention_logit", "lr": "0.3", "baseline": 33.0, "measured": 3e4, **tolerance},
    ]
    row = {
        "model": "m",
        "check": "attention_logits",
        "passed": False,
        "verdict": "FAIL",
        "check_passed": True,
        "asserted": True,
        "value": 1.0,
        "bound": 1.0,
        "lr": 0.3,
        "seed": 0,
        "message": "",
        "baseline": {
            "status": "worse",
            "file": None,
            "message": "",
            "recorded": None,
            "fails": True,
            "comparisons": comparisons,
        },
    }
    assert (
        dict(Verdict.from_json(row).junit_properties())["trainstab_worst_regression"]
        == "max_attention_logit@lr=0.3: 33.0 -> 30000.0"
    )
