from __future__ import annotations

import json
import os
from pathlib import Path

# Set before transformers/huggingface_hub are imported: they read these once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest

from tests.tiny import save_tiny

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No Hub, no user cache, no shared data folder unless a test asks for them."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("RNACLI_QUIET", "1")
    monkeypatch.setenv("RNACLI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("RNACLI_DATA_DIR", raising=False)
    from rnacli.data.sources import _load_corpus_cached, _load_qa_cached

    _load_qa_cached.cache_clear()
    _load_corpus_cached.cache_clear()
    yield
    _load_qa_cached.cache_clear()
    _load_corpus_cached.cache_clear()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    from rnacli.models.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Run `rnacli ARGS` in-process as the console script does: (exit code, stderr with its
    whitespace collapsed). A traceback on stderr fails the test."""
    import sys

    from rnacli.cli import main

    monkeypatch.setattr(sys, "argv", ["rnacli", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, " ".join(err.split())


def cli_error(monkeypatch, capsys, *args) -> str:
    """`run_cli` for a command that must fail with one error line and exit code 2."""
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, err
    return err


def qa_rows(n: int = 12) -> list[dict]:
    subjects = ["college_biology", "computer_security", "virology"]
    return [
        {
            "question": f"Question number {i}: which answer is correct?",
            "choices": [f"choice {i} a", f"choice {i} b", f"choice {i} c", f"choice {i} d"],
            "answer": i % 4,
            "subject": subjects[i % 3],
        }
        for i in range(n)
    ]


@pytest.fixture
def qa_file(tmp_path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in qa_rows()))
    return path


@pytest.fixture
def fake_data_dir(tmp_path) -> Path:
    """A data folder in the layout of ../shared/data, a few rows per file."""
    root = tmp_path / "data"
    (root / "wmdp").mkdir(parents=True)
    rows = [{k: r[k] for k in ("question", "choices", "answer")} for r in qa_rows(6)]
    (root / "wmdp" / "bio_questions.json").write_text(json.dumps(rows))
    (root / "wmdp" / "cyber_questions.json").write_text(json.dumps(rows[:4]))
    test = root / "mmlu" / "test"
    test.mkdir(parents=True)
    for subject in ("college_biology", "anatomy"):
        lines = ["question,choice0,choice1,choice2,choice3,answer"]
        lines += [f'"{subject} q{i}?",a{i},b{i},c{i},d{i},{i % 4}' for i in range(5)]
        (test / f"{subject}_test.csv").write_text("\n".join(lines) + "\n")
    (root / "wikitext2").mkdir()
    (root / "wikitext2" / "wiki.test.raw").write_text(" \n = Title = \n \n Some text here . \n")
    (root / "idk").mkdir()
    (root / "idk" / "idontknow.jsonl").write_text("I don't know.\nNo idea.")
    return root


@pytest.fixture
def shared_data(monkeypatch) -> Path:
    """The real public data beside the checkout (../shared/data); skipped where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    monkeypatch.setenv("RNACLI_DATA_DIR", str(SHARED_DATA))
    return SHARED_DATA


_WORDS = [
    "virus",
    "host",
    "cell",
    "protein",
    "gene",
    "membrane",
    "replication",
    "enzyme",
    "sequence",
    "strain",
    "network",
    "exploit",
    "packet",
    "kernel",
    "buffer",
    "server",
    "attack",
    "password",
    "code",
    "memory",
]
_PLAIN = [
    "the",
    "river",
    "town",
    "market",
    "bridge",
    "garden",
    "winter",
    "music",
    "paper",
    "table",
    "window",
    "family",
    "street",
    "morning",
    "story",
    "teacher",
    "mountain",
    "harbor",
]


def _docs(words: list[str], n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(12, 30))) + "." for _ in range(n)]


@pytest.fixture
def corpora(tmp_path) -> dict[str, Path]:
    """Two small forget corpora, a retain corpus and refusal sentences (JSONL/TXT)."""
    paths = {}
    for name, words, n, seed in (
        ("bio", _WORDS[:10], 24, 1),
        ("cyber", _WORDS[10:], 24, 2),
        ("retain", _PLAIN, 40, 3),
    ):
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text(
            "".join(json.dumps({"text": d}) + "\n" for d in _docs(words, n, seed))
        )
    paths["idk"] = tmp_path / "idk.txt"
    paths["idk"].write_text("I don't know.\nNo idea, sorry.\nI cannot answer that.\n")
    return paths


def tiny_recipe(
    model_dir: Path,
    corpora: dict[str, Path],
    method_name: str,
    retain_loss: str | None = None,
    rna: bool = False,
    **sections,
) -> dict:
    """A recipe dict for the tiny model: layer 3, trainable down_proj of layers 1-3."""
    recipe = {
        "model": {"name": str(model_dir), "device": "cpu"},
        "data": {
            "forget": [str(corpora["bio"]), str(corpora["cyber"])],
            "retain": str(corpora["retain"]),
            "refusal": str(corpora["idk"]),
            "forget_max_length": 24,
            "retain_max_length": 24,
            "batch_size": 2,
            "min_chars": 10,
        },
        "method": {"name": method_name, "layer": 3, "alpha": [2.0, 3.0], "prompt_tokens": 4},
        "rna": {"enabled": rna, "noise_scale": 0.05 if rna else 0.0},
        # fp32 unless a test asks for autocast: "auto" would depend on the machine's CPU
        "train": {"steps": 3, "lr": 1e-3, "checkpoint_every": 2, "seed": 0, "autocast": False},
    }
    if retain_loss:
        recipe["method"]["retain_loss"] = retain_loss
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    return recipe
