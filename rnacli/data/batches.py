"""Training batches: tokenised, right-padded sequences, as pure functions of (seed, step).

Every batch is computed from the step number alone, so a resumed run sees exactly the batches
an uninterrupted one would. Forget corpora alternate step by step (step s uses corpus
s mod K); each corpus and the retain corpus walk through seeded permutations, epoch by epoch.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.data.encoding import added_specials, encode_pair, encode_text
from rnacli.data.records import Document
from rnacli.errors import RnacliError


@dataclass
class Seq:
    """A batch of sequences. `target_mask` marks the tokens whose log-prob is scored (the
    answer y; all real tokens for a plain document)."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    target_mask: torch.Tensor  # [B, T]
    cache: dict = field(default_factory=dict, repr=False)  # per-batch results (shared prefix)
    # The optimizer step's real tokens and sequences in this role, over all its micro-batches
    # and processes (`rnacli.training.step.set_step_totals`). Token and sequence means divide
    # by them, so a step's gradient does not depend on how its sequences are split; None:
    # this batch's own counts.
    step_tokens: float | None = None
    step_rows: float | None = None
    # The positions losses average over: the real tokens (None), or every position of the
    # padded batch (`method.mean_over = "all-positions"`, the authors' reductions).
    loss_mask: torch.Tensor | None = None

    @property
    def counted(self) -> torch.Tensor:
        """[B, T] 0/1: the positions a loss's mean runs over."""
        return self.attention_mask if self.loss_mask is None else self.loss_mask

    def to(self, device: torch.device | str) -> Seq:
        loss_mask = None if self.loss_mask is None else self.loss_mask.to(device)
        return Seq(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.target_mask.to(device),
            step_tokens=self.step_tokens,
            step_rows=self.step_rows,
            loss_mask=loss_mask,
        )

    def every_position(self) -> Seq:
        """This batch with every position counted and scored (pads too: what
        `labels=input_ids` and unmasked means do in the authors' code)."""
        ones = torch.ones_like(self.attention_mask)
        return Seq(self.input_ids, self.attention_mask, ones, loss_mask=ones)


def stable_seed(*parts: object) -> int:
    """A seed from any values, the same in every process (unlike hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """All indices, or `limit` of them drawn with `seed`, kept in source order."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise RnacliError(f"a sample size must be at least 1, got {limit}")
    return sorted(random.Random(seed).sample(range(n), limit))


@lru_cache(maxsize=16)
def _permutation(n_docs: int, seed: int, stream: str, epoch: int) -> tuple[int, ...]:
    order = list(range(n_docs))
    random.Random(stable_seed(seed, stream, epoch)).shuffle(order)
    return tuple(order)


def pick(n_docs: int, batch_size: int, batch_index: int, seed: int, stream: str) -> list[int]:
    """Indices of batch `batch_index` when walking seeded per-epoch permutations of n_docs."""
    if n_docs == 0:
        raise RnacliError(f"corpus '{stream}' has no documents to train on")
    out = []
    for position in range(batch_index * batch_size, (batch_index + 1) * batch_size):
        epoch, offset = divmod(position, n_docs)
        out.append(_permutation(n_docs, seed, stream, epoch)[offset])
    return out


