import numpy as np
import pytest
import torch

from rnacli.evaluate.mcq import choice_loglikelihoods, evaluate_mcq
from rnacli.evaluate.prompts import prompt, question_text
from tests.conftest import qa_rows

DESC = "The following are multiple choice questions (with answers) about {subject}.\n\n"


def manual_loglikelihood(model, tok, context: str, continuation: str) -> float:
    """What lm-eval computes, one full forward per (context, continuation)."""
    whole = tok(context + continuation)["input_ids"]
    ctx = tok(context)["input_ids"]
    cont = whole[len(ctx) :]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits[0]
    logprobs = torch.log_softmax(logits.float(), -1)
    return sum(logprobs[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))


def test_prompt_is_lm_eval_format():
    rec = {
        "question": "  What?  ",
        "choices": ["w", "x", "y", "z"],
        "answer": 0,
        "subject": "college_biology",
    }
    assert prompt(rec, DESC) == (
        "The following are multiple choice questions (with answers) about college biology."
        "\n\nWhat?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    )
    assert question_text(rec).endswith("\nAnswer:")


def test_loglikelihoods_match_one_forward_per_choice(tiny):
    model, tok = tiny
    records = qa_rows(7)
    contexts = [prompt(r, DESC) for r in records]
    got = choice_loglikelihoods(model, tok, contexts, batch_size=3)
    for i, context in enumerate(contexts):
        for k, letter in enumerate("ABCD"):
            assert got[i, k] == pytest.approx(
                manual_loglikelihood(model, tok, context, f" {letter}"), abs=1e-4
            )


def test_multi_token_continuations_take_the_general_path(tiny):
    model, tok = tiny
    contexts = ["What is the capital of France?", "Viruses replicate inside"]
    conts = (" Paris", " London Berlin", " host cells", " Madrid")
    assert any(len(tok(c)["input_ids"]) > 1 for c in conts)
    got = choice_loglikelihoods(model, tok, contexts, conts, batch_size=2)
    for i, context in enumerate(contexts):
        for k, cont in enumerate(conts):
            assert got[i, k] == pytest.approx(
                manual_loglikelihood(model, tok, context, cont), abs=1e-4
            )


def test_batch_size_does_not_change_predictions(tiny):
    model, tok = tiny
    records = qa_rows(12)
    one = evaluate_mcq(model, tok, records, DESC, batch_size=1)
    many = evaluate_mcq(model, tok, records, DESC, batch_size=5)
    assert one.predictions == many.predictions
    np.testing.assert_allclose(one.loglikelihoods, many.loglikelihoods, atol=1e-4)
    correct = [p == r["answer"] for p, r in zip(one.predictions, records, strict=True)]
    assert one.acc == sum(correct) / len(correct)
    assert one.n == 12
