import json

import pytest
import torch
from safetensors.torch import load_file

from rnacli.errors import RnacliError
from rnacli.models.loading import load_model
from rnacli.recipe import recipe_from_dict
from rnacli.training.loop import train
from tests.conftest import tiny_recipe

ALL = [
    ("rmu", None),
    ("adaptive_rmu", None),
    ("rsv", None),
    ("npo", "kl"),
    ("npo", "mse"),
    ("dpo", "kl"),
    ("dpo", "mse"),
    ("simnpo", "kl"),
    ("simnpo", "mse"),
]
SLOW_STYLE = {
    "reference": "copy",
    "shared_prefix": False,
    "truncated_forward": False,
    "logits_chunk": 0,
}


def run(tmp_path, name, raw):
    recipe = recipe_from_dict(raw, f"{name}.toml")
    return train(recipe, tmp_path / name).run_dir


def delta(run_dir):
    return load_file(str(run_dir / "checkpoint" / "delta.safetensors"))


def authors_forms(method: str, retain_loss: str | None) -> dict:
    """The method keys of the authors' code (docs/authors-code.md) that apply to `method`."""
    forms = {"mean_over": "all-positions"}
    if retain_loss:
        forms["nll"] = "pooled-mean"
    if method == "dpo":
        forms["dpo_reference"] = "authors"
    if method == "adaptive_rmu":
        forms["adaptive_scale"] = "first-batch"
    return forms


@pytest.mark.parametrize("forms", ["paper", "authors"])
@pytest.mark.parametrize(("method", "retain_loss"), ALL)
def test_three_steps_equal_with_and_without_the_engineering(
    tmp_path, tiny_model_dir, corpora, method, retain_loss, forms
):
    """Delta reference + shared prefix + truncated forward + chunked head + split backward give
    the same parameters as a deep-copied reference with full forwards and one backward (RNA
    on), in the equations' forms and in the authors'."""
    extra = {"method": authors_forms(method, retain_loss)} if forms == "authors" else {}
    fast_raw = tiny_recipe(tiny_model_dir, corpora, method, retain_loss, rna=True, **extra)
    if forms == "authors":
        fast_raw["rna"].update(noise_scale=0.2, nu_is="std")
    fast = run(tmp_path, "fast", fast_raw)
    slow_train = {**SLOW_STYLE, "split_backward": False}
    slow_raw = tiny_recipe(
        tiny_model_dir, corpora, method, retain_loss, rna=True, train=slow_train, **extra
    )
    slow_raw["rna"] = fast_raw["rna"]
    slow = run(tmp_path, "slow", slow_raw)
    base, _ = load_model(str(tiny_model_dir), device="cpu")
    for name, value in delta(fast).items():
        torch.testing.assert_close(value, delta(slow)[name], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(value, base.get_parameter(name), atol=1e-6)  # it did train


def test_run_folder_layout_and_evaluation(tmp_path, tiny_model_dir, corpora):
    run_dir = run(
        tmp_path, "npo_kl_rna", tiny_recipe(tiny_model_dir, corpora, "npo", "kl", rna=True)
    )
    for file in (
        "recipe.toml",
        "recipe.json",
        "env.json",
        "metrics.jsonl",
        "checkpoint/delta.safetensors",
        "checkpoint/meta.json",
    ):
        assert (run_dir / file).exists(), file
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"loss", "forget_loss", "retain_loss", "lr", "seconds", "corpus"} <= set(rows[0])
    meta = json.loads((run_dir / "checkpoint/meta.json").read_text())
    assert meta["step"] == 3 and meta["method"] == "NPO+KL" and meta["rna"] is True
    assert len(meta["tensors"]) == 3
    model, _ = load_model(str(run_dir), device="cpu")
    for name, value in delta(run_dir).items():
        torch.testing.assert_close(model.get_parameter(name), value)
    # only the trained tensors are stored: their bytes plus a small header
    trained = sum(v.numel() * v.element_size() for v in delta(run_dir).values())
    size = (run_dir / "checkpoint/delta.safetensors").stat().st_size
    assert trained <= size < trained + 1024
    assert size < 0.2 * sum(p.numel() * 4 for p in model.parameters())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_after_a_kill_gives_the_same_weights(
    tmp_path, tiny_model_dir, corpora, monkeypatch, dtype
):
    """Bit for bit; in bf16 the checkpoint also keeps the fp32 master weights."""
    raw = tiny_recipe(
        tiny_model_dir,
        corpora,
        "dpo",
        "kl",
        rna=True,
        model={"dtype": dtype},
        train={"steps": 5, "checkpoint_every": 2},
    )
    whole = run(tmp_path, "whole", raw)

    import rnacli.training.loop as train_module

    real = train_module.unlearning_backward
    calls = {"n": 0}

    def dies_at_step_4(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the process is killed during step 4
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "unlearning_backward", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "killed", raw)
    monkeypatch.setattr(train_module, "unlearning_backward", real)
    killed = tmp_path / "killed"
    assert json.loads((killed / "checkpoint/meta.json").read_text())["step"] == 2
    train(recipe_from_dict(raw, "killed.toml"), killed, resume=True)
    for name, value in delta(whole).items():
        assert torch.equal(delta(killed)[name], value)
    masters = [run / "checkpoint" / "master.safetensors" for run in (whole, killed)]
    assert masters[0].exists() == masters[1].exists() == (dtype == "bfloat16")
    if dtype == "bfloat16":
        saved = [load_file(str(m)) for m in masters]
        assert all(torch.equal(saved[0][n], saved[1][n]) for n in saved[0])
    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_existing_run_needs_resume_and_the_same_recipe(tmp_path, tiny_model_dir, corpora):
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu")
    run(tmp_path, "r", raw)
    with pytest.raises(RnacliError, match="already holds a run .*--resume"):
        run(tmp_path, "r", raw)
    changed = tiny_recipe(tiny_model_dir, corpora, "rmu", method={"steering_coeff": 9.0})
    with pytest.raises(RnacliError, match="--resume: method.steering_coeff differs"):
        train(recipe_from_dict(changed, "r.toml"), tmp_path / "r", resume=True)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(
    tmp_path, tiny_model_dir, corpora, monkeypatch
):
    import rnacli.training.loop as train_module

    real = train_module.unlearning_backward
    calls = {"n": 0}

    def nan_at_step_3(*args, **kwargs):
        calls["n"] += 1
        values = real(*args, **kwargs)
        if calls["n"] == 3:
            values = {**values, "loss": float("nan")}
        return values

    monkeypatch.setattr(train_module, "unlearning_backward", nan_at_step_3)
    raw = tiny_recipe(tiny_model_dir, corpora, "npo", "kl", train={"steps": 4})
    with pytest.raises(RnacliError, match=r"step 3: loss is not finite .*step 2\) is kept"):
        run(tmp_path, "nan", raw)
    assert json.loads((tmp_path / "nan/checkpoint/meta.json").read_text())["step"] == 2


