import pytest
import torch

from rnacli.data.batches import document_batch
from rnacli.errors import RnacliError
from rnacli.methods import build_method, build_retain
from rnacli.methods.rna import Noise, resolve_layers
from rnacli.recipe import recipe_from_dict
from rnacli.training.passes import Passes
from rnacli.training.step import unlearning_loss
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
        "from rnacli.training.noise import step_noise\n"
        "r = recipe_from_dict(json.loads(sys.argv[1]))\n"
        "from rnacli.training.noise import RNASetup\n"
        "setup = RNASetup([3], 'reference', {3: 0.05})\n"
        "n = step_noise(r, setup, step=5, micro=0, device=torch.device('cpu'))\n"
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
    from rnacli.methods.reduce import mean_over
    from rnacli.methods.retain import rm_retain_loss, token_kl

    def kl_retain_loss(logits, ref_logits, mask):  # KLRetain's reduction over real tokens
        return mean_over(token_kl(logits, ref_logits)[mask.bool()])

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


class FixedNoise(Noise):
    """+delta or -delta (one fixed draw per layer): antithetic pairs average to zero noise."""

    def __init__(self, layers, side, sign, deltas):
        super().__init__(layers, 1.0, torch.Generator(), side)
        self.sign, self.deltas = sign, deltas

    def sample_like(self, hidden, layer=None):
        key = (layer, tuple(hidden.shape))
        if key not in self.deltas:
            gen = torch.Generator().manual_seed(len(self.deltas))
            self.deltas[key] = 0.5 * torch.randn(hidden.shape, generator=gen)
        return self.sign * self.deltas[key].to(hidden.dtype)


def retain_grads(model, passes, retain, seq, noise):
    model.zero_grad(set_to_none=True)
    retain.loss(passes, seq, noise=noise).backward()
    return [model.get_parameter(n).grad.clone() for n in TRAINABLE]


def moved_model(tiny):
    """The tiny model with a trained tensor moved off the reference (else the retain loss and
    its gradient are exactly 0); call .restore() after."""
    model, _ = tiny
    for name in TRAINABLE:
        model.get_parameter(name).requires_grad_(True)
    with torch.no_grad():
        model.get_parameter(TRAINABLE[1]).mul_(1.5)
    return model


def restore(model):
    with torch.no_grad():
        model.get_parameter(TRAINABLE[1]).div_(1.5)
    for name in TRAINABLE:
        model.get_parameter(name).requires_grad_(False)


@pytest.mark.parametrize(
    ("side", "layers", "unchanged"),
    [
        ("reference", [3], True),  # the unlearn layer: quadratic loss, zero-mean cross term
        ("model", [3], True),
        ("model", [0], False),  # below the trained layers 1-3: through them, nonlinearly
    ],
)
def test_expected_rm_retain_gradient_by_side_and_layer(tiny, side, layers, unchanged):
    """Antithetic draws (+delta, -delta) average to the noiseless gradient exactly when noise
    cannot change an RM method's expected retain gradient (`rna.expectation_note`)."""
    from rnacli.methods.retain import RepresentationRetain

    model, tok = tiny
    seq = document_batch(tok, TEXTS, 24)
    retain = RepresentationRetain(3)
    passes_model = moved_model(tiny)
    try:
        passes = Passes(passes_model, TRAINABLE)
        plain = retain_grads(model, passes, retain, seq, None)
        deltas: dict = {}
        plus = retain_grads(model, passes, retain, seq, FixedNoise(layers, side, 1.0, deltas))
        minus = retain_grads(model, passes, retain, seq, FixedNoise(layers, side, -1.0, deltas))
    finally:
        restore(model)
    for p, a, b in zip(plain, plus, minus, strict=True):
        assert not torch.allclose(a, p, atol=1e-6)  # each draw does move the gradient
        same = torch.allclose((a + b) / 2, p, rtol=1e-4, atol=1e-7)
        assert same == unchanged, (side, layers)


