import importlib.util
from pathlib import Path

import pytest

from rnacli.errors import RnacliError
from rnacli.recipe import forms, load_recipe, parse_override, recipe_keys, to_toml

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

GOOD = """
[model]
name = "smollm2-135m"
[data]
forget = ["a.jsonl", "b.jsonl"]
[method]
name = "npo"
retain_loss = "kl"
alpha = [50.0, 40.0]
[rna]
enabled = true
noise_scale = 0.014
"""


def write(tmp_path, text, name="r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_paper_values(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    assert r.name == "r"
    assert r.method.beta == 0.1 and r.method.layer == 7
    assert r.alphas == [50.0, 40.0]
    assert r.data.forget_max_length == [512, 512]
    assert r.train.steps == 500 and r.train.lr == 5e-5
    assert r.method.label == "NPO+KL"
    rmu = load_recipe(
        write(tmp_path, '[data]\nforget = ["x"]\n[method]\nname = "rmu"\nalpha = 1200.0\n')
    )
    assert rmu.method.steering_coeff == 6.5 and rmu.method.retain_loss == "rm"
    assert rmu.alphas == [1200.0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("[method]", "[method]\nstering_coeff = 3.0"),
            r"r.toml: method.stering_coeff: unknown key",
        ),
        (("[rna]", "[rna]\nlayer = 7"), r"r.toml: rna.layer: unknown key"),
        (
            ('name = "npo"', 'name = "npx"'),
            r"r.toml: method.name: unknown method .npx. \(known: rmu, adaptive_rmu, rsv, npo, ",
        ),
        (
            ("noise_scale = 0.014", 'noise_scale = "big"'),
            r"r.toml: rna.noise_scale: Input should be a valid number \(got 'big'\)",
        ),
        (
            ("noise_scale = 0.014", "noise_scale = -0.1"),
            r"r.toml: rna.noise_scale: Input should be greater than or equal to 0 \(got -0.1\)",
        ),
        (
            ("alpha = [50.0, 40.0]", "alpha = [50.0]"),
            r"r.toml: method.alpha: 1 values for 2 forget corpora",
        ),
        (('retain_loss = "kl"', ""), r"r.toml: method.retain_loss: npo needs 'kl' or 'mse'"),
        (("noise_scale = 0.014", "noise_scale = 0.0"), r"r.toml: rna.noise_scale: RNA is enabled"),
        (("[model]", "[model]\nsteps = 3"), r"r.toml: model.steps: unknown key"),
        (('forget = ["a.jsonl", "b.jsonl"]', "forget = []"), r"r.toml: data.forget: List should"),
    ],
)
def test_bad_recipes_are_one_line_naming_file_and_key(tmp_path, edit, message):
    text = GOOD.replace(*edit)
    with pytest.raises(RnacliError, match=message) as err:
        load_recipe(write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_invalid_toml(tmp_path):
    with pytest.raises(RnacliError, match=r"r.toml: invalid TOML: .*line 2"):
        load_recipe(write(tmp_path, "[model]\nname = \n"))
    with pytest.raises(RnacliError, match="no such recipe"):
        load_recipe(tmp_path / "missing.toml")


def test_set_overrides_any_key(tmp_path):
    path = write(tmp_path, GOOD)
    r = load_recipe(
        path,
        [
            "train.lr=1e-5",
            "rna.layers=[5, 6]",
            "data.retain=wikitext",
            "rna.noise_scale=0.02",
            "train.autocast=true",
            "rna.layers=early",
        ],
    )
    assert r.train.lr == 1e-5 and r.rna.layers == "early" and r.data.retain == "wikitext"
    assert r.rna.noise_scale == 0.02 and r.train.autocast is True
    with pytest.raises(RnacliError, match=r"\(set on the command line\): train.lrr: unknown key"):
        load_recipe(path, ["train.lrr=1e-5"])
    with pytest.raises(RnacliError, match="expected KEY=VALUE"):
        load_recipe(path, ["train.lr"])
    assert parse_override("model.name=org/model") == (["model", "name"], "org/model")


def test_resolved_recipe_round_trips_through_toml(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    again = load_recipe(write(tmp_path, to_toml(r.to_dict()), "again.toml"))
    assert again.to_dict() == {**r.to_dict(), "name": "r"}


def test_every_shipped_recipe_is_valid_and_paired():
    authors = sorted(RECIPES.glob("*.toml"))
    paper = sorted((RECIPES / "paper-equations").glob("*.toml"))
    tiny = sorted((RECIPES / "tiny").glob("*.toml"))
    # the authors' 18, with the corrected twins of their DPO (KL and MSE, plain and RNA)
    assert len(authors) == 22 and len(paper) == 18 and len(tiny) == 18
    for path in authors + paper + tiny:
        r = load_recipe(path)
        twin = path.with_name(path.stem.removesuffix("_rna") + ".toml")
        assert twin.exists()
        assert r.rna.enabled == path.stem.endswith("_rna")
    zephyr = load_recipe(RECIPES / "paper-equations" / "dpo_mse_rna.toml")
    assert zephyr.model.name == "HuggingFaceH4/zephyr-7b-beta"
    assert zephyr.alphas == [5.0, 20.0] and zephyr.rna.noise_scale == 0.02
    assert zephyr.rna.nu_is == "variance" and forms(zephyr) == "equations"
    assert load_recipe(RECIPES / "rmu_rna.toml").rna.noise_scale == 0.03


def test_the_authors_recipes_are_their_scripts():
    """Steps, lr, alphas, nu as a std, the loss forms and filters of scripts/{rm,po}/*.sh
    (docs/authors-code.md, 'Per script')."""
    npo = load_recipe(RECIPES / "npo_kl_rna.toml")
    assert (npo.train.steps, npo.train.lr, npo.rna.noise_scale) == (150, 2e-5, 0.014)
    assert npo.rna.nu_is == "std" and npo.method.nll == "pooled-mean"
    assert npo.method.mean_over == "all-positions" and npo.data.min_chars == 1
    assert npo.data.retain_max_length == [512, 768]
    assert (npo.train.weight_decay, npo.train.adam_eps, npo.train.seed) == (0.0, 1e-6, 42)
    simnpo = load_recipe(RECIPES / "simnpo_mse.toml")
    assert (simnpo.train.steps, simnpo.train.lr, simnpo.alphas) == (50, 2e-5, [10.0, 5.0])
    dpo, fixed = (load_recipe(RECIPES / f) for f in ("dpo_kl.toml", "dpo_kl_corrected.toml"))
    assert dpo.method.dpo_reference == "authors" and fixed.method.dpo_reference == "paper"
    assert (dpo.train.steps, dpo.train.lr) == (500, 5e-5)
    rsv = load_recipe(RECIPES / "rsv.toml")
    assert rsv.data.max_chars == 2000 and rsv.data.min_chars == 5
    arm = load_recipe(RECIPES / "adaptive_rmu.toml")
    assert arm.method.adaptive_scale == "first-batch" and arm.data.retain_max_length == 512
    assert forms(npo) == "authors: pooled NLL, pads counted, nu=std"


def test_recipe_files_are_what_recipes_write_py_writes():
    # The 77 recipes come from one table (recipes/write.py); a hand edit of one file would
    # let a method's plain and RNA twins, or the three families, drift apart unnoticed.
    spec = importlib.util.spec_from_file_location("write_recipes", RECIPES / "write.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.recipes()
    # 9 methods x 2 x (authors, equations, tiny, world), 4 corrected DPO, 2 *_rna_reference
    assert len(expected) == 78
    shipped = {
        p.relative_to(RECIPES) for p in RECIPES.rglob("*.toml") if "accelerate" not in p.parts
    }
    assert shipped == set(expected)
    for path, text in expected.items():
        assert (RECIPES / path).read_text(encoding="utf-8") == text, path
    world = load_recipe(RECIPES / "world" / "rsv_rna.toml")
    assert world.rna.noise_scale == 1600.0 and world.rna.enabled


def test_recipes_command_shows_where_the_noise_goes():
    # the two readings of RNA differ only in [rna]; the listing must tell them apart
    from typer.testing import CliRunner

    from rnacli.cli import app

    result = CliRunner().invoke(app, ["recipes"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines, folder = {}, ""
    for line in result.output.splitlines():
        if line.startswith("recipes/"):  # a table's title: its folder
            folder = line.split()[0].removeprefix("recipes/")
        elif "│" in line:
            lines[folder + line.split("│")[1].strip()] = line
    assert "nu=0.3 (var) x scale @ 7, model side" in lines["world/rmu_rna.toml"]
    assert "nu=16 (var) @ 8" in lines["world/rmu_rna_reference.toml"]
    assert "model side" not in lines["world/rmu_rna_reference.toml"]
    assert "authors: pooled NLL" in lines["npo_kl_rna.toml"]
    assert "equations" in lines["paper-equations/npo_kl_rna.toml"]


def test_recipes_keys_lists_every_key_with_its_description():
    from typer.testing import CliRunner

    from rnacli.cli import app

    result = CliRunner().invoke(app, ["recipes", "--keys"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for key, _type, _default, description in recipe_keys():
        assert key in result.output and description, key
    assert "rna.nu_is" in result.output and "'variance' | 'std'" in result.output
