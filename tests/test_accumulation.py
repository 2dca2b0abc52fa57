"""A step is a step however it is split: the same sequences as one batch, as micro-batches
(`train.grad_accum`) or spread over processes give one loss and one gradient, for every method
and retain loss (`train.accumulation = "exact"`, the default). Processes are simulated in one
process: each rank's batches are drawn as that rank draws them, the step's counts are summed
over the ranks (what the all-reduce does) and the ranks' gradients are summed (what the
gradient reduction does)."""

import pytest
import torch

from rnacli.recipe import recipe_from_dict
from rnacli.training.loop import UnlearningRecipe
from rnacli.training.step import set_step_totals, unlearning_backward
from tests.conftest import tiny_recipe
from tests.test_train import ALL

STEP = 1  # the second forget corpus, and not the first batch of any stream
SEQUENCES = 4  # per step


def step_gradient(raw: dict, batch_size: int, grad_accum: int, world: int, exact: bool = True):
    """(gradient of the step's loss, the step's loss) with SEQUENCES sequences split as asked."""
    raw = {**raw, "data": {**raw["data"], "batch_size": batch_size}}
    raw["train"] = {**raw["train"], "grad_accum": grad_accum}
    raw["train"]["accumulation"] = "exact" if exact else "legacy"
    ranks = []
    for rank in range(world):
        run = UnlearningRecipe(recipe_from_dict(raw, "split.toml"))
        run.setup()
        run.data.rank, run.data.world_size = rank, world
        ranks.append((run, [run.data.batch(STEP, m) for m in range(grad_accum)]))
    if exact:  # the counts of every rank's micro-batches together: the all-reduce's sum
        set_step_totals([b for _, batches in ranks for b in batches])
    grads, loss = {}, 0.0
    for run, batches in ranks:
        run.master.zero_grad()
        for batch in batches:
            alpha = run.recipe.alphas[batch.corpus]
            accum = 1 if exact else grad_accum * world
            values = unlearning_backward(
                run.method, run.retain, run.passes, batch, alpha, None, accum=accum
            )
            loss += values["loss"] / (1 if exact else grad_accum * world)
        for name, param in run.trainable.items():
            grads[name] = grads.get(name, 0) + param.grad
    return grads, loss


def varied(raw: dict) -> dict:
    """Sequences not cut to one length, so that micro-batches hold different token counts (a
    split that cannot change a mean of equal counts would test nothing)."""
    raw["data"].update(forget_max_length=512, retain_max_length=512)
    return raw


def assert_same(a: dict, b: dict, rel: float = 1e-5) -> None:
    for name, grad in a.items():
        scale = grad.abs().max()
        assert scale > 0, name
        assert (b[name] - grad).abs().max() <= rel * scale, name


@pytest.mark.parametrize(("method", "retain_loss"), ALL)
def test_one_batch_micro_batches_and_processes_give_one_gradient(
    tiny_model_dir, corpora, method, retain_loss
):
    raw = varied(tiny_recipe(tiny_model_dir, corpora, method, retain_loss))
    whole, loss = step_gradient(raw, SEQUENCES, 1, 1)
    micro, micro_loss = step_gradient(raw, 1, SEQUENCES, 1)
    spread, spread_loss = step_gradient(raw, 1, 2, 2)
    assert_same(whole, micro)
    assert_same(whole, spread)
    assert micro_loss == pytest.approx(loss, rel=1e-5)
    assert spread_loss == pytest.approx(loss, rel=1e-5)


def test_legacy_accumulation_averages_micro_batch_means(tiny_model_dir, corpora):
    """The fault this fixes, kept for runs recorded before: micro-batch means averaged weigh a
    short sequence's tokens more than a long one's, so the gradient changes with the split."""
    raw = varied(tiny_recipe(tiny_model_dir, corpora, "rmu"))
    whole, _ = step_gradient(raw, SEQUENCES, 1, 1, exact=False)
    micro, _ = step_gradient(raw, 1, SEQUENCES, 1, exact=False)
    name = next(iter(whole))
    assert not torch.allclose(whole[name], micro[name], rtol=1e-3, atol=0)


