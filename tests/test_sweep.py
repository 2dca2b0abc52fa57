import json
from pathlib import Path

import pytest

from rnacli.analysis.sweep import overrides, parse_grid, point_name, points, sweep
from rnacli.data.perturb import slug
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
    with pytest.raises(RnacliError, match="rna.layers given in more than one axis"):
        parse_grid(["rna.layers=7,8", "rna.side+rna.layers=reference+8,model+7"])


def test_a_stored_result_counts_only_for_the_same_questions(qa_file):
    from rnacli.evaluate.results import unanswered
    from rnacli.evaluate.tasks import resolve_tasks

    [four] = resolve_tasks([str(qa_file)], limit=4)
    [six] = resolve_tasks([str(qa_file)], limit=6)
    [perturbed] = resolve_tasks([f"perturbed-{qa_file}"], limit=4, keyword_sets={"x": ["x"]})
    stored = {"n": 4, "indices": four.indices, "keywords": [], "source": four.source}
    assert unanswered({four.name: stored}, [four]) == []
    assert unanswered({}, [four]) == [four]
    assert unanswered({six.name: stored}, [six]) == [six]  # another --limit
    assert unanswered({four.name: {**stored, "source": "other.jsonl"}}, [four]) == [four]
    done = {perturbed.name: {**stored, "keywords": ["y"]}}
    assert unanswered(done, [perturbed]) == [perturbed]  # another keyword
    # an entry from before `keywords` and `source` were stored is read as it was meant
    assert unanswered({four.name: {"indices": four.indices}}, [four]) == []


