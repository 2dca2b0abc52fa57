"""The split backward (forget loss first, then the retain pass) gives the gradient of the joint
backward, and uses less memory; fp32 master weights make a bf16 model train."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rnacli.errors import RnacliError
from rnacli.methods import build_method, build_retain
from rnacli.methods.rna import Noise
from rnacli.models.loading import load_model
from rnacli.recipe import recipe_from_dict
from rnacli.runtime.memory import in_module, peak_tensor_bytes
from rnacli.training.loop import train
from rnacli.training.passes import Passes
from rnacli.training.setup import load_for_training, training_data
from rnacli.training.step import unlearning_backward
from tests.conftest import tiny_recipe
from tests.test_train import ALL


def _parts(raw: dict):
    recipe = recipe_from_dict(raw, "step.toml")
    model, tokenizer, trainable = load_for_training(recipe, torch.device("cpu"))
    data = training_data(recipe, tokenizer)
    method = build_method(recipe.method, model.config.hidden_size, len(data.forget), 0)
    passes = Passes(model, list(trainable), chunk_tokens=16)
    return recipe, model, trainable, data, method, build_retain(recipe.method), passes


def _grads(parts, split: bool, accum: int = 2) -> dict[str, torch.Tensor]:
    recipe, _, trainable, data, method, retain, passes = parts
    for p in trainable.values():
        p.grad = None
    for micro in range(accum):
        batch = data.batch(1, micro)
        gen = torch.Generator().manual_seed(micro)
        noise = Noise([1], 0.05, gen) if recipe.rna.enabled else None
        unlearning_backward(method, retain, passes, batch, 3.0, noise, accum=accum, split=split)
    return {n: p.grad.clone() for n, p in trainable.items()}


@pytest.mark.parametrize(("method", "retain_loss"), ALL)
def test_split_backward_gives_the_joint_gradient(tiny_model_dir, corpora, method, retain_loss):
    parts = _parts(tiny_recipe(tiny_model_dir, corpora, method, retain_loss, rna=True))
    # one micro-batch: the same two terms added once, bit for bit (DPO: three terms, whose
    # order of addition autograd picks)
    joint, split = _grads(parts, False, accum=1), _grads(parts, True, accum=1)
    for name, grad in joint.items():
        assert grad.abs().sum() > 0
        if method == "dpo":
            torch.testing.assert_close(split[name], grad, rtol=0, atol=1e-6 * grad.abs().max())
        else:
            assert torch.equal(split[name], grad), name
    # two micro-batches: (a + b) + (c + d) against ((a + b) + c) + d, equal to float32 rounding
    joint, split = _grads(parts, False, accum=2), _grads(parts, True, accum=2)
    for name, grad in joint.items():
        torch.testing.assert_close(split[name], grad, rtol=0, atol=1e-6 * grad.abs().max())


def test_split_backward_lowers_the_peak(tiny_model_dir, corpora):
    """Only one pass's activations are held at a time: the peak of an NPO+KL micro-batch drops
    by about the retain pass's activations."""
    raw = tiny_recipe(tiny_model_dir, corpora, "npo", "kl")
    raw["method"]["layer"] = 1  # train layers 0-1: the activations of layers 1-5 are kept
    parts = _parts(raw)
    model = parts[1]

    def peak(split: bool) -> int:
        def work() -> None:
            _, _, trainable, data, method, retain, passes = parts
            for p in trainable.values():
                p.grad = None
            batch = data.batch(0)
            unlearning_backward(
                method, retain, passes, batch, 3.0, None, split=split, run_forward=in_module
            )

        return peak_tensor_bytes(work, model, *parts[6].originals.values())["Total"]

    joint, split = peak(False), peak(True)
    static = sum(p.numel() * 4 for p in model.parameters())
    assert split - static < 0.8 * (joint - static), (split, joint, static)


# -- fp32 master weights ---------------------------------------------------------------------


def _bf16_run(tmp_path, tiny_model_dir, corpora, name, method, retain_loss, dtype, masters):
    raw = tiny_recipe(
        tiny_model_dir,
        corpora,
        method,
        retain_loss,
        model={"dtype": dtype},
        train={"lr": 5e-5, "steps": 3, "master_weights": masters},
    )
    run_dir = train(recipe_from_dict(raw, f"{name}.toml"), tmp_path / name).run_dir
    delta = load_file(str(run_dir / "checkpoint" / "delta.safetensors"))
    master_file = run_dir / "checkpoint" / "master.safetensors"
    master = load_file(str(master_file)) if master_file.exists() else None
    return delta, master


