"""Run-folder integrity: nothing lost, nothing silently wrong (issue 15, part 1 and 2).

A poisoned update never reaches a checkpoint or an evaluation; a delta is never applied to a
base whose other layers differ; an interrupted save is recovered; a damaged run folder is one
clear line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import rnacli.models.fingerprint as fingerprint_module
import rnacli.training.loop as train_module
from rnacli.errors import RnacliError
from rnacli.models.loading import load_model
from rnacli.recipe import recipe_from_dict
from rnacli.runs.checkpoint import save_checkpoint
from rnacli.training.loop import train
from tests.conftest import cli_error, tiny_recipe


def run(tmp_path: Path, name: str, raw: dict, **kwargs) -> Path:
    return train(recipe_from_dict(raw, f"{name}.toml"), tmp_path / name, **kwargs).run_dir


def delta(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoint" / "delta.safetensors"))


# --------------------------------------------------------------------------- NaN and inf


def poison_after(monkeypatch, step: int) -> None:
    """Make the optimizer's update at `step` (1-based) write a NaN into a trained tensor."""
    real = train_module.make_optimizer

    def make(recipe, params, device):
        optimizer = real(recipe, params, device)
        step_fn, calls = optimizer.step, {"n": 0}

        def poisoned_step(*args, **kwargs):
            out = step_fn(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == step:
                with torch.no_grad():
                    params[0][0, 0] = float("nan")
            return out

        optimizer.step = poisoned_step
        return optimizer

    monkeypatch.setattr(train_module, "make_optimizer", make)


def test_a_poisoned_update_before_the_first_save_says_no_checkpoint(
    tmp_path, tiny_model_dir, corpora, monkeypatch
):
    poison_after(monkeypatch, 1)
    raw = tiny_recipe(tiny_model_dir, corpora, "npo", "kl", train={"checkpoint_every": 1})
    with pytest.raises(RnacliError, match=r"step 1: the update made .* NaN .*No checkpoint was"):
        run(tmp_path, "r", raw)
    assert not (tmp_path / "r" / "checkpoint").exists()
    assert not [p for p in (tmp_path / "r").iterdir() if "checkpoint" in p.name]


def test_a_poisoned_update_keeps_the_last_good_checkpoint(
    tmp_path, tiny_model_dir, corpora, monkeypatch
):
    poison_after(monkeypatch, 2)
    raw = tiny_recipe(tiny_model_dir, corpora, "npo", "kl", train={"checkpoint_every": 1})
    with pytest.raises(RnacliError, match=r"step 2: .* last good checkpoint \(step 1\) is kept"):
        run(tmp_path, "r", raw)
    meta = json.loads((tmp_path / "r" / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 1
    assert all(torch.isfinite(t).all() for t in delta(tmp_path / "r").values())
    load_model(str(tmp_path / "r"), device="cpu")  # the kept checkpoint is usable


def test_a_non_finite_loss_at_step_1_says_no_checkpoint(
    tmp_path, tiny_model_dir, corpora, monkeypatch
):
    real = train_module.unlearning_backward

    def nan_loss(*args, **kwargs):
        return {**real(*args, **kwargs), "loss": float("nan")}

    monkeypatch.setattr(train_module, "unlearning_backward", nan_loss)
    with pytest.raises(RnacliError, match="step 1: loss is not finite .*No checkpoint was written"):
        run(tmp_path, "r", tiny_recipe(tiny_model_dir, corpora, "rmu"))


def test_save_checkpoint_refuses_non_finite_tensors_and_keeps_the_previous(tmp_path):
    good = {"w": torch.ones(2, 2)}
    save_checkpoint(tmp_path, base_model="m", base_hash="h", tensors=good, step=1,
                    optimizer_state=None)  # fmt: skip
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(RnacliError, match="step 2: tensor w holds NaN or infinite"):
            save_checkpoint(
                tmp_path,
                base_model="m",
                base_hash="h",
                tensors={"w": torch.tensor([[1.0, bad], [0.0, 1.0]])},
                step=2,
                optimizer_state=None,
            )
    torch.testing.assert_close(delta(tmp_path)["w"], good["w"])


def test_evaluation_and_the_demo_refuse_non_finite_weights(
    tmp_path, tiny_model_dir, corpora, monkeypatch, capsys
):
    from rnacli.demo.bank import ModelBank

    run_dir = run(tmp_path, "r", tiny_recipe(tiny_model_dir, corpora, "rmu"))
    tensors = delta(run_dir)
    name = sorted(tensors)[0]
    tensors[name][0, 0] = float("nan")  # as a poisoned run of an older rnacli could have saved
    save_file(tensors, str(run_dir / "checkpoint" / "delta.safetensors"))
    with pytest.raises(RnacliError, match=f"tensor {name} of the delta holds NaN"):
        load_model(str(run_dir), device="cpu")
    with pytest.raises(RnacliError, match="holds NaN"):
        ModelBank.load([str(run_dir)], device="cpu")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 0}))
    assert "holds NaN" in cli_error(monkeypatch, capsys, "eval", str(run_dir), "--tasks", str(qa))
    # a plain model with an infinite weight
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights["model.norm.weight"][3] = float("inf")
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RnacliError, match="tensor model.norm.weight holds NaN or infinite"):
        load_model(str(broken), device="cpu")


