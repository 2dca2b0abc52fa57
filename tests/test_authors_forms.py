"""The authors' forms (docs/authors-code.md) against a computation written here from their
formulas: HF `labels=input_ids` losses, a forward hook on the layer's output, `F.mse_loss`,
`F.kl_div(..., "batchmean", log_target=True)`, noise `randn * nu`. For each of the nine methods,
on a tiny Llama with padded batches, rnacli's loss and gradients equal the independent ones.

The inputs are rnacli's (right padding, the attention mask in every pass); what the authors'
code does otherwise there (left padding, an unmasked reference) is documented, not reproduced.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from rnacli.recipe import recipe_from_dict
from rnacli.training.loop import UnlearningRecipe
from rnacli.training.noise import step_noise
from rnacli.training.step import unlearning_backward
from tests.conftest import tiny_recipe
from tests.test_train import ALL, authors_forms

LAYER, NU, ALPHA, STEP = 3, 0.05, 3.0, 0
AUTHORS = {"mean_over": "all-positions"}


def authors_recipe(model_dir, corpora, method, retain_loss):
    forms = {**authors_forms(method, retain_loss), **AUTHORS}
    raw = tiny_recipe(model_dir, corpora, method, retain_loss, rna=True, method=forms)
    raw["data"].update(forget_max_length=512, retain_max_length=512)  # padded batches
    raw["method"]["alpha"] = [ALPHA, ALPHA]
    raw["rna"].update(noise_scale=NU, nu_is="std")
    return recipe_from_dict(raw, "authors.toml")


def layer_output(model, layer, inputs, add=None):
    """Decoder layer `layer`'s output (a forward hook), `add` added to it first."""
    seen = {}

    def hook(_m, _a, out):
        hidden = out[0] if isinstance(out, tuple) else out
        if add is not None:
            hidden = hidden + add(hidden)
        seen["z"] = hidden
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    handle = model.model.layers[layer].register_forward_hook(hook)
    try:
        out = model(**inputs)
    finally:
        handle.remove()
    return seen["z"], out


def draws(noise):
    """randn * nu from the generator of a second, identical Noise: the same tensor."""
    return lambda h: (torch.randn(h.shape, generator=noise.generator) * NU).to(h.dtype)


def independent_loss(run, ref, batch, noise, method, retain_loss):
    model = run.model
    f = {"input_ids": batch.forget.input_ids, "attention_mask": batch.forget.attention_mask}
    r = {"input_ids": batch.retain.input_ids, "attention_mask": batch.retain.attention_mask}
    if retain_loss is None:  # RM: layer-l activations, means over B x T x d
        z, _ = layer_output(model, LAYER, f)
        vec = run.method.eps if method == "rsv" else run.method.u
        u = vec[batch.corpus]
        if method == "rmu":
            forget = F.mse_loss(z, run.recipe.method.steering_coeff * u.expand_as(z))
        elif method == "adaptive_rmu":
            scale = run.recipe.method.beta * z.detach().norm(dim=-1).mean(dim=1).mean(dim=0)
            forget = F.mse_loss(z, scale * u.expand_as(z))
        else:
            with torch.no_grad():
                z_ref, _ = layer_output(ref, LAYER, f)
            forget = F.mse_loss(z, z_ref + run.recipe.method.steering_coeff * u)
        z_r, _ = layer_output(model, LAYER, r)
        with torch.no_grad():
            z_r_ref, _ = layer_output(ref, LAYER, r, add=draws(noise))
        return forget + ALPHA * F.mse_loss(z_r, z_r_ref)
    nll = model(**f, labels=f["input_ids"]).loss
    beta = run.recipe.method.beta
    if method == "simnpo":
        forget = -(2 / beta) * F.logsigmoid(beta * nll)
    else:  # NPO, and the authors' DPO, which is their NPO
        with torch.no_grad():
            nll_ref = ref(**f, labels=f["input_ids"]).loss
        forget = -(2 / beta) * F.logsigmoid(beta * (nll - nll_ref))
    logp = F.log_softmax(model(**r).logits.float(), -1)
    with torch.no_grad():
        _, out = layer_output(ref, LAYER, r, add=draws(noise))
    logp_ref = F.log_softmax(out.logits.float(), -1)
    if retain_loss == "kl":
        v = logp.shape[-1]
        retain = F.kl_div(
            logp.view(-1, v), logp_ref.view(-1, v), reduction="batchmean", log_target=True
        )
    else:
        retain = F.mse_loss(logp, logp_ref)
    return forget + ALPHA * retain


