"""One way to turn a (context, continuation) pair into tokens, for evaluation and training alike.

lm-eval's `_encode_pair`: trailing whitespace of the context moves to the continuation (so
"born in " + "Oslo" is scored as " Oslo", the token the model would write), the whole string is
encoded, and the continuation is what follows the context's own token count (so merges across
the join match lm-eval's). The evaluator, the training batches of (prompt, completion)
documents and world learning all use it, so that training scores exactly the tokens that
evaluation reads.

One case lm-eval 0.4 gets wrong: a token that spans the join (a vocabulary with one token for
": C" after the context "...Answer:"). The whole string's tokens then do not start with the
context's, and cutting at the context's length leaves the continuation with no token at all
(lm-eval asserts, or scores 0.0). As lm-eval's later fix does, the continuation is then encoded
on its own after the context's tokens. A continuation that still has no token is an error
naming the text.

A tokenizer may add special tokens around every text: a leading BOS (kept: the model was
trained with it) and, with `add_eos_token=True` or a post-processor "$A <eos>", a trailing
EOS. A context is meant to be continued, so the trailing ones are dropped everywhere here
(`added_specials`): a choice is never scored after an end-of-text, and training sees the
tokens it would see from the same tokenizer without the EOS. lm-eval 0.4 keeps that EOS
(`appends_specials` lets its backend flag such scores).
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.errors import RnacliError


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens), as lm-eval encodes a loglikelihood request;
    the context tokens are always the context's own encoding. Raises RnacliError when the
    continuation gets no token."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    suffix = added_specials(tokenizer)[1]
    whole = _strip_suffix(tokenizer(context + continuation)["input_ids"], suffix)
    ctx = _strip_suffix(tokenizer(context)["input_ids"], suffix)
    if whole[: len(ctx)] == ctx:
        cont = whole[len(ctx) :]
    else:  # a token spans the join: score the continuation's own tokens after the context
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if not cont:
        raise RnacliError(
            f"the continuation {continuation!r} of {_tail(context)!r} has no token of its own "
            "(empty text, or the tokenizer drops it); it cannot be scored"
        )
    return ctx, cont


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """A plain document's tokens, trailing whitespace and trailing added special tokens left
    out: a stray final space or newline would be scored as a token of its own (" " after the
    last word), an appended EOS as the end of a text that a truncation may have cut."""
    return _strip_suffix(tokenizer(text.rstrip())["input_ids"], added_specials(tokenizer)[1])


def encode_context(tokenizer: PreTrainedTokenizerBase, context: str) -> list[int]:
    """A context's tokens as `encode_pair` gives them (its leading special tokens, never a
    trailing one the tokenizer adds), for callers that only count or cache contexts."""
    return _strip_suffix(tokenizer(context)["input_ids"], added_specials(tokenizer)[1])


def added_specials(tokenizer: PreTrainedTokenizerBase) -> tuple[int, list[int]]:
    """(how many special tokens the tokenizer puts before a text, the ids it puts after it),
    read from one short text encoded with and without them. Where the text's own tokens are
    not found inside the encoding with specials (a tokenizer whose specials change the text's
    tokens), the leading and trailing runs of special ids are taken."""
    with_specials = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    n = len(plain)
    for start in range(len(with_specials) - n + 1):
        if with_specials[start : start + n] == plain:
            return start, with_specials[start + n :]
    special = set(tokenizer.all_special_ids)
    lead = next((i for i, t in enumerate(with_specials) if t not in special), 0)
    trail = next((i for i, t in enumerate(reversed(with_specials)) if t not in special), 0)
    return lead, with_specials[len(with_specials) - trail :]


def appends_specials(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer adds special tokens after every text (an EOS, `add_eos_token`)."""
    return bool(added_specials(tokenizer)[1])


def _strip_suffix(ids: list[int], suffix: Sequence[int]) -> list[int]:
    """`ids` without `suffix` at its end (once: a text's own final EOS stays)."""
    n = len(suffix)
    return ids[:-n] if n and len(ids) > n and ids[-n:] == list(suffix) else ids


def _tail(text: str, n: int = 60) -> str:
    return text if len(text) <= n else "…" + text[-n:]
