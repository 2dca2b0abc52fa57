"""What rnacli prints is what the user typed (issue 21.4): rich reads `[...]` as markup, so a
name with brackets (a model folder, a run, a recipe, a task, a world, a path) must come out
literally in every command's tables, result lines, hints, progress lines and errors."""

from __future__ import annotations

import shutil
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from rnacli.recipe import to_toml
from tests.conftest import cli_error, tiny_recipe

B = "[seed=2]"  # what rich would read as a tag and drop


def printed(monkeypatch, capsys, *args: str) -> str:
    """`rnacli ARGS` in-process: stdout and stderr together, without whitespace or table
    borders (rich wraps long titles and cells). Fails on a non-zero exit or a traceback."""
    from rnacli.cli import main

    monkeypatch.setattr(sys, "argv", ["rnacli", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err, err
    return "".join(c for c in out + err if not c.isspace() and c not in "│┃─━┏┓┗┛┡┩└┘╇")


def letters_embedder(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in for the sentence embedder: letter counts."""
    out = np.full((len(texts), 26), 1e-3)
    for i, text in enumerate(texts):
        for ch in text.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out


@pytest.fixture
def bracketed(tmp_path, tiny_model_dir, corpora, qa_file, monkeypatch):
    """In a working folder: a model m[seed=2], QA q[seed=2].jsonl, corpus c[seed=2].jsonl and
    recipes[seed=2]/r[seed=2].toml (evaluated on q[seed=2].jsonl), all named relatively."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("RNACLI_QUIET")  # progress lines are printed too
    shutil.copytree(tiny_model_dir, work / f"m{B}")
    shutil.copy(qa_file, work / f"q{B}.jsonl")
    shutil.copy(corpora["bio"], work / f"c{B}.jsonl")
    raw = tiny_recipe(f"m{B}", corpora, "rmu", rna=True, train={"steps": 1, "checkpoint_every": 1})
    raw["eval"] = {"tasks": [f"q{B}.jsonl"], "limit": 2}
    (work / f"recipes{B}").mkdir()
    (work / f"recipes{B}" / f"r{B}.toml").write_text(to_toml(raw))
    return work


def command_steps(work: Path, tiny_model_dir: Path) -> list[tuple[list[str], list[str]]]:
    """(the command's arguments, what its output must hold), in an order where each command
    finds what an earlier one wrote; `│` stands for a table's column border."""
    from rnacli.world.learn import LearnConfig

    recipe, run, task = f"recipes{B}/r{B}.toml", f"runs/r{B}", f"q{B}.jsonl"
    learn = [f"base={str(tiny_model_dir)!r}", "epochs=1", "first_layer=2", "autocast=false"]
    if "target" in {f.name for f in fields(LearnConfig)}:  # a tiny random model learns little
        learn.append("target=0")
    sensitivity = ["--source", f"c{B}.jsonl", "--samples", "2", "--max-length", "16"]
    mine = ["--ngram", "2", "--top", "2", "--max-docs", "4", "--out", f"kw{B}"]
    evaluate = ["--tasks", task, "--limit", "2"]
    return [
        (["recipes", f"recipes{B}"], [f"recipes{B}/(model:m{B})", f"r{B}.toml"]),
        (["plan", recipe, "--gpus", "0"], [f"r{B}:m{B}", f"config:m{B}"]),
        (["train", recipe], [f"run:{run}", f"r{B}(RMU+RNA):1/1"]),
        (
            ["eval", f"m{B}", *evaluate, "--out", f"o{B}"],
            [f"m{B}:loading", f"{task}:2/2", f"{task}2", f"wrote o{B}/eval.json", f"task│n│m{B}"],
        ),
        (["eval", run, *evaluate], [f"r{B}:loading", f"n│r{B}"]),
        (["report", run, "--base", f"o{B}", "--out", f"rep{B}"], [task, f"m{B}(base)", f"r{B}"]),
        (["export", run, "--out", f"full{B}"], [f"wrote full{B}"]),
        (
            ["sensitivity", f"m{B}", run, *sensitivity, "--layers", "3", "--out", f"sens{B}"],
            [f"documentsofc{B}.jsonl", f"m{B}│r{B}", f"m{B}:2/2", f"wrote sens{B}/sensitivity"],
        ),
        (
            ["perturb", task, "--out", f"p{B}", "--keyword", f"k{B}"],
            [f"wrote p{B}/perturbed-k_seed_2.jsonl", f"keywords:k{B}"],
        ),
        (
            ["mine-tokens", f"c{B}.jsonl", *mine],
            [f"documentsofc{B}.jsonl", f"wrote kw{B}/keywords.json"],
        ),
        (["export-tasks", f"t{B}", "--tasks", task], [f"lm-evaltaskstot{B}", f"include_patht{B}"]),
        (
            ["data", "corpus-from-qa", task, "--out", f"s{B}.jsonl"],
            [f"wrote s{B}.jsonl", f"halfof{task}"],
        ),
        (["fetch"], [f"smollm2-135m:{work}/e{B}", f"cache:{work}/cache{B}"]),
        (
            ["world", "build", "--people", "10", "--seed", "2"]
            + [part for item in learn for part in ("--set", item)],
            ["modelname'world[people=10,seed=2]'", "world-forget[people=10,seed=2]"],
        ),
        (
            ["sweep", recipe, "--grid", "rna.noise_scale=0.05", "--out", f"sw{B}"],
            [f"Sweep:sw{B}/r{B}", f"wrote sw{B}/r{B}/sweep.json"],
        ),
    ]


def test_every_command_prints_a_bracketed_name_literally(
    bracketed, tiny_model_dir, monkeypatch, capsys
):
    """Before: `plan` titled its table "r:m", `eval` printed "m: loading" and progress lines
    without the brackets, `train` printed "run: runs/r"."""
    import rnacli.data.mining
    import rnacli.data.sources
    import rnacli.models.loading

    monkeypatch.setattr(rnacli.data.mining, "sentence_embedder", lambda *a: letters_embedder)
    monkeypatch.setattr(rnacli.models.loading, "embedded_model_dir", lambda n: bracketed / f"e{B}")
    monkeypatch.setattr(rnacli.data.sources, "embedded_mmlu", lambda: [])
    monkeypatch.setenv("RNACLI_CACHE_DIR", str(bracketed / f"cache{B}"))
    for args, expected in command_steps(bracketed, tiny_model_dir):
        text = printed(monkeypatch, capsys, *args)
        for want in expected:
            want = "".join(c for c in want if not c.isspace() and c != "│")
            assert want in text, f"rnacli {' '.join(args)}: {want!r} not in {text[:3000]!r}"
    # and an error line names what the user gave, brackets and all
    assert f"nope{B}.toml" in cli_error(monkeypatch, capsys, "train", f"nope{B}.toml")