@pytest.mark.parametrize(("method", "retain_loss"), ALL)
def test_authors_forms_equal_their_formulas(tiny_model_dir, corpora, method, retain_loss):
    run = UnlearningRecipe(authors_recipe(tiny_model_dir, corpora, method, retain_loss))
    run.setup()
    ref = copy.deepcopy(run.model).requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the updated model moves away from the reference
        for p in run.trainable.values():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    batch = run.data.batch(STEP)
    assert bool((batch.forget.attention_mask == 0).any())  # padded
    ours = step_noise(run.recipe, run.rna, STEP, 0, torch.device("cpu"))
    theirs = step_noise(run.recipe, run.rna, STEP, 0, torch.device("cpu"))
    run.master.zero_grad()
    values = unlearning_backward(run.method, run.retain, run.passes, batch, ALPHA, ours)
    got = {n: p.grad.clone() for n, p in run.trainable.items()}
    run.master.zero_grad()
    loss = independent_loss(run, ref, batch, theirs, method, retain_loss)
    loss.backward()
    assert values["loss"] == pytest.approx(loss.item(), rel=1e-4)
    for name, param in run.trainable.items():
        scale = param.grad.abs().max()
        assert scale > 0 and (got[name] - param.grad).abs().max() <= 1e-4 * scale, name


def test_nu_as_std_draws_noise_of_std_nu(tiny_model_dir, corpora):
    run = UnlearningRecipe(authors_recipe(tiny_model_dir, corpora, "npo", "kl"))
    run.setup()
    noise = step_noise(run.recipe, run.rna, 0, 0, torch.device("cpu"))
    sample = noise.sample_like(torch.zeros(64, 64, 32), LAYER)
    assert sample.std().item() == pytest.approx(NU, rel=0.02)
    raw = run.recipe.to_dict()
    raw["rna"]["nu_is"] = "variance"
    paper = UnlearningRecipe(recipe_from_dict(raw, "paper.toml"))
    paper.setup()
    noise = step_noise(paper.recipe, paper.rna, 0, 0, torch.device("cpu"))
    std = noise.sample_like(torch.zeros(64, 64, 32), LAYER).std().item()
    assert std == pytest.approx(math.sqrt(NU), rel=0.02)


def test_adaptive_rmu_first_batch_scale_is_kept_across_resume(tmp_path, tiny_model_dir, corpora):
    import json

    from rnacli.training.loop import train

    raw = authors_recipe(tiny_model_dir, corpora, "adaptive_rmu", None).to_dict()
    raw["train"].update(steps=2, checkpoint_every=1)
    whole = train(recipe_from_dict(raw, "a.toml"), tmp_path / "whole").run_dir
    meta = json.loads((whole / "checkpoint" / "meta.json").read_text())
    assert set(meta["method_state"]["scales"]) == {"0", "1"}
    raw["train"]["steps"] = 1
    part = train(recipe_from_dict(raw, "a.toml"), tmp_path / "part").run_dir
    raw["train"]["steps"] = 2
    train(recipe_from_dict(raw, "a.toml"), part, resume=True)
    resumed = json.loads((part / "checkpoint" / "meta.json").read_text())
    assert resumed["method_state"] == meta["method_state"]
