"""Every command that writes refuses a non-empty or foreign target unless --force, and never
writes over its own input, even with --force (issue 15, part 1); atomic writes get the
permissions a plain write would."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rnacli.files.atomic import atomic_dir, write_text
from rnacli.recipe import recipe_from_dict
from rnacli.training.loop import train
from tests.conftest import run_cli as rnacli
from tests.conftest import tiny_recipe


def foreign(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x").write_text("mine")
    return folder


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir, corpora) -> Path:
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"steps": 1})
    return train(recipe_from_dict(raw, "r.toml"), tmp_path / "r").run_dir


def test_export_keeps_what_the_target_held(tmp_path, run_dir, monkeypatch, capsys):
    d = foreign(tmp_path / "d")
    code, err = rnacli(monkeypatch, capsys, "export", run_dir, "--out", d)
    assert code == 2 and "the folder is not empty (x, ...)" in err and "--force" in err
    assert (d / "x").read_text() == "mine"
    # into the run itself or its checkpoint: refused, --force or not; the run stays whole
    for target in (run_dir, run_dir / "checkpoint", tmp_path):
        code, err = rnacli(monkeypatch, capsys, "export", run_dir, "--out", target, "--force")
        assert code == 2 and "would write over this command's own input" in err
    assert (run_dir / "checkpoint" / "meta.json").is_file()
    file = tmp_path / "model.bin"
    file.write_text("keep")
    code, err = rnacli(monkeypatch, capsys, "export", run_dir, "--out", file, "--force")
    assert code == 2 and "is a file, expected a folder" in err and file.read_text() == "keep"
    # an empty or absent folder, then a rerun over its own export, then --force
    out = tmp_path / "full"
    assert rnacli(monkeypatch, capsys, "export", run_dir, "--out", out)[0] == 0
    assert rnacli(monkeypatch, capsys, "export", run_dir, "--out", out)[0] == 0
    assert (out / "config.json").is_file()
    assert rnacli(monkeypatch, capsys, "export", run_dir, "--out", d, "--force")[0] == 0
    assert (d / "config.json").is_file() and not (d / "x").exists()


def test_eval_out_merges_only_into_its_own_eval_json(
    tmp_path, tiny_model_dir, qa_file, monkeypatch, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval.json").write_text('{"notes": "someone else\'s file"}')
    args = ["eval", tiny_model_dir, "--tasks", qa_file, "--limit", "2", "--out", out]
    code, err = rnacli(monkeypatch, capsys, *args)
    assert code == 2 and "eval.json: the file exists; pass --force" in err
    assert "someone else" in (out / "eval.json").read_text()
    assert rnacli(monkeypatch, capsys, *args, "--force")[0] == 0
    assert json.loads((out / "eval.json").read_text())["models"][0]["tasks"]
    assert rnacli(monkeypatch, capsys, *args)[0] == 0  # now rnacli's own: merged, no --force
    code, err = rnacli(monkeypatch, capsys, *args[:-1], qa_file)
    assert code == 2 and "is a file, expected a folder" in err


def test_perturb_refuses_a_foreign_folder_and_its_own_input(tmp_path, qa_file, monkeypatch,
                                                            capsys):  # fmt: skip
    out = foreign(tmp_path / "p")
    code, err = rnacli(monkeypatch, capsys, "perturb", qa_file, "--out", out)
    assert code == 2 and "not empty" in err
    assert rnacli(monkeypatch, capsys, "perturb", qa_file, "--out", out, "--force")[0] == 0
    assert (out / "x").read_text() == "mine"  # --force adds its files, deletes nothing
    assert rnacli(monkeypatch, capsys, "perturb", qa_file, "--out", tmp_path / "q")[0] == 0
    assert rnacli(monkeypatch, capsys, "perturb", qa_file, "--out", tmp_path / "q")[0] == 0
    # the input is named like an output: writing it would destroy the input
    source = tmp_path / "q" / "perturbed-SARS-CoV-2.jsonl"
    before = source.read_text()
    code, err = rnacli(monkeypatch, capsys, "perturb", source, "--out", tmp_path / "q", "--force")
    assert code == 2 and "own input" in err and source.read_text() == before


def test_corpus_from_qa_refuses_an_existing_file_and_its_input(tmp_path, qa_file, monkeypatch,
                                                               capsys):  # fmt: skip
    out = tmp_path / "c.jsonl"
    out.write_text("precious\n")
    args = ["data", "corpus-from-qa", qa_file, "--out", out]
    code, err = rnacli(monkeypatch, capsys, *args)
    assert code == 2 and "the file exists; pass --force" in err and out.read_text() == "precious\n"
    assert rnacli(monkeypatch, capsys, *args, "--force")[0] == 0
    assert "precious" not in out.read_text()
    before = qa_file.read_text()
    code, err = rnacli(monkeypatch, capsys, "data", "corpus-from-qa", qa_file, "--out", qa_file,
                       "--force")  # fmt: skip
    assert code == 2 and "own input" in err and qa_file.read_text() == before


@pytest.mark.parametrize(
    "command",
    [
        ["report", "RUNS", "--base", "b"],
        ["sensitivity", "m", "--source", "CORPUS"],
        ["mine-tokens", "CORPUS"],
        ["export-tasks"],
        ["plan", "RECIPE", "--json"],
    ],
)
def test_the_other_writing_commands_refuse_a_foreign_target(
    tmp_path, qa_file, corpora, monkeypatch, capsys, command
):
    (tmp_path / "eval.json").write_text('{"models": []}')
    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nforget = ["x"]\n[method]\nname = "rmu"\n')
    fill = {"RUNS": tmp_path / "eval.json", "CORPUS": corpora["bio"], "RECIPE": recipe}
    args = [fill.get(a, a) for a in command]
    if command[0] == "plan":
        target = tmp_path / "plan.json"
        target.write_text("{}")
        args.append(target)
    elif command[0] == "export-tasks":
        target = foreign(tmp_path / "tasks")
        args = [*args, target, "--tasks", qa_file]
    else:
        target = foreign(tmp_path / "out")
        args += ["--out", target]
    code, err = rnacli(monkeypatch, capsys, *args)
    assert code == 2 and "--force" in err, err
    assert (target / "x" if target.is_dir() else target).read_text() in ("mine", "{}")


def test_train_refuses_a_foreign_folder(tmp_path, tiny_model_dir, corpora):
    from rnacli.errors import RnacliError

    out = foreign(tmp_path / "docs")
    raw = tiny_recipe(tiny_model_dir, corpora, "rmu", train={"steps": 1})
    with pytest.raises(RnacliError, match="docs: the folder is not empty"):
        train(recipe_from_dict(raw, "r.toml"), out)
    assert sorted(p.name for p in out.iterdir()) == ["x"]  # not even a lock file was left
    train(recipe_from_dict(raw, "r.toml"), out, force=True)
    assert (out / "x").read_text() == "mine" and (out / "checkpoint").is_dir()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner").write_text("y")
        (tmp_path / "plain.txt").write_text("x")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(tmp_path / "f.txt") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert mode(tmp_path / "d") == mode(tmp_path / "plain") == 0o777 & ~umask