@pytest.fixture(scope="module")
def bf16_exact_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model with every weight rounded to bf16 (stored in fp32), so that an fp32 run
    and a bf16 run start from the same values."""
    model, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    folder = tmp_path_factory.mktemp("bf16-exact")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("method", "retain_loss"), [("npo", "kl"), ("rmu", None)])
def test_master_weights_make_a_bf16_model_train(
    tmp_path, bf16_exact_dir, corpora, method, retain_loss
):
    """AdamW at lr 5e-5 for 3 steps: in bf16 without masters most updates round away; with
    fp32 masters every element moves, as in fp32, and the update matches the fp32 run's."""
    base, _ = load_model(str(bf16_exact_dir), device="cpu", dtype="bfloat16")
    args = (tmp_path, bf16_exact_dir, corpora)
    fp32, none = _bf16_run(*args, "fp32", method, retain_loss, "float32", True)
    assert none is None  # nothing to keep in fp32: no master file
    lost, none = _bf16_run(*args, "bf16", method, retain_loss, "bfloat16", False)
    assert none is None
    kept, masters = _bf16_run(*args, "bf16_masters", method, retain_loss, "bfloat16", True)
    assert masters is not None and set(masters) == set(kept)
    for name, weight in fp32.items():
        start = base.get_parameter(name).detach().float()
        fp32_update = weight - start
        # Every element moves, in fp32 and in the masters, except where AdamW's three updates
        # happen to cancel to below fp32 spacing (+lr, -0.58 lr, -0.41 lr: seen for 1 of 2048;
        # the batches, hence such elements, depend on the corpora's paths)
        assert (fp32_update != 0).float().mean() > 0.99
        # without masters: most elements never move
        lost_moved = (lost[name].float() != start).float().mean().item()
        assert lost_moved < 0.5, lost_moved
        # with masters: they move in fp32, the bf16 tensor is the master rounded
        master_update = masters[name] - start
        assert (master_update != 0).float().mean() > 0.99
        assert torch.equal(kept[name], masters[name].to(torch.bfloat16))
        # the same update as fp32, up to the bf16 forward's rounding of the gradients
        err = (master_update - fp32_update).norm() / fp32_update.norm()
        assert err < 0.4, err  # (measured 0.20 for NPO+KL; cosine similarity 0.98)
        lost_err = (lost[name].float() - start - fp32_update).norm() / fp32_update.norm()
        assert lost_err > 0.8, lost_err  # the check above can fail: it does without masters
        # and the result is the fp32 run's to bf16 precision: within one bf16 step (2^-7 of
        # the value's binade; seen: 99.6-99.95 % of the elements) but where the bf16 forward
        # flipped a small gradient's sign, and there within a few AdamW steps
        ulp = torch.exp2(torch.floor(torch.log2(weight.abs().clamp_min(1e-30))) - 7)
        diff = (kept[name].float() - weight).abs()
        assert (diff <= ulp).float().mean().item() > 0.98
        assert bool((diff <= ulp + 10 * 5e-5).all()), float((diff - ulp).max())


def test_resume_accepts_a_run_recorded_before_new_keys(tmp_path, tiny_model_dir, corpora):
    """A run folder whose recipe.json predates a key (here the two this issue added) resumes:
    the missing key had its default value."""
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"steps": 2})
    run_dir = train(recipe_from_dict(raw, "r.toml"), tmp_path / "r").run_dir
    saved = json.loads((run_dir / "recipe.json").read_text())
    del saved["train"]["master_weights"], saved["train"]["split_backward"]
    (run_dir / "recipe.json").write_text(json.dumps(saved))
    raw["train"]["steps"] = 3
    train(recipe_from_dict(raw, "r.toml"), run_dir, resume=True)
    assert json.loads((run_dir / "checkpoint/meta.json").read_text())["step"] == 3
    raw["train"]["master_weights"] = False
    with pytest.raises(RnacliError, match="train.master_weights differs"):
        train(recipe_from_dict(raw, "r.toml"), run_dir, resume=True)
