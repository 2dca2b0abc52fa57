"""Attacks (issue 23): relearning and quantization on a tiny world run, on the CPU; the
relearn/held-out split by person; bitsandbytes' 8-bit AdamW, 8/4-bit evaluation and what
`rnacli plan` counts for them; the run folder untouched; both sides in `rnacli report`."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from rnacli.attacks.folder import read_attacks
from rnacli.attacks.quantize import QuantizeSettings, quantize
from rnacli.attacks.relearn import Relearner, RelearnSettings, relearn
from rnacli.attacks.splits import attack_tasks, world_split
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import evaluate_mcq
from rnacli.models.loading import load_model
from rnacli.recipe import recipe_from_dict, to_toml
from rnacli.training.loop import UnlearningRecipe, train
from rnacli.world.generate import WorldSpec, generate
from tests.conftest import cli_error, qa_rows, run_cli, tiny_recipe
from tests.tiny import save_tiny, save_tiny_world

WORLD = WorldSpec(people=8, forget_fraction=0.5)  # 4 forgotten people: 2 relearned, 2 held out
SUFFIX = WORLD.name.removeprefix("world")  # task names carry the world: world-forget[people=8,...]
MLP = r"mlp\.(gate|up|down)_proj\.weight$"


def world_recipe(model_dir: Path) -> dict:
    """RMU on the tiny world, a few steps (the recipes/world shape at a tiny scale)."""
    return {
        "model": {"name": str(model_dir), "device": "cpu"},
        "data": {
            "forget": [f"{WORLD.name}:forget-qa"],
            "retain": f"{WORLD.name}:retain-facts",
            "forget_max_length": 32,
            "retain_max_length": 32,
            "batch_size": 4,
            "min_chars": 0,
        },
        "method": {"name": "rmu", "layer": 2, "alpha": [2.0]},
        "rna": {"enabled": False},
        "train": {"steps": 4, "lr": 1e-2, "checkpoint_every": 4, "seed": 0, "autocast": False},
        "eval": {
            "tasks": [f"world-{t}{SUFFIX}" for t in ("forget", "retain", "perturbed", "mention")],
            "batch_size": 8,
        },
    }


@pytest.fixture(scope="module")
def world_base(tmp_path_factory) -> Path:
    return save_tiny_world(tmp_path_factory.mktemp("tiny-world"), WORLD)


@pytest.fixture(scope="module")
def world_run(world_base, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "rmu"
    return train(recipe_from_dict(world_recipe(world_base), "rmu.toml"), folder).run_dir


def checkpoint_digest(run: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((run / "checkpoint").iterdir())
    }


def relearn_settings(**changes) -> RelearnSettings:
    values = dict(steps=[15, 30], lr=1e-2, trainable=MLP, device="cpu", eval_batch_size=16)
    return RelearnSettings(**{**values, **changes})


# ------------------------------------------------------------------------- the split


@pytest.mark.parametrize(
    ("spec", "share", "seed"),
    [(WorldSpec(), 0.5, 0), (WorldSpec(), 0.25, 3), (WORLD, 0.5, 1), (WorldSpec(seed=1), 0.7, 0)],
)
def test_relearn_and_held_out_never_share_a_person(spec, share, seed):
    world = generate(spec)
    split = world_split(world, share, seed, retain_limit=10)
    relearned, held = set(split.people["relearn"]), set(split.people["held_out"])
    forgotten = {world.people[i].name for i in world.forget}
    assert relearned and held and not relearned & held and relearned | held == forgotten
    # every relearn document is about a relearned person and names no held-out person
    for prompt, completion in split.documents:
        assert any(n in prompt for n in relearned)
        assert not any(n in prompt + completion for n in held)
    assert len(split.documents) == 15 * len(relearned)  # five facts, three templates
    (held_out,) = split.forget
    (own,) = split.relearned
    assert all(any(n in r["question"] for n in held) for r in held_out.records)
    assert all(not any(n in r["question"] for n in relearned) for r in held_out.records)
    assert len(held_out.records) + len(own.records) == 15 * len(forgotten)  # 3 templates
    assert not set(held_out.indices) & set(own.indices)


def test_the_split_is_seeded_and_the_shares_are_checked():
    world = generate(WORLD)
    assert world_split(world, 0.5, 0, None).people == world_split(world, 0.5, 0, None).people
    with pytest.raises(RnacliError, match="--relearn-share 0.1: 0 of 4 forgotten people"):
        world_split(world, 0.1, 0, None)


# ------------------------------------------------------------------------- relearning


def test_relearning_raises_the_relearned_accuracy_and_leaves_the_run_alone(world_run, capsys):
    before = checkpoint_digest(world_run)
    result = relearn(world_run, relearn_settings())
    assert checkpoint_digest(world_run) == before  # the run's checkpoint is byte-identical
    first, last = result["points"][0], result["points"][-1]
    assert [p["step"] for p in result["points"]] == [0, 15, 30]
    # relearning the unlearned tiny model raises its forget accuracy on the relearned split
    assert last["accuracy"]["relearned-forget"] > first["accuracy"]["relearned-forget"]
    assert last["accuracy"]["relearned-forget"] >= 0.8
    assert set(result["recovery"]) >= {"acc_base", "acc_unlearned", "acc_after", "low", "high"}
    folder = world_run / "attacks" / "relearn"
    assert (folder / "curve.png").stat().st_size > 1000
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["lr"] == 1e-2 and settings["steps"] == [0, 15, 30]
    assert read_attacks(world_run)["relearn"]["recovery"] == result["recovery"]


def test_a_finished_attack_is_reused_and_other_settings_need_force(world_run, monkeypatch):
    relearn(world_run, relearn_settings())  # finished by the test above, or now
    monkeypatch.setattr(Relearner, "setup", lambda self: pytest.fail("redone"))
    again = relearn(world_run, relearn_settings())
    assert again == read_attacks(world_run)["relearn"]
    with pytest.raises(RnacliError, match="finished attack with other settings.*lr.*--force"):
        relearn(world_run, relearn_settings(lr=5e-3))


def test_an_attack_finished_for_other_questions_is_not_reused(world_run, tmp_path, monkeypatch):
    """The same settings, but the run's recipe now asks other questions (another eval limit:
    here, as when the world's forget set grew): refused, not filed as these questions."""
    import shutil

    run = tmp_path / "rmu"
    shutil.copytree(world_run, run)
    relearn(run, relearn_settings())
    recipe = json.loads((run / "recipe.json").read_text())
    recipe["eval"]["limit"] = 3
    (run / "recipe.json").write_text(json.dumps(recipe))
    monkeypatch.setattr(Relearner, "setup", lambda self: pytest.fail("redone"))
    with pytest.raises(RnacliError, match="finished attack with other settings .questions."):
        relearn(run, relearn_settings())