def test_a_linked_axis_moves_its_keys_together(tmp_path):
    """rna.side+rna.layers=reference+8,model+7: two placements (not four), each point a flat
    {key: value}; the plot draws a line per placement and the table a column per key."""
    from rnacli.analysis.sweep import _curves, grid_keys, plot_sweep, sweep_table

    grid = parse_grid(["rna.noise_scale=0.1,1", "rna.side+rna.layers=reference+8,model+7"])
    assert grid == {
        "rna.noise_scale": [0.1, 1],
        "rna.side+rna.layers": [["reference", 8], ["model", 7]],
    }
    assert grid_keys(grid) == ["rna.noise_scale", "rna.side", "rna.layers"]
    assert points(grid) == [
        {"rna.noise_scale": nu, "rna.side": side, "rna.layers": layer}
        for nu in (0.1, 1)
        for side, layer in (("reference", 8), ("model", 7))
    ]
    assert point_name(points(grid)[1]) == "rna.noise_scale=0.1+rna.side=model+rna.layers=7"
    for bad, match in (
        ("rna.side+rna.layers=reference+8,model", "'model' gives 1 value"),
        ("rna.side+=reference+8", "expected KEY=V1,V2"),
    ):
        with pytest.raises(RnacliError, match=match):
            parse_grid([bad])
    rows = [
        {"point": pt, "tasks": {"t": {"n": 4, "acc": acc, "stderr": 0.1}}}
        for pt, acc in zip(points(grid), (0.5, 0.6, 0.7, 0.8), strict=True)
    ]
    summary = {"folder": "f", "grid": grid, "points": rows}
    curves = _curves(summary, "t", "rna.noise_scale")
    assert {k: [(x, y) for x, y, *_ in v] for k, v in curves.items()} == {
        "rna.side=reference, rna.layers=8": [(0.1, 50.0), (1, 70.0)],
        "rna.side=model, rna.layers=7": [(0.1, 60.0), (1, 80.0)],
    }
    assert len(sweep_table(summary).columns) == 4
    from rnacli.analysis.sweep import _y_range

    assert _y_range(92.6, 94.0) == (80.0, 100.0)  # a flat panel: 20 points, inside 0-100
    assert _y_range(30.0, 80.0) == (30.0, 80.0) and _y_range(0.5, 1.5) == (0.0, 20.0)
    plot_sweep(summary, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


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

    # the same folders asked for under other settings: refused, never filed as these points
    for extra in (["rna.side = 'model'"], ["rna.layers = 0"]):
        with pytest.raises(RnacliError, match=r"rna.noise_scale=0.01: rna.(side|layers) differs"):
            sweep(recipe, grid, tmp_path / "sweeps", extra=extra)
    # an evaluation missing from a point trained with other settings: refused too
    (folder / "rna.noise_scale=0.01" / "eval.json").unlink()
    with pytest.raises(RnacliError, match="rna.side differs from the run's recipe"):
        sweep(recipe, grid, tmp_path / "sweeps", extra=["rna.side = 'model'"])
    # a stored result for other questions (another eval.limit) is not reused: evaluated again,
    # without training again
    raw["eval"]["limit"] = 4
    recipe = write_recipe(tmp_path, raw)
    again = sweep(recipe, grid, tmp_path / "sweeps")
    assert [r["tasks"][str(qa_file)]["n"] for r in again["points"]] == [4, 4]
    # a run trained past the recipe's steps is not this recipe's point
    with pytest.raises(RnacliError, match="trained 2 steps, the recipe asks for 1"):
        sweep(recipe, grid, tmp_path / "sweeps", extra=["train.steps = 1"])


def seeded_recipe(tmp_path, tiny_model_dir, corpora, qa_file):
    raw = tiny_recipe(
        tiny_model_dir, corpora, "rmu", rna=True, train={"steps": 1, "checkpoint_every": 1}
    )
    raw["eval"] = {"tasks": [str(qa_file), f"perturbed-{qa_file}"], "limit": 6}
    return write_recipe(tmp_path, raw)


def test_sweep_with_seeds_keeps_mean_and_spread_per_point(
    tmp_path, tiny_model_dir, corpora, qa_file, monkeypatch
):
    """--seeds: every point trained once per seed (train.seed); sweep.json holds per point
    and task the mean, std, min and max over the seeds and each seed's accuracy; the plot
    (mean line, min-max band) is written; a second call trains nothing."""
    recipe = seeded_recipe(tmp_path, tiny_model_dir, corpora, qa_file)
    grid = {"rna.noise_scale": [0.01, 0.3]}
    summary = sweep(recipe, grid, tmp_path / "sweeps", seeds=[0, 1])
    folder = tmp_path / "sweeps" / "rmu_rna"
    saved = json.loads((folder / "sweep.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["band"] == "min-max over seeds"
    assert [r["point"] for r in saved["points"]] == [{"rna.noise_scale": v} for v in (0.01, 0.3)]
    for row in saved["points"]:
        value = row["point"]["rna.noise_scale"]
        assert row["runs"] == {
            str(s): str(folder / f"rna.noise_scale={value}+train.seed={s}") for s in (0, 1)
        }
        for seed in (0, 1):
            run = json.loads((Path(row["runs"][str(seed)]) / "recipe.json").read_text())
            assert run["train"]["seed"] == seed and run["rna"]["noise_scale"] == value
        assert set(row["tasks"]) == {str(qa_file), f"perturbed-{qa_file}"}
        for result in row["tasks"].values():
            accs = list(result["per_seed"].values())
            assert list(result["per_seed"]) == ["0", "1"] and result["n"] == 6
            assert result["mean"] == pytest.approx(sum(accs) / 2)
            assert result["min"] == min(accs) and result["max"] == max(accs)
            assert result["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    assert (folder / "sweep.png").read_bytes()[:4] == b"\x89PNG"

    import rnacli.training.loop as train_module

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train_module, "train", no_training)
    assert sweep(recipe, grid, tmp_path / "sweeps", seeds=[0, 1])["points"] == summary["points"]
    with pytest.raises(RnacliError, match="give the seeds once"):
        sweep(recipe, {"train.seed": [0, 1]}, tmp_path / "sweeps", seeds=[0])


def test_sweep_command_with_seeds_and_jobs(
    tmp_path, tiny_model_dir, corpora, qa_file, monkeypatch, capsys
):
    """`rnacli sweep --seeds 0,1 --jobs 2`: the runs train in two worker processes; a run
    that fails is named by its folder and the others finish; run again, the done runs are
    skipped and the table shows mean ± std over the seeds, sweep.json and the plot written."""
    from tests.conftest import cli_error, run_cli

    recipe = seeded_recipe(tmp_path, tiny_model_dir, corpora, qa_file)
    out, missing = tmp_path / "sweeps", tmp_path / "no-model"
    args = ["sweep", recipe, "--out", out, "--seeds", "0,1", "--jobs", "2"]
    err = cli_error(monkeypatch, capsys, *args, "--grid", f"model.name={tiny_model_dir},{missing}")
    folder = out / "rmu_rna"
    good = [f"model.name={slug(str(tiny_model_dir))}+train.seed={s}" for s in (0, 1)]
    bad = [f"model.name={slug(str(missing))}+train.seed={s}" for s in (0, 1)]
    assert "2 of 4 sweep runs failed (the others finished" in err
    flat = err.replace(" ", "")  # rich folds long paths
    assert all(str(folder / name).replace(" ", "") in flat for name in bad)
    assert all((folder / name / "eval.json").exists() for name in good)
    assert "Traceback" in (folder / f"{bad[0]}.log").read_text()  # the worker's log

    code, err = run_cli(monkeypatch, capsys, *args, "--grid", f"model.name={tiny_model_dir}")
    assert code == 0, err
    assert err.count("done, skipped") == 2
    [row] = json.loads((folder / "sweep.json").read_text())["points"]
    assert set(row["runs"]) == {"0", "1"} and all(
        set(r) >= {"mean", "std", "min", "max", "per_seed"} for r in row["tasks"].values()
    )
    assert (folder / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "--seeds x: expected integers" in cli_error(
        monkeypatch, capsys, *args[:-4], "--grid", "rna.noise_scale=0.1", "--seeds", "x"
    )


def _fails(message: str) -> None:
    raise RnacliError(message)


def _breaks() -> None:
    raise ValueError("a bug")


def test_jobs_run_here_report_user_errors_and_let_bugs_show():
    """One process: the jobs run here in order; an RnacliError is a failure named by its job
    (the others still run), any other error is a bug and propagates with its traceback."""
    from rnacli.runtime.pool import Job, run_jobs, threads_per_job

    ended = []
    jobs = [Job("a", _fails, ("bad input",)), Job("b", sorted, ([2, 1],))]
    failures = run_jobs(jobs, 1, lambda job, result, error: ended.append((job.name, result)))
    assert failures == ["a: bad input"] and ended == [("a", None), ("b", [1, 2])]
    with pytest.raises(ValueError, match="a bug"):
        run_jobs([Job("c", _breaks)], 1)
    assert threads_per_job(10_000) == 1


def test_the_world_benchmarks_evaluate_the_base_again_only_where_asked_otherwise(
    tmp_path, tiny_model_dir, qa_file, monkeypatch
):
    """benchmarks/_world.py keeps the base's evaluation in ROOT/base/eval.json and evaluates
    only the tasks it lacks or holds for other questions (a stored world-forget of 100
    questions is not the 300-question task)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import _world

    from rnacli.evaluate.tasks import resolve_tasks

    four = resolve_tasks([str(qa_file)], limit=4)
    first = _world.base_evaluated(tmp_path, four, model=str(tiny_model_dir))
    assert len(first[str(qa_file)]["correct"]) == 4
    asked = []
    evaluate = _world.evaluate_model

    def counting(model, tasks, **kwargs):
        asked.append([len(t.records) for t in tasks])
        return evaluate(model, tasks, **kwargs)

    monkeypatch.setattr(_world, "evaluate_model", counting)
    assert _world.base_evaluated(tmp_path, four, model=str(tiny_model_dir)) == first
    assert asked == []  # the same questions: reused
    six = resolve_tasks([str(qa_file)], limit=6)
    again = _world.base_evaluated(tmp_path, six, model=str(tiny_model_dir))
    assert asked == [[6]] and len(again[str(qa_file)]["correct"]) == 6