@pytest.mark.parametrize("side", ["reference", "model"])
@pytest.mark.parametrize(("method", "retain_loss"), [("rmu", None), ("npo", "kl"), ("dpo", "mse")])
def test_noise_lands_only_in_the_chosen_sides_retain_pass(
    tiny, corpora, tiny_model_dir, method, retain_loss, side, monkeypatch
):
    """Which passes get noise: exactly the retain pass of the chosen side, never a forget pass,
    and only the chosen layers' outputs."""
    model, tok = tiny
    recipe = recipe_from_dict(tiny_recipe(tiny_model_dir, corpora, method, retain_loss))
    m = build_method(recipe.method, model.config.hidden_size, 2, seed=0)
    retain = build_retain(recipe.method)
    from rnacli.data.batches import preference_batches

    forget = document_batch(tok, TEXTS, 24)
    win, lose = preference_batches(tok, TEXTS, ["I don't know.", "No idea."], 24, 4)
    retain_seq = document_batch(tok, TEXTS[::-1], 24)
    batch = type(
        "B",
        (),
        {
            "forget": lose if method == "dpo" else forget,
            "refusal": win,
            "retain": retain_seq,
            "corpus": 0,
        },
    )()
    passes = Passes(model, TRAINABLE)
    seen = []
    original_run = Passes._run

    def recording_run(self, seq, *, reference, stop, noise):
        seen.append((seq is retain_seq, reference, None if noise is None else noise.side))
        return original_run(self, seq, reference=reference, stop=stop, noise=noise)

    monkeypatch.setattr(Passes, "_run", recording_run)
    noise = Noise([2], 0.05, torch.Generator().manual_seed(0), side)
    unlearning_loss(m, retain, passes, batch, 1.0, noise)
    noised = [(is_retain, ref) for is_retain, ref, got in seen if got is not None]
    assert noised == [(True, side == "reference")]
    assert all(got in (None, side) for _, _, got in seen)
    assert noise.calls == 1  # layer 2 only, once


def test_activation_scale_is_the_median_per_token_mean_square():
    from rnacli.methods.rna import activation_scale, median_scale

    hidden = torch.tensor(
        [[[1.0, 1.0], [2.0, -2.0], [50.0, 50.0]], [[3.0, 3.0], [0.0, 0.0], [7.0, 1.0]]]
    )
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])  # padding (50, 50) and (0, 0) never count
    per_token = activation_scale(hidden, mask)
    assert per_token.tolist() == [1.0, 4.0, 9.0, 25.0]
    assert median_scale([per_token[:1], per_token[1:]]) == 4.0  # torch: the lower middle value
    assert median_scale([torch.tensor([1.0, 4.0, 900.0])]) == 4.0  # one huge token moves nothing


def test_relative_scale_is_measured_on_the_first_retain_batches(tiny_model_dir, corpora, tmp_path):
    """rna.scale = relative: variance = nu x median per-token mean z^2 of the reference at the
    layer over the run's first retain batches; recorded in env.json."""
    import json

    from rnacli.methods.rna import activation_scale, median_scale
    from rnacli.models.loading import load_model
    from rnacli.training.loop import train
    from rnacli.training.noise import SCALE_BATCHES
    from rnacli.training.setup import training_data

    raw = tiny_recipe(tiny_model_dir, corpora, "npo", "kl", rna=True)
    raw["rna"].update({"noise_scale": 0.25, "layers": [1, 2], "scale": "relative", "side": "model"})
    recipe = recipe_from_dict(raw)
    train(recipe, tmp_path / "run")
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    model, tok = load_model(str(tiny_model_dir), device="cpu")
    data = training_data(recipe, tok)
    passes = Passes(model, TRAINABLE)
    for layer in (1, 2):
        expected = median_scale(
            [
                activation_scale(passes.hidden(s, layer, reference=True), s.attention_mask)
                for s in data.first_retain_batches(SCALE_BATCHES)
            ]
        )
        assert env["rna"]["activation_scale"][str(layer)] == pytest.approx(expected)
        assert env["rna"]["noise_variance"][str(layer)] == pytest.approx(0.25 * expected)
    assert env["rna"]["side"] == "model"


def test_train_notes_a_setting_that_is_a_no_op_in_expectation(
    tiny_model_dir, corpora, tmp_path, capsys
):
    from rnacli.training.loop import train

    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", rna=True, train={"steps": 1})
    raw["rna"]["layers"] = 3  # the unlearn layer
    train(recipe_from_dict(raw), tmp_path / "at_l")
    assert "rna.layers = 3 is RMU's unlearn layer" in capsys.readouterr().err
    raw["rna"]["layers"] = 2
    train(recipe_from_dict(raw), tmp_path / "below_l")
    assert "unlearn layer" not in capsys.readouterr().err
