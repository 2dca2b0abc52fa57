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


# ---------------------------------------------------------------- a token spanning the join


@pytest.fixture(scope="module")
def spanning():
    """A tiny model whose vocabulary holds one token for ': C' (an added token), so that
    'Answer: C' encodes as [..., 'Answer', ': C'] while 'Answer:' ends in ':'."""
    from tests.tiny import build_model, build_tokenizer

    tok = build_tokenizer()
    tok.add_tokens([": C"])
    return build_model(len(tok), layers=2, seed=3), tok


def test_a_token_spanning_the_join_leaves_the_continuation_its_own_tokens(spanning):
    from rnacli.data.encoding import encode_pair

    _, tok = spanning
    context = prompt(qa_rows(1)[0], DESC)
    assert tok(context + " C")["input_ids"][-1] == tok.convert_tokens_to_ids(": C")
    ctx, cont = encode_pair(tok, context, " C")
    assert ctx == tok(context)["input_ids"]  # the context is its own encoding, always
    assert cont == tok(" C", add_special_tokens=False)["input_ids"] and cont
    for letter in " A", " B", " D":  # no spanning token: the whole string, cut (lm-eval)
        whole = tok(context + letter)["input_ids"]
        assert encode_pair(tok, context, letter) == (whole[: len(ctx)], whole[len(ctx) :])


def test_scores_with_a_spanning_token_are_the_same_at_every_batch_size(spanning):
    """Before the fix: batch 1 and 4 raised IndexError, batch 32 scored ' C' 0.0 (its
    largest possible log-likelihood) and so predicted C for every question."""
    model, tok = spanning
    contexts = [prompt(r, DESC) for r in qa_rows(6)]
    runs = [choice_loglikelihoods(model, tok, contexts, batch_size=b) for b in (1, 4, 32)]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], atol=1e-5)
    c_token = tok(" C", add_special_tokens=False)["input_ids"]
    for q, context in enumerate(contexts):
        ctx = tok(context)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ctx + c_token])).logits[0]
        expected = torch.log_softmax(logits.float(), -1)[len(ctx) - 1, c_token[0]].item()
        assert runs[0][q, 2] == pytest.approx(expected, abs=1e-5)
        assert runs[0][q, 2] < 0
    assert set(np.argmax(runs[0], axis=1)) != {2}


def test_a_continuation_without_a_token_is_a_clear_error(tiny):
    from rnacli.data.encoding import encode_pair
    from rnacli.errors import RnacliError

    _, tok = tiny
    with pytest.raises(RnacliError, match=r"the continuation '' of 'Answer:' has no token"):
        encode_pair(tok, "Answer:", "")
