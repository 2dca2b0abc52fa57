"""Log-likelihoods of continuations after contexts, as lm-eval computes them, with every
token that matters computed once.

lm-eval scores a (context, continuation) pair by running context + continuation[:-1] through
the model and summing the log-probs of the continuation's tokens. The same numbers, from fewer
tokens:

1. **One row per question.** A question's choices share its context: the row holds the context
   once, then each choice's continuation (but its last token) as a branch that attends to the
   context and to itself only (a 4D attention mask; a branch's position ids continue from the
   context's end, as in its own sequence). Letter choices (" A".." D", one token each) have no
   branch: all four are read at the context's last position.
2. **A shared prefix.** The leading tokens every question of the call shares (MMLU's "The
   following are multiple choice questions (with answers) about") run once; each batch reads
   their keys and values from a cache instead of recomputing them.
3. **Length buckets**: rows sorted by length, and a batch only takes rows within 10 % of its
   longest, so that little padding is computed (`ScoringStats` counts it: 1.6 % on 200 MMLU
   questions in batches of 4, against 3.6 % for plain sorted batches). Packing several short
   questions into one sequence (block-diagonal masks) was tried and was slower on a CPU: the
   attention of the long packed rows cost more than the padding it saved.
4. The LM head runs only at the positions that predict a continuation token.

Models outside PLAIN_DECODERS or without a custom-mask attention (sdpa, eager), and questions
longer than the model's window, take lm-eval's own layout: one sequence per choice (one per
question for single-token choices), left-truncated as lm-eval truncates.

Under `accelerate launch`/`torchrun`, each process scores every N-th batch and the values are
gathered: the result equals one process's, value for value.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.console import progress_bar
from rnacli.data.encoding import encode_pair
from rnacli.models.forward import PLAIN_DECODERS
from rnacli.runtime.distributed import SINGLE, Processes

MIN_SHARED_PREFIX = 4  # tokens; fewer are not worth a cache
TREE_ATTENTION = ("sdpa", "eager")  # implementations that take a custom 4D mask


@dataclass
class ScoringStats:
    """What a scoring call computed (summed over calls when reused)."""

    forwards: int = 0  # batched forward passes (the shared prefix's not counted)
    tokens: int = 0  # positions computed, padding included
    padding: int = 0  # of which padding
    prefix: int = 0  # tokens of the shared prefix, run once per call

    @property
    def padding_share(self) -> float:
        return self.padding / self.tokens if self.tokens else 0.0


@dataclass
class _Row:
    """One sequence to run: its tokens, their position ids and branch (0: the context, k + 1:
    choice k's continuation), and where each choice's tokens are read."""

    tokens: list[int]
    positions: list[int]
    segments: list[int]
    reads: list[tuple[int, int, list[tuple[int, int]]]]  # (question, choice, [(at, token)])
    tree: bool = False  # runs with the 4D mask on the shared prefix
    done: int = 1  # questions this row completes
    context: int = field(default=0, repr=False)  # context tokens (a tree row)


def _tree_row(q: int, ctx: list[int], conts: list[list[int]]) -> _Row:
    tokens, positions, segments = list(ctx), list(range(len(ctx))), [0] * len(ctx)
    reads = []
    for k, cont in enumerate(conts):
        start = len(tokens)
        branch = cont[:-1]
        tokens += branch
        positions += range(len(ctx), len(ctx) + len(branch))
        segments += [k + 1] * len(branch)
        # token j is predicted at the context's last position (j = 0) or at branch token j - 1
        at = [len(ctx) - 1 if j == 0 else start + j - 1 for j in range(len(cont))]
        reads.append((q, k, list(zip(at, cont, strict=True))))
    return _Row(tokens, positions, segments, reads, tree=True, context=len(ctx))


def _plain_row(tokens: list[int], reads: list[tuple[int, int, list[tuple[int, int]]]]) -> _Row:
    n = len(tokens)
    return _Row(tokens, list(range(n)), [0] * n, reads)


def _rows(
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    max_length: int,
    tree_window: int,
) -> list[_Row]:
    """Rows for every question; tree rows when tree_window > 0 and the question fits in it."""
    rows = []
    for q, (context, options) in enumerate(zip(contexts, continuations, strict=True)):
        pairs = [encode_pair(tokenizer, context, c) for c in options]
        ctx, conts = pairs[0][0], [cont for _, cont in pairs]
        same_context = bool(ctx) and all(c == ctx for c, _ in pairs)
        if same_context and len(ctx) + max(map(len, conts)) - 1 <= tree_window:
            rows.append(_tree_row(q, ctx, conts))
        elif same_context and all(len(c) == 1 for c in conts):
            tokens = ctx[-max_length:]
            at = len(tokens) - 1
            rows.append(_plain_row(tokens, [(q, k, [(at, c[0])]) for k, c in enumerate(conts)]))
        else:  # lm-eval's layout: context + continuation[:-1], left-truncated
            for k, (c, cont) in enumerate(pairs):
                tokens = (c + cont)[-(max_length + 1) :][:-1]
                first = len(tokens) - len(cont)
                row = _plain_row(tokens, [(q, k, [(first + j, t) for j, t in enumerate(cont)])])
                row.done = int(k == len(pairs) - 1)
                rows.append(row)
    return rows


def _shared_prefix(rows: list[_Row]) -> list[int]:
    """The leading tokens of every tree row's context (at least one context token is left to
    each row, whose last position predicts the first continuation token)."""
    tree = [r for r in rows if r.tree]
    if len(tree) < 2:
        return []
    first = tree[0].tokens
    n = min(r.context for r in tree) - 1
    for r in tree[1:]:
        n = next((i for i in range(n) if r.tokens[i] != first[i]), n)
    return first[:n] if n >= MIN_SHARED_PREFIX else []


def _strip(row: _Row, n: int) -> None:
    """Drop the first n tokens of a tree row (they come from the shared prefix's cache)."""
    row.tokens, row.positions, row.segments = row.tokens[n:], row.positions[n:], row.segments[n:]
    row.reads = [(q, k, [(at - n, t) for at, t in read]) for q, k, read in row.reads]


BUCKET = 0.9  # a batch takes rows of at least this share of its longest row's length


def _batches(rows: list[_Row], batch_size: int, bucket: float) -> list[list[_Row]]:
    """Batches of at most batch_size rows, longest first (as lm-eval: the first batch shows at
    once whether memory suffices), each within one length bucket (`bucket` = 0: plain sorted
    batches, as lm-eval makes them). Tree and plain rows (another mask) batch apart."""
    order = sorted(range(len(rows)), key=lambda i: (not rows[i].tree, -len(rows[i].tokens), i))
    batches: list[list[_Row]] = []
    for row in (rows[i] for i in order):
        last = batches[-1] if batches else None
        if (
            last is None
            or len(last) == batch_size
            or last[0].tree != row.tree
            or len(row.tokens) < bucket * len(last[0].tokens)
        ):
            batches.append([row])
        else:
            last.append(row)
    return batches


def _tree_mask(segments: torch.Tensor, prefix: int) -> torch.Tensor:
    """[B, 1, T, prefix + T] boolean mask (True: attend): causal, each branch sees the context
    and itself, padding (segment -1) sees only padding and the context; every token sees the
    shared prefix."""
    n = segments.shape[1]
    index = torch.arange(n, device=segments.device)
    causal = index[None, :] <= index[:, None]
    query, key = segments[:, :, None], segments[:, None, :]
    allowed = causal & ((key == query) | (key == 0))
    shared = torch.ones((*allowed.shape[:2], prefix), dtype=torch.bool, device=segments.device)
    return torch.cat([shared, allowed], dim=-1)[:, None]


class _Scorer:
    """The model's calling conventions, read once per call."""

    def __init__(self, model: PreTrainedModel, pad: int) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.pad = pad
        params = inspect.signature(model.forward).parameters
        self.keep_logits = "logits_to_keep" in params
        self.cache_kwarg = next((k for k in ("cache", "past_key_values") if k in params), None)
        attention = getattr(model.config, "_attn_implementation", None) or "eager"
        self.eager = attention == "eager"
        tree = (
            model.config.model_type in PLAIN_DECODERS
            and attention in TREE_ATTENTION
            and self.cache_kwarg is not None
        )
        self.max_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        window = getattr(model.config, "sliding_window", None) or self.max_length
        self.tree_window = min(self.max_length, window) if tree else 0
        self.prefix: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: keys, values
        self.prefix_length = 0

    def run_prefix(self, tokens: list[int]) -> None:
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        kwargs = {"logits_to_keep": 1} if self.keep_logits else {}
        out = self.model(input_ids=ids, use_cache=True, **kwargs)
        cache = out.get("cache")  # transformers 5; 4.x returns it as past_key_values
        cache = cache if cache is not None else out.get("past_key_values")
        self.prefix = [(layer[0], layer[1]) for layer in cache]
        self.prefix_length = len(tokens)

    def logprobs(self, batch: list[_Row], positions: list[int]) -> torch.Tensor:
        """[B, len(positions), V] log-probs (fp32, on the CPU) at the given row positions."""
        size, width = len(batch), max(len(r.tokens) for r in batch)
        ids = torch.full((size, width), self.pad, dtype=torch.long)
        for i, r in enumerate(batch):  # right padding: real tokens keep their positions
            ids[i, : len(r.tokens)] = torch.tensor(r.tokens)
        kwargs: dict = {}
        if batch[0].tree:
            pos = torch.zeros((size, width), dtype=torch.long)
            seg = torch.full((size, width), -1, dtype=torch.long)
            for i, r in enumerate(batch):
                pos[i, : len(r.tokens)] = torch.tensor(r.positions)
                seg[i, : len(r.tokens)] = torch.tensor(r.segments)
            mask = _tree_mask(seg.to(self.device), self.prefix_length)
            if self.eager:  # additive
                mask = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill(
                    ~mask, torch.finfo(self.dtype).min
                )
            kwargs.update(position_ids=pos.to(self.device), attention_mask=mask)
            if self.prefix:
                from transformers import DynamicCache

                expanded = [
                    (k.expand(size, -1, -1, -1), v.expand(size, -1, -1, -1)) for k, v in self.prefix
                ]
                kwargs[str(self.cache_kwarg)] = DynamicCache(expanded)
        else:
            mask = torch.zeros((size, width), dtype=torch.long)
            for i, r in enumerate(batch):
                mask[i, : len(r.tokens)] = 1
            kwargs["attention_mask"] = mask.to(self.device)
        if self.keep_logits:
            kwargs["logits_to_keep"] = torch.tensor(positions, device=self.device)
        logits = self.model(input_ids=ids.to(self.device), **kwargs).logits
        if not self.keep_logits:
            logits = logits[:, positions]
        return torch.log_softmax(logits.float(), dim=-1).cpu()


def _plan(
    scorer: _Scorer,
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    batch_size: int,
    share: bool = True,
) -> tuple[list[int], list[list[_Row]]]:
    """(shared prefix tokens, batches). `share=False`: lm-eval's layout and batches."""
    n_choices = len(continuations[0]) if continuations else 0
    if any(len(c) != n_choices for c in continuations):
        raise ValueError("every context needs the same number of continuations")
    window = scorer.tree_window if share else 0
    rows = _rows(tokenizer, contexts, continuations, scorer.max_length, window)
    prefix = _shared_prefix(rows)
    for r in rows:
        if r.tree and prefix:
            _strip(r, len(prefix))
    return prefix, _batches(rows, batch_size, BUCKET if share else 0.0)


def _count(stats: ScoringStats, batch: list[_Row]) -> None:
    width = max(len(r.tokens) for r in batch)
    stats.forwards += 1
    stats.tokens += width * len(batch)
    stats.padding += sum(width - len(r.tokens) for r in batch)


def layout_stats(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    *,
    batch_size: int = 16,
    share: bool = True,
) -> ScoringStats:
    """What scoring would compute (nothing runs): rnacli's layout, or with `share=False` one
    sequence per question (single-token choices) or per choice, as lm-eval lays them out."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prefix, batches = _plan(
        _Scorer(model, pad), tokenizer, contexts, continuations, batch_size, share
    )
    stats = ScoringStats(prefix=len(prefix))
    for batch in batches:
        _count(stats, batch)
    return stats


@torch.no_grad()
def continuation_loglikelihoods(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    *,
    batch_size: int = 16,
    description: str = "scoring",
    progress: bool = True,
    processes: Processes = SINGLE,
    stats: ScoringStats | None = None,
) -> np.ndarray:
    """Log-likelihood of every continuation after its context: [n_contexts, n_choices] (float64).

    `continuations[i]` are the choices of context i (the same number for all). With several
    `processes`, each scores every N-th batch and all receive the whole array; `stats` counts
    this process's batches."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scorer = _Scorer(model, pad)
    prefix, batches = _plan(scorer, tokenizer, contexts, continuations, batch_size)
    if prefix:
        scorer.run_prefix(prefix)
    mine = [b for k, b in enumerate(batches) if k % processes.world == processes.rank]
    values: list[tuple[int, int, float]] = []
    total = sum(r.done for b in mine for r in b)
    with progress_bar(description, total=total, show=progress and processes.main) as bar:
        for batch in mine:
            positions = sorted({at for r in batch for _, _, read in r.reads for at, _ in read})
            column = {at: k for k, at in enumerate(positions)}
            logprobs = scorer.logprobs(batch, positions)
            for i, r in enumerate(batch):
                for q, choice, read in r.reads:
                    value = sum(logprobs[i, column[at], tok].item() for at, tok in read)
                    values.append((q, choice, value))
            bar.advance(bar.task_ids[0], sum(r.done for r in batch))
            if stats is not None:
                _count(stats, batch)
    if stats is not None:
        stats.prefix += len(prefix)
    out = np.zeros((len(contexts), len(continuations[0]) if continuations else 0))
    for part in processes.all_gather(values):
        for q, choice, value in part:
            out[q, choice] = value
    return out