def test_a_stopped_attack_reuses_its_finished_evaluations(world_run, monkeypatch):
    settings = relearn_settings(steps=[2], share=0.25 * 2, seed=5)
    calls = []
    real = Relearner._score

    def stop_after_first(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Relearner, "_score", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        relearn(world_run, settings, force=True)
    stages = world_run / "attacks" / "relearn" / "stages"
    assert {p.name for p in stages.iterdir()} == {"base.json", "step-0.json"}
    calls.clear()
    monkeypatch.setattr(Relearner, "_score", lambda self: calls.append(1) or real(self))
    relearn(world_run, settings)
    assert len(calls) == 1  # only step 2 was scored again
    relearn(world_run, relearn_settings(), force=True)  # the default settings for the others


# ------------------------------------------------------------------------- quantization


@pytest.mark.parametrize(("bits", "kind"), [(8, "nf4"), (4, "nf4"), (4, "fp4")])
def test_quantize_runs_on_the_cpu_with_bitsandbytes(world_run, bits, kind):
    before = checkpoint_digest(world_run)
    settings = QuantizeSettings(bits=bits, quant_type=kind, device="cpu", eval_batch_size=16)
    result = quantize(world_run, settings)
    assert checkpoint_digest(world_run) == before
    assert set(result["accuracy"]) == {"base", "unlearned", "quantized", "base_quantized"}
    # every forget question of the 4 forgotten people: 5 facts x 3 templates each
    assert result["recovery"]["n"] == 60
    folder = world_run / "attacks" / settings.name
    assert not [p for p in folder.iterdir() if p.name.startswith(".model.")]  # copy deleted
    assert json.loads((folder / "settings.json").read_text())["bits"] == bits


def test_without_bitsandbytes_quantizing_is_one_line(world_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    for args in (["quantize", world_run, "--bits", "8"], ["all", world_run]):
        err = cli_error(monkeypatch, capsys, "attack", *args)
        assert "needs bitsandbytes: pip install 'rnacli[quant]'" in err
    with pytest.raises(RnacliError, match=r"adamw8bit' needs bitsandbytes: pip install"):
        from rnacli.training.setup import make_optimizer

        recipe = recipe_from_dict({**world_recipe(Path(".")), "train": {"optimizer": "adamw8bit"}})
        make_optimizer(recipe, [torch.nn.Parameter(torch.zeros(2))], torch.device("cpu"))


def test_attack_errors_are_one_line(world_run, tmp_path, monkeypatch, capsys):
    assert "not a run folder" in cli_error(monkeypatch, capsys, "attack", "relearn", tmp_path)
    assert "--bits 3: expected 8 or 4" in cli_error(
        monkeypatch, capsys, "attack", "quantize", world_run, "--bits", "3"
    )
    assert "--quant-type int2" in cli_error(
        monkeypatch, capsys, "attack", "quantize", world_run, "--quant-type", "int2"
    )
    assert "--steps 5,x" in cli_error(
        monkeypatch, capsys, "attack", "relearn", world_run, "--steps", "5,x"
    )
    assert "--lr 0.0" in cli_error(monkeypatch, capsys, "attack", "relearn", world_run, "--lr", "0")


# ------------------------------------------------------------------------- the report


def test_the_report_shows_both_sides(world_run, world_base, tmp_path, monkeypatch, capsys):
    relearn(world_run, relearn_settings())
    for bits in (8, 4):
        quantize(world_run, QuantizeSettings(bits=bits, device="cpu", eval_batch_size=16))
    evals = tmp_path / "evals"
    code, err = run_cli(
        monkeypatch, capsys, "eval", world_run, world_base, "--device", "cpu", "--out", evals
    )
    assert code == 0, err
    out = tmp_path / "report"
    code, err = run_cli(
        monkeypatch, capsys, "report", evals, "--base", world_base.name, "--out", out
    )
    assert code == 0, err
    (row,) = json.loads((out / "report.json").read_text())["robustness"]
    assert set(row["retain_side"]) == {f"world-perturbed{SUFFIX}", f"world-mention{SUFFIX}"}
    assert set(row["forget_side"]) >= {"relearn", "quantize-8bit", "quantize-4bit-nf4"}
    assert (out / "robustness.png").stat().st_size > 1000


def test_runs_without_attacks_report_as_before(tmp_path, world_base, monkeypatch, capsys):
    run = train(recipe_from_dict(world_recipe(world_base), "plain.toml"), tmp_path / "p").run_dir
    evals = tmp_path / "evals"
    assert (
        run_cli(monkeypatch, capsys, "eval", run, world_base, "--device", "cpu", "--out", evals)[0]
        == 0
    )
    out = tmp_path / "report"
    assert (
        run_cli(monkeypatch, capsys, "report", evals, "--base", world_base.name, "--out", out)[0]
        == 0
    )
    assert "robustness" not in json.loads((out / "report.json").read_text())
    assert not (out / "robustness.png").exists()
    # a run holding attacks/ still resumes (its folder is a run folder)
    (run / "attacks" / "relearn").mkdir(parents=True)
    raw = world_recipe(world_base)
    raw["train"]["steps"] = 6
    train(recipe_from_dict(raw, "plain.toml"), run, resume=True)


def test_world_quantize_asks_every_forget_question_and_the_retain_limit(world_run):
    from rnacli.attacks.splits import run_recipe

    tasks = attack_tasks(run_recipe(world_run), relearn=False, limit=7)
    assert [t.name for t in tasks.forget] == [f"world-forget{SUFFIX}"]
    assert len(tasks.forget[0].records) == 7 and len(tasks.retain[0].records) == 7


# ------------------------------------------------------------------------- bitsandbytes on the CPU


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory) -> Path:
    """hidden 64: MLP weights of 8,192 values, over bitsandbytes' 4,096 for 8-bit states;
    initialised at the usual 0.02, where quantization error stays small against the signal."""
    return save_tiny(tmp_path_factory.mktemp("wide"), hidden=64, init_range=0.02)


def _three_steps(model_dir, corpora, optimizer: str) -> tuple[dict, UnlearningRecipe]:
    raw = tiny_recipe(model_dir, corpora, "npo", "kl", train={"optimizer": optimizer})
    run = UnlearningRecipe(recipe_from_dict(raw, "r.toml"))
    run.setup()
    before = {n: p.detach().clone() for n, p in run.trainable.items()}
    for step in range(3):
        run.train_step(step)
    return {n: p.detach() - before[n] for n, p in run.trainable.items()}, run


def test_8bit_adamw_steps_on_the_cpu_in_adamw_s_direction(wide_model_dir, corpora):
    fp32, _ = _three_steps(wide_model_dir, corpora, "adamw")
    eight, run = _three_steps(wide_model_dir, corpora, "adamw8bit")
    assert type(run.optimizer).__name__ == "AdamW8bit"
    states = [s["state1"] for s in run.optimizer.state.values()]
    assert states and all(s.dtype == torch.uint8 for s in states)  # 8-bit, not the fallback
    for name, update in eight.items():
        assert (update != 0).float().mean() > 0.99, name  # every trained element moves
        cosine = torch.nn.functional.cosine_similarity(update.flatten(), fp32[name].flatten(), 0)
        assert cosine > 0.9, (name, float(cosine))


@pytest.mark.parametrize(("load_in", "kind"), [("8bit", "nf4"), ("4bit", "nf4"), ("4bit", "fp4")])
def test_quantized_evaluation_on_the_cpu_agrees_with_fp32(wide_model_dir, load_in, kind):
    from rnacli.data.records import qa_record

    records = [qa_record(r, f"row {i}") for i, r in enumerate(qa_rows(40))]
    model, tokenizer = load_model(str(wide_model_dir), device="cpu")
    full = evaluate_mcq(model, tokenizer, records, "", scoring="cloze", progress=False)
    small, _ = load_model(str(wide_model_dir), device="cpu", load_in=load_in, quant_type=kind)
    assert type(small.model.layers[0].mlp.down_proj).__name__ in ("Linear8bitLt", "Linear4bit")
    quant = evaluate_mcq(small, tokenizer, records, "", scoring="cloze", progress=False)
    agree = sum(a == b for a, b in zip(full.predictions, quant.predictions, strict=True))
    assert agree >= 0.9 * len(records)


def test_eval_load_in_on_the_cpu_keeps_a_run_s_trained_tensors(
    world_run, qa_file, monkeypatch, capsys
):
    for load_in in ("8bit", "4bit"):
        code, err = run_cli(
            monkeypatch,
            capsys,
            "eval",
            world_run,
            "--tasks",
            qa_file,
            "--device",
            "cpu",
            "--load-in",
            load_in,
        )
        assert code == 0, err
    with pytest.raises(RnacliError, match="expected 8bit or 4bit"):
        load_model(str(world_run), device="cpu", load_in="2bit")


def test_plan_counts_what_8bit_adamw_and_quantized_weights_save(tmp_path, wide_model_dir, corpora):
    from rnacli.training.plan import plan

    path = tmp_path / "r.toml"
    path.write_text(to_toml(tiny_recipe(wide_model_dir, corpora, "rmu")))
    adamw = plan(str(path), [], gpus=0)
    eight = plan(str(path), ["train.optimizer=adamw8bit"], gpus=0)  # the CPU plans it now
    opt = {r["name"]: r["bytes"] for r in eight["parts"]}["optimizer (AdamW8bit)"]
    n = eight["trainable_params"]
    assert 2 * n <= opt < 2.1 * n
    assert {r["name"]: r["bytes"] for r in adamw["parts"]}["optimizer (AdamW)"] == 8 * n
    sizes = eight["evaluation_weight_bytes"]
    for load_in, kind in (("8bit", "nf4"), ("4bit", "nf4")):
        model, _ = load_model(str(wide_model_dir), device="cpu", load_in=load_in, quant_type=kind)
        held = model.get_memory_footprint() + _scales(model)
        assert sizes[load_in] == pytest.approx(held, rel=0.01)
    full, _ = load_model(str(wide_model_dir), device="cpu")
    assert sizes["full"] == sum(p.numel() * p.element_size() for p in full.parameters())
    assert any("evaluation weights" in note for note in eight["notes"])


def _scales(model) -> int:
    """The bytes bitsandbytes keeps beside the quantized weights, which the footprint leaves
    out: LLM.int8's per-row scales (SCB), NF4/FP4's per-block absmax."""
    total = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        scb = getattr(weight, "SCB", None)
        state = getattr(weight, "quant_state", None)
        for t in (scb, getattr(state, "absmax", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def test_attack_output_keeps_a_bracketed_run_name(world_run, tmp_path, monkeypatch, capsys):
    """Rich markup would eat `[seed=2]` from the run's name in the table and result lines."""
    import shutil

    from tests.test_printing import printed

    run = tmp_path / "r[seed=2]"
    shutil.copytree(world_run, run, ignore=shutil.ignore_patterns("attacks"))
    text = printed(
        monkeypatch, capsys, "attack", "quantize", str(run), "--bits", "8", "--device", "cpu"
    )
    assert "r[seed=2]:quantize-8bit" in text and "r[seed=2]/attacks/quantize-8bit" in text


def test_the_worlds_controls_are_not_robustness_tasks():
    from rnacli.attacks.splits import is_perturbed

    assert is_perturbed("world-perturbed") and is_perturbed("world-mention[seed=1]")
    assert is_perturbed("perturbed-mmlu[SARS-CoV-2]")
    assert not is_perturbed("world-perturbed-retained") and not is_perturbed("world-retain-listed")
    assert not is_perturbed("world-perturbed-retained[seed=1]") and not is_perturbed("mmlu")