def test_delta_refuses_a_different_base(tmp_path, tiny_model_dir, corpora):
    run_dir = run(tmp_path, "r", tiny_recipe(tiny_model_dir, corpora, "rmu"))
    meta_path = run_dir / "checkpoint/meta.json"
    meta = json.loads(meta_path.read_text())
    meta["base_fingerprint"] = "files-sha256:" + "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(RnacliError, match="base model .* differs from it"):
        load_model(str(run_dir), device="cpu")


def test_trainable_regex_errors(tmp_path, tiny_model_dir, corpora):
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"trainable": r"nothing\.here"})
    with pytest.raises(RnacliError, match=r"^x.toml: train.trainable: .* matches no parameter"):
        run(tmp_path, "x", raw)
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", method={"layer": 40})
    with pytest.raises(RnacliError, match="^y.toml: method.layer = 40, but the model has 6 layers"):
        run(tmp_path, "y", raw)


def test_rm_noise_above_the_unlearn_layer_is_refused(tmp_path, tiny_model_dir, corpora):
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", rna=True)
    raw["rna"]["layers"] = [5]
    with pytest.raises(RnacliError, match="^x.toml: rna.layers .*never reaches an RM method's"):
        run(tmp_path, "x", raw)
    raw["rna"]["layers"] = [99]  # the recipe file is named, as for every recipe key
    with pytest.raises(RnacliError, match=r"^y.toml: rna.layers = \[99\]: layers must lie in"):
        run(tmp_path, "y", raw)


def test_preference_batches_mask_the_prompt(tiny):
    from rnacli.data.batches import preference_batches

    _, tok = tiny
    docs = ["virus host cell protein gene membrane replication", "network exploit"]
    win, lose = preference_batches(tok, docs, ["I don't know.", "No idea."], 64, 4)
    for row in range(2):
        n_doc = int(lose.attention_mask[row].sum())
        n_prompt = min(4, n_doc // 2)  # a short document keeps half for the rejected answer
        assert lose.target_mask[row, :n_prompt].sum() == 0
        assert lose.target_mask[row, n_prompt:n_doc].all()
        assert torch.equal(win.input_ids[row, :n_prompt], lose.input_ids[row, :n_prompt])
        refusal = tok(" " + ["I don't know.", "No idea."][row], add_special_tokens=False)
        n_win = int(win.attention_mask[row].sum())
        assert win.input_ids[row, n_prompt:n_win].tolist() == refusal["input_ids"]
        assert win.target_mask[row, n_prompt:n_win].all()


def test_8bit_adamw_trains_on_the_cpu_and_load_in_is_refused(tmp_path, tiny_model_dir, corpora):
    """bitsandbytes' 8-bit AdamW steps on the CPU (tests/test_attacks.py compares its updates
    with AdamW's); quantized weights are for evaluation only."""
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"optimizer": "adamw8bit"})
    folder = run(tmp_path, "a", raw)
    assert json.loads((folder / "checkpoint" / "meta.json").read_text())["step"] == 3
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", model={"load_in": "8bit"})
    with pytest.raises(RnacliError, match="model.load_in = '8bit' is for evaluation"):
        run(tmp_path, "b", raw)


