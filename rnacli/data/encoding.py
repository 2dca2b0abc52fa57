"""One way to turn a (context, continuation) pair into tokens, for evaluation and training alike.

lm-eval's `_encode_pair`: trailing whitespace of the context moves to the continuation (so
"born in " + "Oslo" is scored as " Oslo", the token the model would write), the whole string is
encoded, and the continuation is what follows the context's own token count (so merges across
the join match lm-eval's). The evaluator, the training batches of (prompt, completion)
documents and world learning all use it, so that training scores exactly the tokens that
evaluation reads.
"""

from __future__ import annotations

from transformers.tokenization_utils_base import PreTrainedTokenizerBase


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens), as lm-eval 0.4 encodes a loglikelihood request."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation)["input_ids"]
    ctx = tokenizer(context)["input_ids"]
    return ctx, whole[len(ctx) :]