# --------------------------------------------------------------------------- the whole base


def changed_base(tiny_model_dir: Path, folder: Path, scale: float = 1.01) -> Path:
    """The tiny base with layer 5 (untouched by runs that train layers 1-3) scaled."""
    model, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".layers.5." in name:
                param.mul_(scale)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_base_whose_other_layers_differ_is_refused(tmp_path, tiny_model_dir, corpora):
    from rnacli.demo.bank import ModelBank

    run_dir = run(tmp_path, "r", tiny_recipe(tiny_model_dir, corpora, "rmu"))
    meta_path = run_dir / "checkpoint" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert all(".layers.5." not in n for n in meta["tensors"])  # layers 1-3 trained
    assert meta["base_fingerprint"].startswith("files-sha256:")
    other = changed_base(tiny_model_dir, tmp_path / "other")
    with pytest.raises(RnacliError, match="whole-base fingerprint mismatch"):
        ModelBank.load([str(other), str(run_dir)], device="cpu")
    meta["base_model"] = str(other)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(RnacliError, match=r"r: trained from .*other.*fingerprint mismatch"):
        load_model(str(run_dir), device="cpu")
    # the same files load in any dtype: the fingerprint is of the files, not of the tensors
    meta["base_model"] = str(tiny_model_dir)
    meta_path.write_text(json.dumps(meta))
    model, _ = load_model(str(run_dir), device="cpu", dtype="bf16")
    assert model.dtype == torch.bfloat16


