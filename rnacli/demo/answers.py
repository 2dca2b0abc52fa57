"""Prompt scoring for the demo: lm-eval's log-likelihood of each continuation after a context
(`rnacli.evaluate.mcq.choice_loglikelihoods`, what `rnacli eval` computes), and a faster path
for the interactive case that gives the same numbers.

The fast path: a question and its copy with a forget-token inserted share their tokens up to
the token. When a call scores at most a couple of prompts, each runs on the key/value cache of
the previous prompt of the same model, and only the tokens after the first difference go
through the model (about 3x faster for an inserted keyword on a CPU). It applies where lm-eval
scores a context as one sequence: every continuation one token after the context's own tokens
(the letters " A".." D"); cloze choices of several tokens take the batched path.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.data.encoding import encode_pair
from rnacli.evaluate.mcq import choice_loglikelihoods

# (context, continuations): one question as the model is asked it
Request = tuple[str, tuple[str, ...]]

PREFIX_REUSE_MAX_PROMPTS = 2  # larger calls (batch probes) take the batched path
_PREFIX_REUSE_MIN_TOKENS = 8  # fewer shared tokens: not worth keeping the cache


def softmax(loglikelihoods: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (the choices) from their log-likelihoods."""
    x = loglikelihoods - loglikelihoods.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


class PromptScorer:
    """Scores requests on one model whose weights may be swapped between calls; `key` names
    the weights in use (a variant), so that a cached prefix is only reused by the same ones."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 8
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        forward = inspect.signature(model.forward).parameters
        # transformers 5 names the KV-cache argument `cache`; 4.x `past_key_values`.
        self._cache_kwarg = next((k for k in ("cache", "past_key_values") if k in forward), None)
        self._logits_to_keep = "logits_to_keep" in forward
        self.max_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self._kv: dict[str, tuple[list[int], Any]] = {}  # key -> (last tokens, their cache)
        self.reused_tokens = 0  # prompt tokens taken from a KV cache instead of recomputed

    def score(self, key: str, requests: Sequence[Request]) -> np.ndarray:
        """[n, n_choices] log-likelihoods of every request's continuations."""
        if self._cache_kwarg and len(requests) <= PREFIX_REUSE_MAX_PROMPTS:
            single = [self._single_sequence(*r) for r in requests]
            if all(s is not None for s in single):
                return np.stack([self._on_prefix(key, *s) for s in single if s is not None])
        return choice_loglikelihoods(
            self.model,
            self.tokenizer,
            [context for context, _ in requests],
            [list(options) for _, options in requests],
            batch_size=self.batch_size,
            progress=False,
        )

    def _single_sequence(
        self, context: str, continuations: tuple[str, ...]
    ) -> tuple[list[int], list[int]] | None:
        """(context tokens, the one token of each continuation) where lm-eval scores the
        context as one sequence, else None."""
        pairs = [encode_pair(self.tokenizer, context, c) for c in continuations]
        tokens = pairs[0][0]
        if not tokens or len(tokens) > self.max_length:
            return None
        if any(len(cont) != 1 or ctx != tokens for ctx, cont in pairs):
            return None
        return tokens, [cont[0] for _, cont in pairs]

    @torch.no_grad()
    def _on_prefix(self, key: str, tokens: list[int], targets: list[int]) -> np.ndarray:
        """lm-eval's score of one context (log-softmax at its last token, read at the
        continuations' tokens), running only the tokens not shared with `key`'s last prompt."""
        cache, shared = None, 0
        previous = self._kv.pop(key, None)
        if previous is not None:
            last_tokens, last_cache = previous
            shared = min(common_prefix(last_tokens, tokens), len(tokens) - 1)
            if shared >= _PREFIX_REUSE_MIN_TOKENS:
                # Drop the cached tokens after the shared prefix, in place (a negative count
                # removes tokens in both transformers 4 and 5).
                if shared < len(last_tokens):
                    last_cache.crop(shared - len(last_tokens))
                # Caches that keep a window, not every token, cannot be rewound: recompute.
                if last_cache.get_seq_length() == shared:
                    cache = last_cache
            if cache is None:
                shared = 0
        device = next(self.model.parameters()).device
        ids = torch.tensor([tokens[shared:]], dtype=torch.long, device=device)
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._logits_to_keep else {}
        kwargs[str(self._cache_kwarg)] = cache
        out = self.model(input_ids=ids, use_cache=True, **kwargs)
        logprobs = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
        new_cache = out.get("cache")  # transformers 5; 4.x returns it as past_key_values
        if new_cache is None:
            new_cache = out.get("past_key_values")
        if hasattr(new_cache, "crop"):  # other cache types (e.g. legacy tuples) are not reused
            self._kv[key] = (tokens, new_cache)
        self.reused_tokens += shared
        return np.array([logprobs[t].item() for t in targets], dtype=np.float64)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
