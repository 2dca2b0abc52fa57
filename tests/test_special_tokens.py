"""Tokenizers that add special tokens around every text (issue 21.3): a BOS before it, and
with `add_eos_token=True` (common for Llama-family tokenizers) or a post-processor
"$A <eos>", an EOS after it. A context is meant to be continued: evaluation and training never
see the appended EOS, so scores and batches equal those of the same tokenizer without it, and
the lm-eval backend (which keeps it) is flagged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

from rnacli.data.batches import document_batch, preference_batches
from rnacli.data.encoding import added_specials, encode_context, encode_pair, encode_text
from rnacli.evaluate.mcq import choice_loglikelihoods
from rnacli.evaluate.prompts import CONTINUATIONS
from rnacli.evaluate.runner import backend_caveats
from tests.conftest import qa_rows, run_cli
from tests.tiny import build_tokenizer

SPECIAL = "<|endoftext|>"
CONTEXTS = [
    "The following are multiple choice questions (with answers) about biology.\n\n"
    "What is the capital of France?\nA. Paris\nB. London\nC. Berlin\nD. Madrid\nAnswer:",
    "Viruses replicate inside host",  # cloze: the choices continue it
    "the river is ",  # a trailing space moves into the continuation
]
CLOZE = [" cells", " code", " memory", " the market"]


def with_specials(bos: bool, eos: bool) -> PreTrainedTokenizerFast:
    """The tiny tokenizer with `add_bos_token` / `add_eos_token` set as asked."""
    plain = build_tokenizer()
    return PreTrainedTokenizerFast(
        tokenizer_object=plain._tokenizer,
        eos_token=SPECIAL,
        bos_token=SPECIAL,
        pad_token=SPECIAL,
        add_bos_token=bos,
        add_eos_token=eos,
    )


def eos_post_processor() -> PreTrainedTokenizerFast:
    """The tiny tokenizer with a post-processor "$A <eos>" (no BOS): the other way to do it."""
    tok = build_tokenizer()
    special = tok.convert_tokens_to_ids(SPECIAL)
    tok._tokenizer.post_processor = TemplateProcessing(
        single=f"$A {SPECIAL}",
        pair=f"$A {SPECIAL} $B {SPECIAL}",
        special_tokens=[(SPECIAL, special)],
    )
    return tok


# (a tokenizer that appends EOS, the same tokenizer without it)
PAIRS = {
    "add_eos_token": lambda: (with_specials(True, True), with_specials(True, False)),
    "template $A <eos>": lambda: (eos_post_processor(), build_tokenizer()),
}


@pytest.fixture(params=sorted(PAIRS))
def tokenizers(request) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    eos, plain = PAIRS[request.param]()
    special = eos.convert_tokens_to_ids(SPECIAL)
    assert eos("a b")["input_ids"][-1] == special != plain("a b")["input_ids"][-1]
    return eos, plain


def test_added_specials_reads_the_prefix_and_the_suffix():
    assert added_specials(build_tokenizer()) == (0, [])
    assert added_specials(with_specials(True, False)) == (1, [])
    assert added_specials(with_specials(True, True)) == (1, [0])
    assert added_specials(eos_post_processor()) == (0, [0])


def test_contexts_prompts_and_documents_carry_no_appended_eos(tokenizers):
    eos, plain = tokenizers
    for context in CONTEXTS:
        assert encode_context(eos, context) == plain(context)["input_ids"]
        for continuation in (*CONTINUATIONS, *CLOZE):
            assert encode_pair(eos, context, continuation) == encode_pair(
                plain, context, continuation
            )
        assert encode_text(eos, context) == encode_text(plain, context)
    # a text's own final end-of-text is kept: only the one the tokenizer added goes
    assert encode_text(eos, "the river" + SPECIAL)[-1] == eos.convert_tokens_to_ids(SPECIAL)


def test_scores_equal_those_without_the_eos(tiny, tokenizers):
    """Before: every context ended in EOS, so choices were scored after an end-of-text."""
    model, _ = tiny
    eos, plain = tokenizers
    letters = [
        choice_loglikelihoods(model, t, CONTEXTS[:1] * 3, progress=False) for t in tokenizers
    ]
    np.testing.assert_allclose(letters[0], letters[1], atol=1e-5)
    cloze = [
        choice_loglikelihoods(model, t, CONTEXTS[1:], [CLOZE, CLOZE], progress=False)
        for t in (eos, plain)
    ]
    np.testing.assert_allclose(cloze[0], cloze[1], atol=1e-5)


def test_training_batches_equal_those_without_the_eos(tokenizers):
    """Prompts, completions and plain documents, and DPO's pairs: the same tokens and targets
    (a plain document's BOS is still never a target)."""
    eos, plain = tokenizers
    docs = [("What is the capital of France?", " Paris"), ("the river is ", "wide"), "the town"]
    for max_length in (64, 6):
        one, two = (document_batch(t, docs, max_length) for t in (eos, plain))
        assert torch.equal(one.input_ids, two.input_ids)
        assert torch.equal(one.target_mask, two.target_mask)
        refusals = ["I don't know."] * len(docs)
        with_eos, without = (
            preference_batches(t, docs, refusals, max_length, 2) for t in tokenizers
        )
        for a, b in zip(with_eos, without, strict=True):
            assert torch.equal(a.input_ids, b.input_ids)
            assert torch.equal(a.target_mask, b.target_mask)


def test_the_lm_eval_backend_is_flagged_for_such_a_tokenizer(tokenizers, capsys):
    eos, plain = tokenizers
    assert backend_caveats(plain, "lm-eval", "m") == []
    assert backend_caveats(eos, "native", "m") == []
    [caveat] = backend_caveats(eos, "lm-eval", "m[1]")
    assert "appends special tokens" in caveat and "--backend native" in caveat
    assert "warning: m[1]: the tokenizer appends" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("backend", ["native", "lm-eval"])
def test_eval_of_a_model_whose_tokenizer_appends_eos(
    tmp_path, tiny_model_dir, monkeypatch, capsys, backend
):
    """`rnacli eval`: the native backend predicts what it predicts without the EOS; the
    lm-eval backend's entry carries `caveats` and a warning line says why."""
    if backend == "lm-eval":
        pytest.importorskip("lm_eval")
    model_dir = tmp_path / "eos-model"
    shutil.copytree(tiny_model_dir, model_dir)
    with_specials(True, True).save_pretrained(model_dir)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in qa_rows(4)))

    def evaluate(model, out):
        args = ["eval", model, "--tasks", f"qa={qa}", "--backend", backend, "--out", out]
        code, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0, err
        [entry] = json.loads((out / "eval.json").read_text())["models"]
        return entry, err

    flagged, err = evaluate(model_dir, tmp_path / "eos")
    if backend == "lm-eval":
        assert flagged["caveats"] and "appends special tokens" in flagged["caveats"][0]
        assert "warning: eos-model: the tokenizer appends special tokens" in err
        return
    assert "caveats" not in flagged and "warning" not in err
    bos_only = tmp_path / "bos-model"
    shutil.copytree(tiny_model_dir, bos_only)
    with_specials(True, False).save_pretrained(bos_only)
    plain, _ = evaluate(bos_only, tmp_path / "bos")
    assert flagged["tasks"]["qa"]["predictions"] == plain["tasks"]["qa"]["predictions"]
