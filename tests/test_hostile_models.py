"""Models rnacli did not ship: logits with -inf (a masked vocabulary, as some models and logit
processors produce) keep the retain losses finite, and a loss that is non-finite before any
update names its real cause instead of the learning rate."""

import math

import pytest
import torch

from rnacli.errors import RnacliError
from rnacli.methods.retain import token_kl, token_logprob_mse
from rnacli.recipe import recipe_from_dict
from rnacli.training.loop import train
from tests.conftest import tiny_recipe

INF = float("inf")


def test_kl_over_the_support_and_mse_over_finite_entries():
    # reference p = [1/2, 1/2, 0], current q = [1/4, 3/4, 0]: word 3 is masked in both
    ref = torch.tensor([[0.0, 0.0, -INF]])
    cur = torch.tensor([[0.0, math.log(3), -INF]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert token_kl(cur, ref).item() == pytest.approx(expected, abs=1e-6)
    squares = (math.log(0.25) - math.log(0.5)) ** 2 + (math.log(0.75) - math.log(0.5)) ** 2
    assert token_logprob_mse(cur, ref).item() == pytest.approx(squares / 2, abs=1e-6)
    # only the current model masks a word the reference keeps: a real, infinite divergence
    assert token_kl(torch.tensor([[0.0, 0.0, -INF]]), torch.tensor([[0.0, 0.0, 0.0]])) == INF


@pytest.fixture
def masked_vocabulary(monkeypatch):
    """Every model loaded masks the last 10 words of its vocabulary (logits -inf)."""
    import rnacli.training.setup as setup

    real = setup.load_model

    def load(*args, **kwargs):
        model, tok = real(*args, **kwargs)
        head = model.get_output_embeddings()

        def mask(_m, _a, logits):
            logits = logits.clone()
            logits[..., -10:] = -INF
            return logits

        head.register_forward_hook(mask)
        return model, tok

    monkeypatch.setattr(setup, "load_model", load)


@pytest.mark.parametrize("retain_loss", ["kl", "mse"])
def test_training_with_a_masked_vocabulary_stays_finite(
    masked_vocabulary, tmp_path, tiny_model_dir, corpora, retain_loss
):
    raw = tiny_recipe(tiny_model_dir, corpora, "simnpo", retain_loss, rna=True)
    raw["train"]["logits_chunk"] = 0  # full logits through the hooked head
    run_dir = train(recipe_from_dict(raw, "masked.toml"), tmp_path / retain_loss).run_dir
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "NaN" not in "".join(lines)


def test_a_loss_non_finite_before_any_update_names_the_model_not_the_lr(
    monkeypatch, tmp_path, tiny_model_dir, corpora
):
    import rnacli.training.setup as setup

    real = setup.load_model

    def poisoned(*args, **kwargs):
        model, tok = real(*args, **kwargs)
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
        return model, tok

    monkeypatch.setattr(setup, "load_model", poisoned)
    recipe = recipe_from_dict(tiny_recipe(tiny_model_dir, corpora, "npo", "kl"), "nan.toml")
    with pytest.raises(RnacliError, match="No update had run.*not train.lr") as err:
        train(recipe, tmp_path / "nan")
    assert "lower train.lr" not in str(err.value)