def test_a_run_recorded_before_the_key_resumes_as_it_was_trained(tmp_path, tiny_model_dir, corpora):
    import json

    from rnacli.errors import RnacliError
    from rnacli.training.loop import train

    raw = tiny_recipe(tiny_model_dir, corpora, "dpo", "kl", train={"steps": 2, "grad_accum": 2})
    run_dir = train(recipe_from_dict(raw, "old.toml"), tmp_path / "old").run_dir
    saved = json.loads((run_dir / "recipe.json").read_text())
    del saved["train"]["accumulation"]  # as rnacli wrote it before the key existed
    (run_dir / "recipe.json").write_text(json.dumps(saved))
    raw["train"]["steps"] = 3
    train(recipe_from_dict(raw, "old.toml"), run_dir, resume=True)
    assert json.loads((run_dir / "recipe.json").read_text())["train"]["accumulation"] == "legacy"
    # naming today's value in the recipe is a different run: refused, as any other key
    raw["train"].update(steps=4, accumulation="exact")
    with pytest.raises(RnacliError, match=r"train.accumulation differs .*'legacy' there"):
        train(recipe_from_dict(raw, "old.toml"), run_dir, resume=True)


def test_resume_on_another_process_count_keeps_the_global_batch(tmp_path, tiny_model_dir, corpora):
    """A run recorded as 2 processes x grad_accum 1 resumes on 1 process with grad_accum 2:
    the same micro-batches per step, so the same weights as one process with grad_accum 2."""
    import json

    from safetensors.torch import load_file

    from rnacli.training.loop import train

    raw = varied(tiny_recipe(tiny_model_dir, corpora, "npo", "kl"))
    raw["train"].update(steps=3, checkpoint_every=1, grad_accum=2)
    whole = train(recipe_from_dict(raw, "r.toml"), tmp_path / "whole").run_dir
    raw["train"]["steps"] = 2
    run_dir = train(recipe_from_dict(raw, "r.toml"), tmp_path / "moved").run_dir
    recorded = json.loads((run_dir / "recipe.json").read_text())
    recorded["train"]["grad_accum"] = 1  # as two processes with grad_accum 1 record it
    (run_dir / "recipe.json").write_text(json.dumps(recorded))
    env = json.loads((run_dir / "env.json").read_text())
    first = {**env["launches"][0], "world_size": 2}
    (run_dir / "env.json").write_text(json.dumps({**first, "launches": [first]}))
    raw["train"].update(steps=3, grad_accum=1)
    train(recipe_from_dict(raw, "r.toml"), run_dir, resume=True)
    a = load_file(str(whole / "checkpoint" / "delta.safetensors"))
    b = load_file(str(run_dir / "checkpoint" / "delta.safetensors"))
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-5, atol=1e-6)
    env = json.loads((run_dir / "env.json").read_text())
    assert [launch["start_step"] for launch in env["launches"]] == [0, 2]
    assert env["launches"][0]["world_size"] == 2 and env["world_size"] == 1


def test_resume_that_cannot_be_exact_is_refused(tmp_path, tiny_model_dir, corpora):
    from rnacli.errors import RnacliError
    from rnacli.training.loop import resume_step, train

    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"steps": 1, "grad_accum": 3})
    run_dir = train(recipe_from_dict(raw, "r.toml"), tmp_path / "r").run_dir
    with pytest.raises(RnacliError, match=r"trained on 1 process\(es\) x grad_accum 3; this "):
        resume_step(run_dir, recipe_from_dict(raw, "r.toml"), True, world=2)
    assert resume_step(run_dir, recipe_from_dict(raw, "r.toml"), True, world=1) == 1
    raw["train"]["accumulation"] = "legacy"
    legacy = train(recipe_from_dict(raw, "l.toml"), tmp_path / "l").run_dir
    with pytest.raises(RnacliError, match="legacy"):
        resume_step(legacy, recipe_from_dict(raw, "l.toml"), True, world=3)