def test_prompt_completion_documents_score_the_completion_only(tiny):
    from rnacli.data.batches import document_batch, preference_batches

    _, tok = tiny
    docs = [("virus host cell", " protein gene."), "network exploit packet"]
    seq = document_batch(tok, docs, 64)
    n_prompt = len(tok("virus host cell")["input_ids"])
    n_all = int(seq.attention_mask[0].sum())
    assert seq.target_mask[0, :n_prompt].sum() == 0 and seq.target_mask[0, n_prompt:n_all].all()
    assert seq.target_mask[1, : int(seq.attention_mask[1].sum())].all()  # a text: all of it
    win, lose = preference_batches(tok, docs[:1], ["No idea."], 64, prompt_tokens=1)
    assert torch.equal(win.input_ids[0, :n_prompt], lose.input_ids[0, :n_prompt])
    assert lose.target_mask[0, :n_prompt].sum() == 0  # the explicit prompt is x
    # a long prompt loses its start, the completion is kept
    short = document_batch(tok, [("a " * 40, " protein gene.")], 8)
    assert short.input_ids.shape[1] == 8 and short.target_mask[0, -1] == 1


def test_a_trailing_space_in_a_prompt_is_scored_as_the_evaluator_scores_it(tiny):
    """{"prompt": "The capital of France is ", "completion": "Paris"} trains on ' Paris' (one
    token, as the evaluator scores the pair), never on a stray ' ' token then 'Paris'; DPO's
    refusal rows and plain documents get no stray space either."""
    from rnacli.data.batches import document_batch, preference_batches
    from rnacli.data.encoding import encode_pair

    _, tok = tiny
    space = tok.convert_tokens_to_ids("Ġ")
    pair = ("What is the capital of France? ", "Paris")
    seq = document_batch(tok, [pair], 64)
    ctx, cont = encode_pair(tok, *pair)
    ids = seq.input_ids[0, : int(seq.attention_mask[0].sum())].tolist()
    assert ids == ctx + cont == tok("What is the capital of France? Paris")["input_ids"]
    assert cont == tok(" Paris", add_special_tokens=False)["input_ids"] and space not in ids
    assert tok.convert_ids_to_tokens(cont)[0].startswith("ĠP")  # the space rides on the word
    assert (
        seq.target_mask[0, len(ctx) : len(ids)].all() and not seq.target_mask[0, : len(ctx)].any()
    )
    win, _ = preference_batches(tok, [pair], ["I don't know."], 64, 4)
    row = win.input_ids[0, : int(win.attention_mask[0].sum())].tolist()
    # one space between the prompt and the refusal, as the text reads (a stray one would add
    # a token); the tokenizer's own encoding of the joined text
    assert row == tok("What is the capital of France? I don't know.")["input_ids"]
    plain = document_batch(tok, ["the river town \n"], 64)
    assert (
        plain.input_ids[0, : int(plain.attention_mask[0].sum())].tolist()
        == tok("the river town")["input_ids"]
    )


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_reference_pass_is_deterministic_under_gradient_checkpointing(
    tmp_path, corpora, checkpointing
):
    """A tiny Llama with attention dropout 0.3, NPO+KL, one step: the policy equals the
    reference, so the loss is (2/beta) ln 2 = 20 ln 2 and the KL retain loss 0, with
    checkpointing (which needs training mode) as without it."""
    import math

    from tests.tiny import save_tiny

    model_dir = save_tiny(tmp_path / "dropout-model", attention_dropout=0.3)
    raw = tiny_recipe(model_dir, corpora, "npo", "kl", train={"steps": 1})
    raw["train"]["gradient_checkpointing"] = checkpointing
    losses = []
    for name in ("a", "b"):
        run_dir = run(tmp_path, name, raw)
        [row] = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses.append(row)
    for row in losses:
        assert row["loss"] == pytest.approx(20 * math.log(2), abs=1e-5)  # 13.862944
        assert row["forget_loss"] == pytest.approx(13.862944, abs=1e-5)
        assert row["retain_loss"] == pytest.approx(0.0, abs=1e-6)
    assert losses[0]["loss"] == losses[1]["loss"]
