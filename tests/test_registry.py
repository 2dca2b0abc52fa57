"""The method registry is the one place a method is defined: a toy method added through it alone
validates in recipes, is planned, trains and is labelled."""

import pytest
import torch
from safetensors.torch import load_file

from rnacli.errors import RnacliError
from rnacli.methods.reduce import masked_mse
from rnacli.methods.registry import METHODS, MethodSpec, method_spec, register, unregister
from rnacli.recipe import recipe_from_dict
from rnacli.training.loop import train
from rnacli.training.plan import step_passes
from tests.conftest import tiny_recipe


class ZeroActivations:
    """A toy RM method: drive layer-l activations of the forget batch to zero."""

    family = "rm"

    def __init__(self, layer: int, coeff: float) -> None:
        self.layer, self.coeff = layer, coeff

    @classmethod
    def from_config(cls, cfg, hidden_size: int, n_corpora: int, seed: int):
        return cls(cfg.layer, cfg.steering_coeff)

    def forget_loss(self, passes, batch) -> torch.Tensor:
        z = passes.hidden(batch.forget, self.layer)
        return self.coeff * masked_mse(z, torch.zeros_like(z), batch.forget.attention_mask)


@pytest.fixture
def toy():
    spec = register(MethodSpec("toy", "Toy", "rm", ZeroActivations, "steering_coeff", 2.0))
    yield spec
    unregister("toy")


def test_a_method_registered_alone_trains(toy, tmp_path, tiny_model_dir, corpora):
    raw = tiny_recipe(tiny_model_dir, corpora, "toy")
    recipe = recipe_from_dict(raw, "toy.toml")
    assert recipe.method.steering_coeff == 2.0  # the spec's default
    assert recipe.method.retain_loss == "rm" and recipe.method.label == "Toy"
    assert [p.name for p in step_passes(recipe, 24)] == ["forget", "retain", "retain, reference"]
    run_dir = train(recipe, tmp_path / "toy").run_dir
    delta = load_file(str(run_dir / "checkpoint" / "delta.safetensors"))
    from rnacli.models.loading import load_model

    base, _ = load_model(str(tiny_model_dir), device="cpu")
    assert any(not torch.equal(v, base.get_parameter(k)) for k, v in delta.items())
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_unknown_and_duplicate_names_are_one_line(toy, tiny_model_dir, corpora):
    with pytest.raises(RnacliError, match=r"method 'toy' is already registered"):
        register(MethodSpec("toy", "Toy", "rm", ZeroActivations))
    with pytest.raises(RnacliError, match=r"unknown method 'nope' \(known: rmu, .*toy\)"):
        method_spec("nope")
    raw = tiny_recipe(tiny_model_dir, corpora, "toy", method={"beta": 1.0})
    with pytest.raises(RnacliError, match=r"method.beta: not used by toy \(only adaptive_rmu"):
        recipe_from_dict(raw, "toy.toml")


def test_the_planner_reads_each_methods_passes_from_the_registry(tiny_model_dir, corpora):
    """The planner's passes follow the specs: refusal passes for DPO, a reference forget pass
    exactly where the spec says so."""
    for name, spec in METHODS.items():
        retain = None if spec.family == "rm" else "kl"
        recipe = recipe_from_dict(tiny_recipe(tiny_model_dir, corpora, name, retain), "r.toml")
        names = [p.name for p in step_passes(recipe, 24)]
        assert ("forget, reference" in names) == spec.reference_forget_pass, name
        assert ("refusal" in names) == spec.refusals, name
