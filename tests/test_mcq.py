import numpy as np
import pytest
import torch

from rnacli.evaluate.mcq import choice_loglikelihoods, evaluate_mcq
from rnacli.evaluate.prompts import CONTINUATIONS, prompt, question_text
from rnacli.evaluate.scoring import continuation_loglikelihoods, layout_stats
from rnacli.runtime.distributed import Processes
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


# -- how the rows are laid out: one per question, a shared prefix, packing, the fallbacks ------

CLOZE_CONTEXTS = [
    "What is the capital of France?",
    "Viruses replicate inside",
    "Computer security protects systems from",
    "The river runs through the town and the market",
]
CLOZE_CHOICES = [
    [" Paris", " London Berlin", " host cells", " Madrid"],
    [" host cells", " the river", " Paris", " a kernel buffer"],
    [" attacks and exploits", " music", " the", " gene protein cell"],
    [" bridge", " winter garden", " paper table window", " 0 1 2"],
]


def _expected(model, tok, contexts, choices) -> np.ndarray:
    return np.array(
        [
            [manual_loglikelihood(model, tok, c, k) for k in options]
            for c, options in zip(contexts, choices, strict=True)
        ]
    )


def test_one_row_per_question_with_a_shared_prefix(tiny):
    """Letters: the description is computed once, each question is one row; cloze: each
    question's choices branch off its context in one row. Values are lm-eval's."""
    model, tok = tiny
    letters = [prompt(r, DESC) for r in qa_rows(9)]
    stats, plain = (
        layout_stats(model, tok, letters, [list(CONTINUATIONS)] * 9, batch_size=3, share=s)
        for s in (True, False)
    )
    assert stats.prefix >= 10  # "The following are multiple choice questions (with answers)..."
    assert stats.tokens < plain.tokens - 9 * stats.prefix + 9  # every row saved the prefix

    got = continuation_loglikelihoods(model, tok, CLOZE_CONTEXTS, CLOZE_CHOICES, batch_size=2)
    np.testing.assert_allclose(got, _expected(model, tok, CLOZE_CONTEXTS, CLOZE_CHOICES), atol=1e-4)
    tree, per_choice = (
        layout_stats(model, tok, CLOZE_CONTEXTS, CLOZE_CHOICES, batch_size=2, share=s)
        for s in (True, False)
    )
    assert tree.tokens - tree.padding < 0.5 * (per_choice.tokens - per_choice.padding)


def test_length_buckets_cut_padding_and_keep_values(tiny, monkeypatch):
    """A batch takes only rows within 10 % of its longest: less padding than plain sorted
    batches of the same size, and the values do not depend on the batching."""
    model, tok = tiny
    records = qa_rows(12)
    for i, r in enumerate(records):  # a few long questions, many short ones
        r["question"] = " ".join(["the river town market"] * (1 + (i * i) // 8))
    contexts = [prompt(r, DESC) for r in records]
    conts = [list(CONTINUATIONS)] * len(records)
    bucketed = layout_stats(model, tok, contexts, conts, batch_size=4)
    got = continuation_loglikelihoods(model, tok, contexts, conts, batch_size=4)
    monkeypatch.setattr("rnacli.evaluate.scoring.BUCKET", 0.0)  # plain sorted batches
    plain = layout_stats(model, tok, contexts, conts, batch_size=4)
    together = continuation_loglikelihoods(model, tok, contexts, conts, batch_size=4)
    assert bucketed.padding < 0.5 * plain.padding
    one_by_one = np.concatenate(
        [continuation_loglikelihoods(model, tok, [c], conts[:1], batch_size=1) for c in contexts]
    )
    np.testing.assert_allclose(got, one_by_one, atol=1e-5)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_eager_attention_gets_an_additive_mask(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.config._attn_implementation == "eager"
    got = continuation_loglikelihoods(model.eval(), tok, CLOZE_CONTEXTS, CLOZE_CHOICES)
    np.testing.assert_allclose(got, _expected(model, tok, CLOZE_CONTEXTS, CLOZE_CHOICES), atol=1e-4)


def test_other_models_and_long_questions_take_lm_eval_layout(tiny, monkeypatch):
    model, tok = tiny
    # a question longer than the model's window: left-truncated as lm-eval truncates it
    long_context = " ".join(["the river town market"] * 140)  # > 512 positions
    contexts = [long_context, *CLOZE_CONTEXTS[:2]]
    choices = [CLOZE_CHOICES[0], *CLOZE_CHOICES[:2]]
    got = continuation_loglikelihoods(model, tok, contexts, choices, batch_size=2)
    limit = model.config.max_position_embeddings
    assert len(tok(long_context)["input_ids"]) > limit
    for k, cont in enumerate(choices[0]):
        ctx = tok(long_context)["input_ids"]
        whole = tok(long_context + cont)["input_ids"]
        tokens = (ctx + whole[len(ctx) :])[-(limit + 1) :]
        n_cont = len(whole) - len(ctx)
        with torch.no_grad():
            logits = model(torch.tensor([tokens[:-1]])).logits[0]
        lp = torch.log_softmax(logits.float(), -1)
        first = len(tokens) - 1 - n_cont
        expected = sum(lp[first + j, t].item() for j, t in enumerate(tokens[-n_cont:]))
        assert got[0, k] == pytest.approx(expected, abs=1e-4)
    np.testing.assert_allclose(got[1:], _expected(model, tok, contexts[1:], choices[1:]), atol=1e-4)
    # an architecture outside PLAIN_DECODERS: one sequence per choice, nothing shared
    monkeypatch.setattr(model.config, "model_type", "gpt2")
    stats = layout_stats(model, tok, CLOZE_CONTEXTS, CLOZE_CHOICES)
    assert stats.prefix == 0 and stats.tokens >= sum(
        len(tok(c)["input_ids"]) * 4 for c in CLOZE_CONTEXTS
    )
    got = continuation_loglikelihoods(model, tok, CLOZE_CONTEXTS, CLOZE_CHOICES)
    np.testing.assert_allclose(got, _expected(model, tok, CLOZE_CONTEXTS, CLOZE_CHOICES), atol=1e-4)


class _Share(Processes):
    """One process's view of a two-process run, without a process group: the gather returns
    only its own values."""

    def all_gather(self, obj):
        return [obj]


@pytest.mark.parametrize("cloze", [False, True])
def test_each_process_scores_its_batches_and_the_shares_add_up(tiny, cloze):
    model, tok = tiny
    if cloze:
        contexts, choices = CLOZE_CONTEXTS * 3, CLOZE_CHOICES * 3
    else:
        contexts = [prompt(r, DESC) for r in qa_rows(12)]
        choices = [list(CONTINUATIONS)] * 12
    whole = continuation_loglikelihoods(model, tok, contexts, choices, batch_size=2)
    shares = [
        continuation_loglikelihoods(
            model, tok, contexts, choices, batch_size=2, processes=_Share(rank, 2)
        )
        for rank in (0, 1)
    ]
    assert all((s != 0).any() for s in shares)  # both did some of the work
    assert not ((shares[0] != 0) & (shares[1] != 0)).any()  # and none twice
    assert np.array_equal(shares[0] + shares[1], whole)  # bit for bit
