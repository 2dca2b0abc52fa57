import json

import pytest

from rnacli.analysis.sweep import overrides, parse_grid, point_name, points, sweep
from rnacli.errors import RnacliError
from tests.conftest import tiny_recipe


def write_recipe(tmp_path, raw):
    from rnacli.recipe import to_toml

    path = tmp_path / "rmu_rna.toml"
    path.write_text(to_toml(raw))
    return path


def test_grid_parsing():
    grid = parse_grid(["rna.noise_scale=0.01,0.02", "method.steering_coeff=5,10"])
    assert grid == {"rna.noise_scale": [0.01, 0.02], "method.steering_coeff": [5, 10]}
    assert len(points(grid)) == 4
    assert point_name({"rna.noise_scale": 0.01}) == "rna.noise_scale=0.01"
    with pytest.raises(RnacliError, match="expected KEY=V1,V2"):
        parse_grid(["rna.noise_scale"])


def test_grid_values_with_quotes_and_backslashes_round_trip(tmp_path, tiny_model_dir, corpora):
    """A point's values reach the recipe unchanged: the overrides are written as TOML by the
    recipe's writer (a hand-made f'"{v}"' broke on a quote and ate backslashes)."""
    from rnacli.recipe import load_recipe

    recipe = write_recipe(tmp_path, tiny_recipe(tiny_model_dir, corpora, "rmu"))
    path = 'corpora/say "hi"\\new\\retain.txt'
    grid = parse_grid([r'data.retain="corpora/say \"hi\"\\new\\retain.txt"'])
    assert grid == {"data.retain": [path]}
    point = {"data.retain": path, "data.forget": ['a"b.txt', "c\\d.txt"], "train.steps": 2}
    loaded = load_recipe(recipe, overrides(point))
    assert loaded.data.retain == path
    assert loaded.data.forget == ['a"b.txt', "c\\d.txt"]
    assert loaded.train.steps == 2


def test_sweep_trains_evaluates_and_resumes(
    tmp_path, tiny_model_dir, corpora, qa_file, monkeypatch
):
    raw = tiny_recipe(
        tiny_model_dir, corpora, "rmu", rna=True, train={"steps": 2, "checkpoint_every": 1}
    )
    raw["eval"] = {"tasks": [str(qa_file), f"perturbed-{qa_file}"], "limit": 6}
    recipe = write_recipe(tmp_path, raw)
    grid = {"rna.noise_scale": [0.01, 0.05]}
    summary = sweep(recipe, grid, tmp_path / "sweeps")
    folder = tmp_path / "sweeps" / "rmu_rna"
    assert [r["point"] for r in summary["points"]] == [
        {"rna.noise_scale": 0.01},
        {"rna.noise_scale": 0.05},
    ]
    assert set(summary["points"][0]["tasks"]) == {str(qa_file), f"perturbed-{qa_file}"}
    assert json.loads((folder / "sweep.json").read_text())["grid"] == grid
    assert (folder / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((folder / "rna.noise_scale=0.05" / "recipe.json").read_text())
    assert saved["rna"]["noise_scale"] == 0.05

    # a second call trains nothing: every point is done
    import rnacli.training.loop as train_module

    def no_training(*args, **kwargs):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(train_module, "train", no_training)
    again = sweep(recipe, grid, tmp_path / "sweeps")
    assert again["points"] == summary["points"]
