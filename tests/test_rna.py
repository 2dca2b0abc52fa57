import pytest
import torch

from rnacli.data.batches import document_batch
from rnacli.errors import RnacliError
from rnacli.methods import build_method, build_retain
from rnacli.passes import Passes
from rnacli.recipe import recipe_from_dict
from rnacli.rna import Noise, resolve_layers
from rnacli.train import unlearning_loss
from tests.conftest import tiny_recipe

TRAINABLE = [f"model.layers.{i}.mlp.down_proj.weight" for i in (1, 2, 3)]
TEXTS = [
    "virus host cell protein gene membrane replication enzyme sequence strain " * 3,
    "network exploit packet kernel buffer server attack password code memory " * 3,
]


def test_presets_follow_the_paper():
    assert resolve_layers(None, 32, 7) == [7]
    assert resolve_layers("early", 32, 7) == [5, 6, 7]
    assert resolve_layers("middle", 32, 7) == [14, 15, 16]
    assert resolve_layers("late", 32, 7) == [28, 29, 30]
    assert resolve_layers("all", 4, 2) == [0, 1, 2, 3]
    assert resolve_layers([3, 1, 3], 4, 2) == [1, 3]
    with pytest.raises(RnacliError, match="rna.layers = 40: layers must lie in 0..31"):
        resolve_layers(40, 32, 7)
    with pytest.raises(RnacliError, match="expected a layer index"):
        resolve_layers("top", 32, 7)


def test_injected_noise_has_mean_zero_and_variance_nu(tiny):
    model, tok = tiny
    seq = document_batch(tok, TEXTS * 8, 64)
    passes = Passes(model, TRAINABLE)
    nu = 0.04
    clean = passes.hidden(seq, 2, reference=True)
    noise = Noise([2], nu, torch.Generator().manual_seed(0))
    noised = passes.hidden(seq, 2, reference=True, noise=noise)
    delta = (noised - clean)[seq.attention_mask.bool()]
    assert delta.numel() > 10_000
    assert abs(delta.mean().item()) < 0.01
    assert delta.var().item() == pytest.approx(nu, rel=0.05)
    assert noise.calls == 1


def test_same_generator_seed_same_noise(tiny):
    model, tok = tiny
    seq = document_batch(tok, TEXTS, 32)
    passes = Passes(model, TRAINABLE)

    def run(seed):
        return passes.hidden(
            seq, 2, reference=True, noise=Noise([2], 0.1, torch.Generator().manual_seed(seed))
        )

    torch.testing.assert_close(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


@pytest.mark.parametrize(
    ("method", "retain_loss"), [("rmu", None), ("rsv", None), ("npo", "kl"), ("dpo", "mse")]
)
def test_only_the_reference_retain_pass_is_noised(
    tiny, corpora, tiny_model_dir, method, retain_loss
):
    """With RNA the forget loss is unchanged (forget passes are never noised), the retain loss
    changes, and noise is drawn exactly once per noised layer (one reference retain pass)."""
    model, tok = tiny
    recipe = recipe_from_dict(tiny_recipe(tiny_model_dir, corpora, method, retain_loss))
    m = build_method(recipe.method, model.config.hidden_size, 2, seed=0)
    retain = build_retain(recipe.method)
    from rnacli.data.batches import preference_batches

    forget = document_batch(tok, TEXTS, 24)
    win, lose = preference_batches(tok, TEXTS, ["I don't know.", "No idea."], 24, 4)
    batch = type(
        "B",
        (),
        {
            "forget": lose if method == "dpo" else forget,
            "refusal": win,
            "retain": document_batch(tok, TEXTS[::-1], 24),
            "corpus": 0,
        },
    )()
    passes = Passes(model, TRAINABLE)
    # the updated model must differ from the reference, or the retain loss is exactly 0
    with torch.no_grad():
        model.get_parameter(TRAINABLE[0]).mul_(1.5)
    try:
        _, plain = unlearning_loss(m, retain, passes, batch, 1.0, None)
        noise = Noise([1, 3], 0.05, torch.Generator().manual_seed(0))
        _, noised = unlearning_loss(m, retain, passes, batch, 1.0, noise)
    finally:
        with torch.no_grad():
            model.get_parameter(TRAINABLE[0]).div_(1.5)
    assert noised["forget_loss"] == plain["forget_loss"]
    assert noised["retain_loss"] != plain["retain_loss"]
    assert noise.calls == 2  # layers 1 and 3, once each


def test_noise_below_the_shared_prefix_is_applied(tiny):
    model, tok = tiny
    seq = document_batch(tok, TEXTS, 32)
    passes = Passes(model, TRAINABLE)  # prefix: layer 0 shared
    clean = passes.hidden(seq, 3, reference=True)
    noise = Noise([0], 0.05, torch.Generator().manual_seed(0))
    assert not torch.allclose(passes.hidden(seq, 3, reference=True, noise=noise), clean)
    assert noise.calls == 1


def test_step_noise_is_the_same_in_every_process(tiny_model_dir, corpora):
    """A resumed run is a new process: its noise must not depend on Python's salted hash()."""
    import json
    import os
    import subprocess
    import sys

    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", rna=True)
    code = (
        "import json, sys, torch\n"
        "from rnacli.recipe import recipe_from_dict\n"
        "from rnacli.train import step_noise\n"
        "r = recipe_from_dict(json.loads(sys.argv[1]))\n"
        "n = step_noise(r, [3], step=5, micro=0, rank=0, device=torch.device('cpu'))\n"
        "print(n.sample_like(torch.zeros(3)).tolist())\n"
    )
    outputs = set()
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt, "PYTHONPATH": os.getcwd()}
        proc = subprocess.run(
            [sys.executable, "-c", code, json.dumps(raw)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.add(proc.stdout.strip())
    assert len(outputs) == 1


def test_rm_noise_leaves_the_expected_retain_gradient_unchanged_po_noise_does_not():
    # The README's explanation of why RNA repairs little for RM methods: mse(z, z_ref + delta)
    # is quadratic in delta with a linear cross term, so antithetic draws +delta and -delta
    # average to the noiseless gradient exactly; RNA then acts only through gradient variance.
    # The KL of PO methods passes the noised logits through a softmax: the target moves.
    from rnacli.methods.retain import kl_retain_loss, rm_retain_loss

    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 6, generator=gen, requires_grad=True)
    x = torch.randn(2, 5, 6, generator=gen)
    ref = torch.randn(2, 5, 6, generator=gen)
    delta = 2.0 * torch.randn(2, 5, 6, generator=gen)
    mask = torch.ones(2, 5)

    def grad(loss_fn, target):
        (g,) = torch.autograd.grad(loss_fn(x @ weight, target, mask), weight)
        return g

    for loss_fn, unchanged in ((rm_retain_loss, True), (kl_retain_loss, False)):
        plain = grad(loss_fn, ref)
        antithetic = (grad(loss_fn, ref + delta) + grad(loss_fn, ref - delta)) / 2
        assert torch.allclose(antithetic, plain, atol=1e-5) == unchanged, loss_fn.__name__
        assert not torch.allclose(grad(loss_fn, ref + delta), plain, atol=1e-3)