def test_runs_without_a_fingerprint_are_checked_by_the_old_hash(tmp_path, tiny_model_dir, corpora):
    run_dir = run(tmp_path, "r", tiny_recipe(tiny_model_dir, corpora, "rmu"))
    meta_path = run_dir / "checkpoint" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["base_fingerprint"]  # as written before the whole-base fingerprint existed
    meta_path.write_text(json.dumps(meta))
    model, _ = load_model(str(run_dir), device="cpu")
    for name, value in delta(run_dir).items():
        torch.testing.assert_close(model.get_parameter(name), value)
    meta["base_hash"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(RnacliError, match="hash of the trained tensors mismatch"):
        load_model(str(run_dir), device="cpu")


def test_the_fingerprint_is_computed_once_per_set_of_files(tmp_path, tiny_model_dir, monkeypatch):
    from rnacli.models.loading import base_fingerprint

    calls = []
    real = fingerprint_module._digest
    monkeypatch.setattr(fingerprint_module, "_digest", lambda f: calls.append(f) or real(f))
    folder = tmp_path / "base"
    shutil.copytree(tiny_model_dir, folder)
    first = base_fingerprint(str(folder))
    assert base_fingerprint(str(folder)) == first and len(calls) == 1  # cached
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert base_fingerprint(str(folder)) == first and len(calls) == 2  # touched: hashed again
    other = changed_base(tiny_model_dir, tmp_path / "other")
    assert base_fingerprint(str(other)) != first


# --------------------------------------------------------------------------- interrupted saves


def test_a_save_killed_between_its_two_renames_is_recovered(
    tmp_path, tiny_model_dir, corpora, caplog
):
    raw = tiny_recipe(
        tiny_model_dir, corpora, "npo", "kl", train={"steps": 6, "checkpoint_every": 2}
    )
    whole = run(tmp_path, "whole", raw)
    r = run(tmp_path, "r", {**raw, "train": {**raw["train"], "steps": 2}})
    shutil.copytree(r / "checkpoint", tmp_path / "step2")
    train(recipe_from_dict({**raw, "train": {**raw["train"], "steps": 4}}, "r.toml"), r,
          resume=True)  # fmt: skip
    # the state a kill leaves between `checkpoint -> .checkpoint.old` and `tmp -> checkpoint`:
    (tmp_path / "step2").rename(r / ".checkpoint.old")
    (r / "checkpoint").rename(r / ".checkpoint.k2a9x1.tmp")
    half = r / ".checkpoint.zz81qq.tmp"  # and a save killed while writing
    half.mkdir()
    (half / "delta.safetensors").write_bytes(b"\x08\x00\x00")
    (r / ".metrics.jsonl.abc.tmp").write_text("{")
    caplog.clear()
    load_model(str(r), device="cpu")  # evaluation finds the complete copy too
    assert json.loads((r / "checkpoint" / "meta.json").read_text())["step"] == 4
    err = " ".join(caplog.text.split())
    assert "recovered the complete step-4 copy from .checkpoint.k2a9x1.tmp" in err
    assert "removed 3 left-over temporary copies" in err
    assert sorted(p.name for p in r.iterdir() if p.name.startswith(".") and p.name != ".lock") == []
    train(recipe_from_dict(raw, "r.toml"), r, resume=True)
    for name, value in delta(whole).items():
        torch.testing.assert_close(delta(r)[name], value, atol=0, rtol=0)


def test_resume_recovers_before_it_reads_the_step(tmp_path, tiny_model_dir, corpora, capsys):
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"steps": 4, "checkpoint_every": 2})
    r = run(tmp_path, "r", {**raw, "train": {**raw["train"], "steps": 2}})
    (r / "checkpoint").rename(r / ".checkpoint.old")  # killed after the first rename
    train(recipe_from_dict(raw, "r.toml"), r, resume=True)
    err = " ".join(capsys.readouterr().err.split())
    assert "recovered the complete step-2 copy from .checkpoint.old" in err
    steps = [json.loads(x)["step"] for x in (r / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # resumed at 2, not restarted at 0


def test_a_second_trainer_in_the_same_folder_is_refused(tmp_path, tiny_model_dir, corpora):
    from filelock import FileLock

    raw = tiny_recipe(tiny_model_dir, corpora, "rmu")
    (tmp_path / "r").mkdir()
    with (
        FileLock(str(tmp_path / "r" / ".lock")),
        pytest.raises(RnacliError, match="another rnacli process is training in this folder"),
    ):
        run(tmp_path, "r", raw)


# --------------------------------------------------------------------------- damaged folders


def damage_delta(r: Path) -> None:
    path = r / "checkpoint" / "delta.safetensors"
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (damage_delta, r"delta.safetensors: damaged, not a readable safetensors file"),
        (lambda r: (r / "checkpoint/meta.json").write_text("[]"), "meta.json: expected a JSON"),
        (
            lambda r: (r / "checkpoint/meta.json").write_text(
                json.dumps({"format": "rnacli-delta/1", "base_model": "x", "step": 3})
            ),
            "meta.json: 'tensors' is missing",
        ),
        (
            lambda r: (r / "checkpoint/meta.json").write_bytes(b'{"format": "\xff\xfe"}'),
            r"meta.json:1: not UTF-8 text \(byte 0xff",
        ),
        (lambda r: (r / "checkpoint/meta.json").write_text('{"format": '), "meta.json:1: invalid"),
    ],
)
def test_a_damaged_run_folder_is_one_line(
    tmp_path, tiny_model_dir, corpora, monkeypatch, capsys, damage, message
):
    r = run(tmp_path, "r", tiny_recipe(tiny_model_dir, corpora, "rmu"))
    damage(r)
    with pytest.raises(RnacliError, match=message):
        load_model(str(r), device="cpu")
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 0}))
    assert "error:" in cli_error(monkeypatch, capsys, "eval", str(r), "--tasks", str(qa))


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path, tiny_model_dir, corpora):
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"steps": 4, "checkpoint_every": 2})
    r = run(tmp_path, "r", {**raw, "train": {**raw["train"], "steps": 2}})
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state": Payload(), "param_groups": []}, r / "checkpoint" / "optimizer.pt")
    with pytest.raises(RnacliError, match="optimizer.pt: not an optimizer state rnacli wrote"):
        train(recipe_from_dict(raw, "r.toml"), r, resume=True)
    assert not marker.exists()


def test_resume_repairs_a_torn_last_line_of_the_log(tmp_path, tiny_model_dir, corpora, caplog):
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"steps": 4, "checkpoint_every": 2})
    r = run(tmp_path, "r", {**raw, "train": {**raw["train"], "steps": 2}})
    with open(r / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.5')  # killed mid-write
    train(recipe_from_dict(raw, "r.toml"), r, resume=True)
    rows = [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert "dropped a torn last line" in caplog.text
    lines = (r / "metrics.jsonl").read_text().splitlines()
    (r / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(RnacliError, match=r"metrics.jsonl:2: damaged line"):
        train(recipe_from_dict({**raw, "train": {**raw["train"], "steps": 5}}, "r.toml"), r,
              resume=True)  # fmt: skip


def test_a_truncated_base_model_is_one_line(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(RnacliError, match=f"could not load model '{broken}'"):
        load_model(str(broken), device="cpu")
