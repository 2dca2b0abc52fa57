"""Hostile and odd inputs give one clear line and exit code 2, never a traceback (issue 15,
part 2); absurd recipe values are refused at validation (part 1)."""

from __future__ import annotations

import json

import pytest

from rnacli.data import load_corpus, load_qa
from rnacli.errors import RnacliError
from rnacli.recipe import load_recipe
from tests.conftest import cli_error, qa_rows

RECIPE = """
[data]
forget = ["bio.jsonl"]
[method]
name = "rmu"
"""


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=inf", "train.lr: Input should be a finite number"),
        ("train.lr=nan", "train.lr: Input should be a finite number"),
        ("train.lr=10.0", "train.lr: Input should be less than or equal to 1"),
        ("method.alpha=nan", "method.alpha: Input should be a finite number"),
        ("method.alpha=[1e9]", "method.alpha: retain weights must be <= 1e+06"),
        ("data.batch_size=1000000000", "data.batch_size: Input should be less than or equal"),
        ("data.batch_size=1e9", "data.batch_size: Input should be a valid integer"),
        ("train.steps=100000000000000000000000", "train.steps: Input should be less than or"),
        ("train.steps=1e23", "train.steps: Input should be a valid integer"),
        ("rna.noise_scale=inf", "rna.noise_scale: Input should be a finite number"),
        ("method.steering_coeff=-inf", "method.steering_coeff: Input should be a finite number"),
        ("data.forget_max_length=10000000", "forget_max_length: must be <= 1048576 tokens"),
    ],
)
def test_absurd_recipe_values_are_one_line_naming_file_and_key(tmp_path, override, message):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE)
    with pytest.raises(RnacliError, match="^" + str(path)) as error:
        load_recipe(path, [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_recipe_that_is_a_folder_or_not_utf8(tmp_path, monkeypatch, capsys):
    with pytest.raises(RnacliError, match="is a folder, expected a recipe file"):
        load_recipe(tmp_path)
    path = tmp_path / "r.toml"
    path.write_bytes(RECIPE.encode() + b'description = "caf\xe9"\n')
    err = cli_error(monkeypatch, capsys, "train", str(path))
    assert f"{path}:6: not UTF-8 text (byte 0xe9" in err
    path.write_bytes(b"\xef\xbb\xbf" + RECIPE.encode())  # a BOM, as Windows editors write
    assert load_recipe(path).method.name == "rmu"


# --------------------------------------------------------------------------- data files


def test_a_utf8_bom_simply_works(tmp_path):
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in qa_rows(3)).encode())
    assert [r["answer"] for r in load_qa(str(jsonl))] == [0, 1, 2]
    csv = tmp_path / "qa.csv"
    rows = ["question,A,B,C,D,answer", "Which?,a,b,c,d,B", "Other?,e,f,g,h,D"]
    csv.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode())
    assert [r["answer"] for r in load_qa(str(csv))] == [1, 3]
    txt = tmp_path / "c.txt"
    txt.write_bytes(b"\xef\xbb\xbfFirst document.\nSecond document.\n")
    assert load_corpus(str(txt)) == ["First document.", "Second document."]


def test_a_data_file_that_is_not_utf8(tmp_path, monkeypatch, capsys):
    qa = tmp_path / "qa.jsonl"
    lines = [json.dumps(r) for r in qa_rows(2)]
    qa.write_bytes(lines[0].encode() + b"\n" + lines[1].encode().replace(b"Question", b"Qu\xffs"))
    with pytest.raises(RnacliError, match=r"qa.jsonl:2: not UTF-8 text \(byte 0xff"):
        load_qa(str(qa))
    err = cli_error(monkeypatch, capsys, "perturb", str(qa), "--out", str(tmp_path / "p"))
    assert "qa.jsonl:2: not UTF-8" in err


def test_a_qa_file_error_comes_first(tmp_path, tiny_model_dir, monkeypatch, capsys):
    qa = tmp_path / "qa.jsonl"
    rows = qa_rows(3)
    rows[2]["choices"] = ["only", "three", "choices"]
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = cli_error(monkeypatch, capsys, "eval", str(tiny_model_dir), "--tasks", str(qa))
    assert err.startswith(f"error: {qa}:3: expected 4 choices, got 3")


def test_a_qa_set_where_a_corpus_is_expected_says_how_to_make_one(tmp_path, fake_data_dir,
                                                                 monkeypatch, capsys):  # fmt: skip
    monkeypatch.setenv("RNACLI_DATA_DIR", str(fake_data_dir))
    with pytest.raises(RnacliError, match=r"'mmlu:anatomy' is a QA set .*qasplit:mmlu:anatomy@"):
        load_corpus("mmlu:anatomy")
    with pytest.raises(RnacliError, match=r"'wmdp-bio' is a QA set .*qasplit:wmdp-bio@train"):
        load_corpus("wmdp-bio")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in qa_rows(2)))
    with pytest.raises(RnacliError, match=rf"qa.jsonl:1: a QA row .*qasplit:{qa}@train"):
        load_corpus(str(qa))
    err = cli_error(
        monkeypatch,
        capsys,
        "sensitivity",
        "x",
        "--source",
        "mmlu:anatomy",
        "--out",
        str(tmp_path / "s"),
    )
    assert "is a QA set" in err and "qasplit:mmlu:anatomy@train" in err


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["--limit", "0"], "--limit 0: must be at least 1"),
        (["--keyword", ""], "--keyword '': a forget keyword is one non-blank line of text"),
        (["--keyword", "two\nlines"], "a forget keyword is one non-blank line"),
        (["--inference-noise", "nan"], "--inference-noise nan: expected a finite number >= 0"),
    ],
)
def test_bad_options_name_the_option(tiny_model_dir, qa_file, monkeypatch, capsys, args, message):
    err = cli_error(
        monkeypatch, capsys, "eval", str(tiny_model_dir), "--tasks", str(qa_file), *args
    )
    assert message in err


def test_an_empty_qa_file_is_an_error_not_silence(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    err = cli_error(monkeypatch, capsys, "perturb", str(empty), "--out", str(tmp_path / "p"))
    assert "no questions to perturb" in err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
    err = cli_error(
        monkeypatch,
        capsys,
        "data",
        "corpus-from-qa",
        str(empty),
        "--out",
        str(tmp_path / "c.jsonl"),
    )
    assert "no questions" in err and not (tmp_path / "c.jsonl").exists()
