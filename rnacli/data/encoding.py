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
"""

from __future__ import annotations

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
    whole = tokenizer(context + continuation)["input_ids"]
    ctx = tokenizer(context)["input_ids"]
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
    """A plain document's tokens, trailing whitespace left out: a stray final space or
    newline would be scored as a token of its own (" " after the last word)."""
    return tokenizer(text.rstrip())["input_ids"]


def _tail(text: str, n: int = 60) -> str:
    return text if len(text) <= n else "…" + text[-n:]
