"""Equivalences behind ideas 1-3 of docs/architecture.md (rnacli/training/passes.py), number
for number on a tiny model."""

import pytest
import torch

from rnacli.data.batches import document_batch, preference_batches
from rnacli.methods import build_method, build_retain
from rnacli.recipe import recipe_from_dict
from rnacli.training.passes import Passes
from rnacli.training.step import unlearning_loss
from tests.conftest import tiny_recipe

TEXTS = [
    "virus host cell protein gene",
    "network exploit packet kernel buffer server attack",
    "the river town",
]
TRAINABLE = [f"model.layers.{i}.mlp.down_proj.weight" for i in (1, 2, 3)]


@pytest.fixture
def model_tok(tiny_model_dir):
    from rnacli.models.loading import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    for name, p in model.named_parameters():
        p.requires_grad_(name in TRAINABLE)
    return model, tok


def _perturb_trainable(model, scale=0.3):
    """Move the trainable tensors away from their originals, so updated != reference."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in TRAINABLE:
                p.add_(scale * torch.randn(p.shape, generator=gen))


def test_truncated_activations_equal_a_full_forward(model_tok):
    model, tok = model_tok
    seq = document_batch(tok, TEXTS, 16)
    captured = {}
    handle = model.model.layers[3].register_forward_hook(
        lambda m, a, out: captured.__setitem__("z", out[0] if isinstance(out, tuple) else out)
    )
    with torch.no_grad():
        full = model(
            input_ids=seq.input_ids, attention_mask=seq.attention_mask, output_hidden_states=True
        )
    handle.remove()
    for kwargs in ({}, {"shared_prefix": False}):
        z = Passes(model, TRAINABLE, **kwargs).hidden(seq, 3)
        torch.testing.assert_close(z, captured["z"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(z, full.hidden_states[4], atol=1e-5, rtol=1e-5)
    # layers below the shared prefix (which starts at layer 1 here) are read correctly too
    for layer in (0, 1, 4):
        torch.testing.assert_close(
            Passes(model, TRAINABLE[1:]).hidden(seq, layer),
            full.hidden_states[layer + 1],
            atol=1e-5,
            rtol=1e-5,
        )


def test_shared_prefix_starts_at_first_trainable_layer(model_tok):
    model, _ = model_tok
    assert Passes(model, TRAINABLE).start == 1
    assert Passes(model, TRAINABLE, shared_prefix=False).start == 0


def test_delta_reference_is_the_original_model(model_tok):
    model, tok = model_tok
    seq = document_batch(tok, TEXTS, 16)
    passes = Passes(model, TRAINABLE)
    before = passes.hidden(seq, 5, reference=True)
    _perturb_trainable(model)
    after_ref = passes.hidden(seq, 5, reference=True)
    updated = passes.hidden(seq, 5)
    torch.testing.assert_close(after_ref, before)
    assert not torch.allclose(updated, before, atol=1e-3)
    assert not after_ref.requires_grad and updated.requires_grad


def test_chunked_head_equals_full_logits(model_tok):
    model, tok = model_tok
    _perturb_trainable(model)
    seq = document_batch(tok, TEXTS, 16)
    from rnacli.methods.retain import KLRetain

    fast = Passes(model, TRAINABLE, chunk_tokens=5)
    slow = Passes(model, TRAINABLE, chunk_tokens=None)
    torch.testing.assert_close(
        fast.sequence_logprob(seq), slow.sequence_logprob(seq), atol=1e-4, rtol=1e-5
    )
    a, b = KLRetain().loss(fast, seq), KLRetain().loss(slow, seq)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    ga = torch.autograd.grad(a, model.model.layers[2].mlp.down_proj.weight)[0]
    gb = torch.autograd.grad(b, model.model.layers[2].mlp.down_proj.weight)[0]
    torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-4)


METHODS = [
    ("rmu", None),
    ("adaptive_rmu", None),
    ("rsv", None),
    ("npo", "kl"),
    ("npo", "mse"),
    ("dpo", "kl"),
    ("simnpo", "mse"),
]


@pytest.mark.parametrize(("method", "retain_loss"), METHODS)
def test_losses_and_gradients_delta_equal_deep_copy(
    model_tok, corpora, tiny_model_dir, method, retain_loss
):
    model, tok = model_tok
    recipe = recipe_from_dict(tiny_recipe(tiny_model_dir, corpora, method, retain_loss))
    m = build_method(recipe.method, model.config.hidden_size, 2, seed=0)
    retain = build_retain(recipe.method)
    forget = document_batch(tok, TEXTS[:2], 16)
    win, lose = preference_batches(tok, TEXTS[:2], ["I don't know.", "No idea."], 16, 2)
    batch = type(
        "B",
        (),
        {
            "forget": lose if method == "dpo" else forget,
            "refusal": win,
            "retain": document_batch(tok, TEXTS[1:], 16),
            "corpus": 1,
        },
    )()
    copy_passes = Passes(
        model, TRAINABLE, reference="copy", shared_prefix=False, truncate=False, chunk_tokens=None
    )
    delta_passes = Passes(model, TRAINABLE)
    _perturb_trainable(model)  # both references keep the values from before this
    results = []
    for passes in (copy_passes, delta_passes):
        model.zero_grad()
        loss, _ = unlearning_loss(m, retain, passes, batch, 2.0, None)
        loss.backward()
        results.append((loss.detach(), [model.get_parameter(n).grad.clone() for n in TRAINABLE]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, atol=1e-5, rtol=1e-5)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)
        assert ga.abs().sum() > 0