def pad_sequences(
    rows: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int
) -> Seq:
    """Right-pad token rows (real tokens keep their positions; padding comes last)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    tgt = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, target) in enumerate(zip(rows, targets, strict=True)):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attn[i, : len(row)] = 1
        tgt[i, : len(row)] = torch.tensor(target, dtype=torch.long)
    return Seq(ids, attn, tgt)


def _encode_doc(
    tokenizer: PreTrainedTokenizerBase, doc: Document, max_length: int
) -> tuple[list[int], int]:
    """Token ids of a document (at most max_length) and how many leading ones are prompt x.
    A (prompt, completion) pair is split as the evaluator splits it (`encode_pair`); a long
    prompt loses its start, so that the completion is kept. A plain text's trailing
    whitespace, and a special token the tokenizer appends (EOS), are no tokens of it
    (`encode_text`); its leading special tokens (BOS) are never scored."""
    if isinstance(doc, str):
        ids = encode_text(tokenizer, doc)[:max_length]
        return ids, min(added_specials(tokenizer)[0], len(ids))
    prompt, completion = encode_pair(tokenizer, doc[0], doc[1])
    completion = completion[: max_length - 1]
    prompt = prompt[max(0, len(prompt) + len(completion) - max_length) :]
    return prompt + completion, len(prompt)


def document_batch(
    tokenizer: PreTrainedTokenizerBase, docs: Sequence[Document], max_length: int
) -> Seq:
    """Documents truncated to max_length tokens. The targets (y) are every text token of a
    plain document (x is empty) and the completion of a (prompt, completion) document."""
    encoded = [_encode_doc(tokenizer, d, max_length) for d in docs]
    targets = [[0] * n_x + [1] * (len(ids) - n_x) for ids, n_x in encoded]
    return pad_sequences([ids for ids, _ in encoded], targets, tokenizer.pad_token_id)


def preference_batches(
    tokenizer: PreTrainedTokenizerBase,
    docs: Sequence[Document],
    refusals: Sequence[str],
    max_length: int,
    prompt_tokens: int,
) -> tuple[Seq, Seq]:
    """DPO pairs: x = a document's prompt, or for a plain text its first `prompt_tokens` tokens
    (at most half of a short one, so that something is left to reject); the rejected answer
    is the rest, the preferred one a refusal sentence. The refusal follows x as the
    completion would: after a prompt it is encoded by `encode_pair` (a prompt's trailing
    space moves into it, never a stray space token), after plain text it gets one leading
    space unless x ends in whitespace."""
    win_rows, win_tgt, lose_rows, lose_tgt = [], [], [], []
    for doc, refusal in zip(docs, refusals, strict=True):
        ids, n_prompt = _encode_doc(tokenizer, doc, max_length)
        if len(ids) < 2:
            raise RnacliError(
                f"a forget document has {len(ids)} token(s); DPO needs at least 2 "
                "(raise data.min_chars)"
            )
        if isinstance(doc, str):  # no explicit prompt: the first tokens are x
            n_prompt = min(prompt_tokens, len(ids) // 2)
        x = ids[:n_prompt]
        y_idk = _refusal_tokens(tokenizer, doc, x, refusal.strip())
        lose_rows.append(ids)
        lose_tgt.append([0] * len(x) + [1] * (len(ids) - len(x)))
        win_rows.append(x + y_idk)
        win_tgt.append([0] * len(x) + [1] * len(y_idk))
    pad = tokenizer.pad_token_id
    return pad_sequences(win_rows, win_tgt, pad), pad_sequences(lose_rows, lose_tgt, pad)


def _refusal_tokens(
    tokenizer: PreTrainedTokenizerBase, doc: Document, x: list[int], refusal: str
) -> list[int]:
    """The refusal's tokens after the prompt x of `doc` (see `preference_batches`)."""
    if isinstance(doc, tuple):
        prompt = doc[0]
        joiner = "" if prompt[-1:].isspace() else " "
        return encode_pair(tokenizer, prompt, joiner + refusal)[1]
    before = tokenizer.decode(x, skip_special_tokens=True)
    joiner = "" if before[-1:].isspace() else " "
    return tokenizer(joiner + refusal, add_special_tokens=False)["input_ids"]


@dataclass
class StepBatch:
    step: int
    corpus: int  # which forget corpus this step uses
    forget: Seq
    retain: Seq
    refusal: Seq | None = None  # DPO's preferred answers (same prompts as `forget`)

    def to(self, device: torch.device | str) -> StepBatch:
        refusal = self.refusal.to(device) if self.refusal is not None else None
        return StepBatch(
            self.step, self.corpus, self.forget.to(device), self.retain.to(device), refusal
        )


