"""`rnacli plan`: the estimate against the measured peak of real training steps on tiny models
(torch's MemTracker counts every tensor), and the 7B plans from the built-in config table."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rich.console import Console

from rnacli.errors import RnacliError
from rnacli.recipe import Recipe, recipe_from_dict, to_toml
from rnacli.runtime.memory import in_module, peak_tensor_bytes
from rnacli.training.loop import UnlearningRecipe
from rnacli.training.plan import architecture, estimate, model_config, plan, render
from tests.conftest import tiny_recipe
from tests.tiny import build_model, build_tokenizer

TOLERANCE = 0.25
LENGTH = 128  # tokens per sequence: long enough for activations to outweigh the weights
ZEPHYR_PARAMS = 7_241_732_096
ZEPHYR_TRAINABLE = 3 * 4096 * 14336  # mlp.down_proj of layers 5, 6, 7
GIB = 1 << 30


@pytest.fixture(scope="module")
def plan_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama with room for activations and the LM head to show: hidden 128, 6 layers,
    a 4096-entry vocabulary (the tokenizer uses 400 of them), grouped-query attention."""
    folder = tmp_path_factory.mktemp("plan-model")
    build_model(4096, layers=6, hidden=128).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def padded_corpora(tmp_path) -> dict[str, Path]:
    """Documents alternately far longer than LENGTH tokens and far shorter, so that batches are
    padded to the full LENGTH: the worst case, which the estimate models."""
    rng = random.Random(0)
    words = [
        "virus",
        "host",
        "cell",
        "protein",
        "gene",
        "river",
        "town",
        "market",
        "bridge",
        "garden",
        "winter",
        "music",
    ]
    paths = {}
    for name in ("bio", "cyber", "retain"):
        docs = [
            " ".join(rng.choice(words) for _ in range(2 * LENGTH if k % 2 else LENGTH // 8))
            for k in range(16)
        ]
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    paths["idk"] = tmp_path / "idk.txt"
    paths["idk"].write_text("I don't know.\nNo idea, sorry.\n")
    return paths


def measure_step(recipe: Recipe) -> dict[str, int]:
    """Peak bytes per kind of tensor during one steady-state training step (the second: the
    optimizer states exist), on a batch padded to the full max length."""
    run = UnlearningRecipe(recipe)
    run.setup()

    def step(index: int) -> None:
        run.train_step(index, run_forward=in_module)

    def full_and_padded(index: int) -> bool:
        batch = run.data.batch(index)
        return all(
            bool((seq.attention_mask == 0).any()) and seq.input_ids.shape[1] == LENGTH
            for seq in (batch.forget, batch.retain)
        )

    step(0)
    index = next(i for i in range(1, 100) if full_and_padded(i))
    tracked = [*run.passes.originals.values(), *run.master.masters.values()]
    return peak_tensor_bytes(lambda: step(index), run.model, run.optimizer, *tracked)


# name: (method, retain loss, recipe sections); chunks of 64 tokens unless set.
CASES = {
    "rmu": ("rmu", None, {}),
    "npo_kl": ("npo", "kl", {}),
    # bf16 (the CUDA dtype); chunks of 256 tokens x 4096 words: the LM head's working set is
    # the largest transient, larger than a layer's
    "npo_kl_bf16_head": (
        "npo",
        "kl",
        {"model": {"dtype": "bfloat16"}, "train": {"logits_chunk": 256}},
    ),
    "simnpo_mse_autocast": ("simnpo", "mse", {"train": {"autocast": True}}),
    "npo_kl_checkpointing": ("npo", "kl", {"train": {"gradient_checkpointing": True}}),
    # one backward over forget + retain: both passes' activations at once
    "npo_kl_joint_backward": ("npo", "kl", {"train": {"split_backward": False}}),
    "dpo_mse_bf16": ("dpo", "mse", {"model": {"dtype": "bfloat16"}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_matches_the_measured_peak_of_a_step(plan_model_dir, padded_corpora, case):
    method, retain_loss, sections = CASES[case]
    raw = tiny_recipe(plan_model_dir, padded_corpora, method, retain_loss)
    raw["data"].update(forget_max_length=LENGTH, retain_max_length=LENGTH, batch_size=4)
    raw["train"]["logits_chunk"] = 64
    raw["train"]["autocast"] = False  # the measured step in fp32 unless the case asks
    for section, values in sections.items():
        raw[section].update(values)
    recipe = recipe_from_dict(raw, f"{case}.toml")
    measured = measure_step(recipe)
    config, source = model_config(str(plan_model_dir))
    est = estimate(recipe, architecture(config, source), device="cpu")
    parts = {p.name: p.bytes for p in est["parts"]}

    # Exact parts: the weights and the optimizer states (MemTracker files the delta
    # reference and the fp32 master weights, given to it from outside, as "Other").
    assert parts["weights"] == measured["Parameter"]
    # (+ AdamW's `step` counter: one fp32 scalar per tensor, kept on the CPU on CUDA too)
    assert parts["optimizer (AdamW)"] == pytest.approx(measured["Optstate"], abs=64)
    masters = parts.get("master weights", 0)
    assert (masters > 0) == (recipe.model.dtype == "bfloat16")  # on by default below fp32
    assert parts["reference (delta)"] + masters == measured["Other"]
    # The modelled parts: activations, working set, gradients. They are most of the peak here,
    # so a wrong activation model cannot hide behind the weights.
    static = measured["Parameter"] + measured["Optstate"] + measured["Other"]
    dynamic = measured["Total"] - static
    assert dynamic > 0.5 * measured["Total"]
    modelled = parts["activations"] + parts["working set"] + parts["gradients"]
    assert modelled == pytest.approx(dynamic, rel=TOLERANCE)
    assert est["tensor_bytes"] == pytest.approx(measured["Total"], rel=TOLERANCE)
    print(f"{case}: plan {est['tensor_bytes']:,} B, measured {measured['Total']:,} B")
    work = next(p for p in est["parts"] if p.name == "working set")
    assert work.detail.startswith("LM-head chunk: 256 tokens") == case.endswith("_head")


# -- the paper's 7B recipes, planned from the built-in config table (no download) -------------


def _part(result: dict, prefix: str) -> dict:
    return next(p for p in result["parts"] if p["name"].startswith(prefix))


EQ_NPO, EQ_RMU = "recipes/paper-equations/npo_kl_rna.toml", "recipes/paper-equations/rmu_rna.toml"


def test_the_authors_recipes_fit_one_24_gib_gpu():
    """bf16 weights stepped in bf16, as their code does: no masters, and still a fit."""
    for name in ("npo_kl_rna", "rmu_rna", "dpo_kl_rna", "simnpo_mse_rna"):
        planned = plan(f"recipes/{name}.toml", [], gpus=1, gpu_memory_gib=24)
        assert planned["fits"] is True, name
        assert not any(p["name"] == "master weights" for p in planned["parts"]), name


def test_zephyr_7b_on_one_24_gib_gpu():
    base = ["train.optimizer=adamw8bit"]
    tight = plan(EQ_NPO, base, gpus=1, gpu_memory_gib=24)
    assert tight["config_source"] == "built-in table"
    assert tight["decoder_layer"] == "MistralDecoderLayer"
    assert tight["params"] == ZEPHYR_PARAMS
    assert tight["trainable_params"] == ZEPHYR_TRAINABLE
    assert _part(tight, "weights")["bytes"] == 2 * ZEPHYR_PARAMS  # bf16 on CUDA
    assert _part(tight, "reference (delta)")["bytes"] == 2 * ZEPHYR_TRAINABLE
    assert _part(tight, "gradients")["bytes"] == 2 * ZEPHYR_TRAINABLE
    eight_bit = _part(tight, "optimizer")["bytes"]
    assert 2 * ZEPHYR_TRAINABLE <= eight_bit < 2.1 * ZEPHYR_TRAINABLE

    # NPO+KL keeps the activations of 26 layers: without checkpointing they do not fit in 24
    # GiB, and the plan says what does.
    full = plan(EQ_NPO, [*base, "train.gradient_checkpointing=false"], 1, 24)
    assert full["fits"] is False
    assert any(
        a["fits"] and "train.gradient_checkpointing=true" in a["set"] for a in full["alternatives"]
    )
    checkpointed = plan(EQ_NPO, [*base, "train.gradient_checkpointing=true"], 1, 24)
    assert checkpointed["fits"] is True
    assert checkpointed["peak_bytes"] < 24 * GIB

    # bf16 weights: fp32 master copies of the trainable tensors, on by default
    assert _part(tight, "master weights")["bytes"] == 4 * ZEPHYR_TRAINABLE
    # Plain AdamW: fp32 states on the masters, four times the 8-bit ones; it fits too once
    # checkpointed. Without masters they are bf16, like the weights.
    plain = plan(
        EQ_NPO,
        ["train.optimizer=adamw", "train.gradient_checkpointing=true"],
        gpus=1,
        gpu_memory_gib=24,
    )
    assert _part(plain, "optimizer (AdamW)")["bytes"] == 8 * ZEPHYR_TRAINABLE
    assert plain["fits"] is True
    no_masters = plan(
        EQ_NPO,
        ["train.optimizer=adamw", "train.master_weights=false"],
        gpus=1,
        gpu_memory_gib=24,
    )
    assert _part(no_masters, "optimizer (AdamW)")["bytes"] == 4 * ZEPHYR_TRAINABLE
    assert not any(p["name"] == "master weights" for p in no_masters["parts"])

    # RM methods stop at layer 7: three layers keep activations, no checkpointing needed.
    rmu = plan(EQ_RMU, base, gpus=1, gpu_memory_gib=24)
    assert rmu["fits"] is True
    assert _part(rmu, "activations")["bytes"] < _part(full, "activations")["bytes"] / 5


def test_several_gpus_ddp_replicates_fsdp_shards():
    one = plan(EQ_NPO, [], gpus=1, gpu_memory_gib=80)
    ddp = plan(EQ_NPO, [], gpus=4, gpu_memory_gib=80)
    fsdp = plan(EQ_NPO, [], gpus=4, gpu_memory_gib=80, strategy="fsdp")
    assert ddp["peak_bytes"] == one["peak_bytes"]
    assert any("nothing is divided" in n for n in ddp["notes"])
    # FSDP shards the frozen weights; the trainable tensors stay whole on every GPU, and with
    # them their gradients, fp32 masters and optimizer states
    frozen = ZEPHYR_PARAMS - ZEPHYR_TRAINABLE
    assert _part(fsdp, "weights")["bytes"] == 2 * frozen // 4 + 2 * ZEPHYR_TRAINABLE
    for part in ("gradients", "master weights", "optimizer", "reference", "activations"):
        assert _part(fsdp, part)["bytes"] == _part(one, part)["bytes"], part
    assert _part(fsdp, "gathered layers")["bytes"] > 0
    assert fsdp["peak_bytes"] < 0.6 * one["peak_bytes"]
    assert any("trainable tensors stay whole" in n for n in fsdp["notes"])


def test_plan_on_the_cpu_from_a_local_folder(tmp_path, tiny_model_dir, corpora):
    path = tmp_path / "tiny.toml"
    path.write_text(to_toml(tiny_recipe(tiny_model_dir, corpora, "npo", "kl")))
    result = plan(str(path), [], gpus=0, gpu_memory_gib=1)
    assert (result["device"], result["dtype"], result["gpus"]) == ("cpu", "float32", 0)
    assert result["fits"] is True
    assert not any(p["name"].startswith("CUDA") for p in result["parts"])
    console = Console(record=True, width=160)
    console.print(render(result))
    text = console.export_text()
    assert "peak" in text and "fits:" in text and "activations" in text


def test_world_plans_with_its_base_models_config(monkeypatch, tiny_model_dir):
    monkeypatch.setattr("rnacli.training.plan.world_base", lambda: str(tiny_model_dir))
    config, source = model_config("world")
    assert config.num_hidden_layers == model_config(str(tiny_model_dir))[0].num_hidden_layers
    assert "the world's base" in source


def test_plan_errors_name_the_problem(tmp_path, tiny_model_dir, corpora):
    path = tmp_path / "r.toml"
    path.write_text(to_toml(tiny_recipe(tiny_model_dir, corpora, "rmu")))
    # 8-bit AdamW plans on the CPU (bitsandbytes steps there): tests/test_attacks.py
    assert plan(str(path), ["train.optimizer=adamw8bit"], gpus=0)["optimizer"] == "adamw8bit"
    with pytest.raises(RnacliError, match="strategy 'zero3'"):
        plan(str(path), [], gpus=2, strategy="zero3")
    with pytest.raises(RnacliError, match=r"method.layer = 9, but the model has 6 layers"):
        plan(str(path), ["method.layer=9"], gpus=0)
    with pytest.raises(RnacliError, match="train.trainable: 'nothing' matches no parameter"):
        plan(str(path), ["train.trainable=nothing"], gpus=0)
    with pytest.raises(RnacliError, match="model.name 'no-org/no-such-model': no config"):
        plan(str(path), ["model.name=no-org/no-such-model"], gpus=1)


def test_accelerate_configs_load_and_wrap_the_planned_decoder_layer():
    """The configs the README points to are valid accelerate configs (unknown keys fail), and
    the FSDP one wraps the decoder layer class of the model the 7B recipes name."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    ddp = load_config_from_file("recipes/accelerate/ddp.yaml")
    fsdp = load_config_from_file("recipes/accelerate/fsdp.yaml")
    assert ddp.distributed_type == "MULTI_GPU"
    # rnacli keeps fp32 master weights itself: accelerate's mixed precision stays off
    assert (fsdp.distributed_type, fsdp.mixed_precision) == ("FSDP", "no")
    options = {o for action in launch_command_parser()._actions for o in action.option_strings}
    assert all(f"--{key}" in options for key in fsdp.fsdp_config), fsdp.fsdp_config
    assert fsdp.fsdp_config["fsdp_version"] == 2  # rnacli/training/sharding.py uses FSDP2
    assert fsdp.fsdp_config["fsdp_reshard_after_forward"] is True
    # every process loads the model, then keeps its shard
    assert fsdp.fsdp_config["fsdp_cpu_ram_efficient_loading"] is False
    zephyr = plan("recipes/npo_kl_rna.toml", [], gpus=2, strategy="fsdp")
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == zephyr["decoder_layer"]
