import json

import pytest

from rnacli.evaluate.comparison import compare
from rnacli.evaluate.report import comparison_plot, comparison_tables


def entry(label, model, accs):
    return {
        "model": model,
        "label": label,
        "backend": "native",
        "tasks": {t: {"n": 100, "acc": a, "stderr": 0.05} for t, a in accs.items()},
    }


def fake_run(tmp_path, name, rna, accs):
    folder = tmp_path / name
    folder.mkdir()
    recipe = {
        "model": {"name": "m"},
        "data": {"forget": ["x"]},
        "method": {"name": "rmu", "retain_loss": "rm"},
        "rna": {"enabled": rna, "noise_scale": 0.03 if rna else 0.0},
        "train": {"steps": 10},
        "name": name,
    }
    (folder / "recipe.json").write_text(json.dumps(recipe))
    (folder / "eval.json").write_text(json.dumps({"models": [entry(name, str(folder), accs)]}))
    return folder


def test_report_rates_and_twins(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    accs = {"wmdp-bio": 0.5, "wmdp-cyber": 0.4, "perturbed-mmlu": 0.60}
    (base / "eval.json").write_text(json.dumps({"models": [entry("zephyr", "z", accs)]}))
    plain = fake_run(
        tmp_path, "rmu", False, {"wmdp-bio": 0.3, "wmdp-cyber": 0.3, "perturbed-mmlu": 0.30}
    )
    rna = fake_run(
        tmp_path, "rmu_rna", True, {"wmdp-bio": 0.3, "wmdp-cyber": 0.28, "perturbed-mmlu": 0.50}
    )
    comparison = compare([plain, rna, base], "zephyr")
    assert comparison.tasks == ["wmdp-bio", "wmdp-cyber", "wmdp-avg", "perturbed-mmlu"]
    rows = {r["run"]: r for r in comparison.rows("perturbed-mmlu")}
    # the paper's worked example: 60 / 30 / 50 -> reduction 50 %, recovery 66.67 %
    assert rows["rmu"]["reduction"] == pytest.approx(0.5)
    assert rows["rmu_rna"]["recovery"] == pytest.approx(2 / 3)
    assert rows["rmu_rna"]["twin"] == "rmu"
    assert rows["rmu"]["recovery"] is None
    avg = {r["run"]: r for r in comparison.rows("wmdp-avg")}
    assert avg["zephyr"]["acc"] == pytest.approx(0.45)
    assert len(comparison_tables(comparison)) == 4
    comparison_plot(comparison, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    data = comparison.to_dict()
    assert data["base"] == "zephyr" and data["runs"][1]["twin"] == "rmu"
    json.dumps(data)  # no NaN sneaks into report.json


def test_report_cli(tmp_path):
    from typer.testing import CliRunner

    from rnacli.cli import app

    base = tmp_path / "base"
    base.mkdir()
    (base / "eval.json").write_text(json.dumps({"models": [entry("b", "b", {"mmlu": 0.6})]}))
    plain = fake_run(tmp_path, "rmu", False, {"mmlu": 0.3})
    rna = fake_run(tmp_path, "rmu_rna", True, {"mmlu": 0.5})
    result = CliRunner().invoke(
        app, ["report", str(plain), str(rna), "--base", str(base), "--out", str(tmp_path / "rep")]
    )
    assert result.exit_code == 0, result.output
    assert "66.7 %" in result.output and "50.0 %" in result.output
    assert (tmp_path / "rep" / "report.png").exists()
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["tasks"]["mmlu"][2]["recovery"] == pytest.approx(2 / 3)