@dataclass
class TrainingData:
    """Forget corpora (alternating), the retain corpus and, for DPO, refusal sentences."""

    tokenizer: PreTrainedTokenizerBase
    forget: list[list[Document]]
    forget_names: list[str]
    forget_max_length: list[int]
    retain: list[Document]
    retain_max_length: int | list[int]  # one, or one per forget corpus
    batch_size: int
    seed: int
    refusals: list[str] | None = None
    prompt_tokens: int = 32
    grad_accum: int = 1
    rank: int = 0
    world_size: int = 1
    refusal_per_row: bool = True  # False: one draw per micro-batch (train.accumulation legacy)
    all_positions: bool = False  # losses count pads too (method.mean_over = "all-positions")

    def micro_index(self, micro: int) -> int:
        """This process's micro-batch `micro` counted over all processes. Batches, refusal
        picks and RNA noise are functions of (step, micro_index) alone, so N processes with
        grad_accum k draw what one process draws with grad_accum N x k."""
        return micro * self.world_size + self.rank

    def batch(self, step: int, micro: int = 0) -> StepBatch:
        """Micro-batch `micro` of optimizer step `step` for this process."""
        k = step % len(self.forget)
        # Micro-batches over all processes take consecutive batches of each stream.
        per_step = self.grad_accum * self.world_size
        index = (step // len(self.forget)) * per_step + self.micro_index(micro)
        docs = [
            self.forget[k][i]
            for i in pick(
                len(self.forget[k]), self.batch_size, index, self.seed, self.forget_names[k]
            )
        ]
        retain_seq = self._retain(step * per_step + self.micro_index(micro), k)
        if self.refusals is None:
            forget_seq = document_batch(self.tokenizer, docs, self.forget_max_length[k])
            return self._counted(StepBatch(step, k, forget_seq, retain_seq))
        refusals = self._refusals(step, micro, len(docs))
        win, lose = preference_batches(
            self.tokenizer, docs, refusals, self.forget_max_length[k], self.prompt_tokens
        )
        return self._counted(StepBatch(step, k, lose, retain_seq, win))

    def _counted(self, batch: StepBatch) -> StepBatch:
        if not self.all_positions:
            return batch
        refusal = batch.refusal.every_position() if batch.refusal is not None else None
        forget, retain = batch.forget.every_position(), batch.retain.every_position()
        return StepBatch(batch.step, batch.corpus, forget, retain, refusal)

    def _refusals(self, step: int, micro: int, n: int) -> list[str]:
        """One refusal per row, a function of the row's place in the whole step (so the step
        draws the same however it is split), or of its micro-batch (legacy runs)."""
        m = self.micro_index(micro)
        if self.refusal_per_row:
            rows = range(m * self.batch_size, m * self.batch_size + n)
            rngs = [random.Random(stable_seed(self.seed, "refusal-row", step, r)) for r in rows]
            return [rng.choice(self.refusals) for rng in rngs]
        # (the trailing 0 once was the rank: kept, so that earlier runs keep their picks)
        rng = random.Random(stable_seed(self.seed, "refusal", step, m, 0))
        return [rng.choice(self.refusals) for _ in range(n)]

    def _retain(self, index: int, corpus: int = 0) -> Seq:
        """Retain batch `index` of the whole run (all processes and micro-batches together),
        at the retain length of forget corpus `corpus`'s steps."""
        picked = pick(len(self.retain), self.batch_size, index, self.seed, "retain")
        lengths = self.retain_max_length
        length = lengths if isinstance(lengths, int) else lengths[corpus]
        return document_batch(self.tokenizer, [self.retain[i] for i in picked], length)

    def first_retain_batches(self, n: int) -> list[Seq]:
        """The run's first n retain batches: the same in every process (RNA's relative scale is
        measured on them)."""
        return [self._retain(index) for index in range(n)]
