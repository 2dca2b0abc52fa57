"""FSDP settings rnacli does not support are one clear error each (the 2-process FSDP training
runs in tests/test_distributed.py)."""

from types import SimpleNamespace

import pytest

from rnacli.errors import RnacliError
from rnacli.recipe import recipe_from_dict
from rnacli.training.sharding import check_fsdp, fsdp_plugin
from tests.conftest import tiny_recipe

GOOD = {
    "fsdp_version": 2,
    "cpu_ram_efficient_loading": False,
    "activation_checkpointing": False,
    "cpu_offload": None,
}


@pytest.fixture
def recipe(tiny_model_dir, corpora):
    return recipe_from_dict(tiny_recipe(tiny_model_dir, corpora, "npo", "kl"), "r.toml")


def test_supported_settings_pass(recipe, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    check_fsdp(recipe, SimpleNamespace(**GOOD))


@pytest.mark.parametrize(
    ("change", "env", "message"),
    [
        ({"fsdp_version": 1}, {}, "set `fsdp_version: 2`"),
        ({}, {"ACCELERATE_MIXED_PRECISION": "bf16"}, "mixed_precision = 'bf16'"),
        ({"cpu_ram_efficient_loading": True}, {}, "fsdp_cpu_ram_efficient_loading"),
        ({"activation_checkpointing": True}, {}, "train.gradient_checkpointing = true"),
    ],
)
def test_unsupported_settings_are_named(recipe, monkeypatch, change, env, message):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RnacliError, match=f"FSDP: .*{message.replace('(', '.').replace(')', '.')}"):
        check_fsdp(recipe, SimpleNamespace(**{**GOOD, **change}))


def test_a_deep_copied_reference_is_refused(tiny_model_dir, corpora, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    raw = tiny_recipe(tiny_model_dir, corpora, "npo", "kl", train={"reference": "copy"})
    with pytest.raises(RnacliError, match="FSDP: train.reference = 'copy'"):
        check_fsdp(recipe_from_dict(raw, "r.toml"), SimpleNamespace(**GOOD))


def test_no_plugin_without_an_fsdp_launch(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    state = SimpleNamespace(fsdp_plugin=None)
    assert fsdp_plugin(SimpleNamespace(state=state, num_processes=2)) is None
    # one process: nothing to shard over, even with an FSDP config
    plugin = SimpleNamespace(**GOOD)
    assert (
        fsdp_plugin(SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), num_processes=1))
        is None
    )
    assert (
        fsdp_plugin(SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), num_processes=2))
        is plugin
    )
