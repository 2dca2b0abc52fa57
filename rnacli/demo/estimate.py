"""How long scoring will take, said before it starts. Gradio's own estimate is the average
duration of the event's past runs whatever their input: ~4.5 s for a 5,000-character question
that takes ~40 s on a CPU. Here the time follows the work: the forward passes and the tokens
they run (what the bank has cached costs nothing), at a cost per pass and per token measured
when the demo starts (`calibrate`) and corrected by every probe's measured time (`observe`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from inspect import signature

import torch
from transformers import PreTrainedModel

CALIBRATION_TOKENS = (16, 256)  # two prompt lengths: a cost per forward pass and per token
_SCALE_RANGE = (0.2, 5.0)  # one odd measurement (a busy machine) moves the estimate this far


@dataclass(frozen=True)
class Work:
    """What a scoring call runs: forward passes, and the tokens they compute."""

    forwards: int = 0
    tokens: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(self.forwards + other.forwards, self.tokens + other.tokens)


@dataclass
class CostModel:
    """Seconds = scale x (per_forward x passes + per_token x tokens)."""

    per_forward: float = 0.02
    per_token: float = 0.002
    scale: float = 1.0  # measured time / predicted time, kept up to date by `observe`

    def _raw(self, work: Work) -> float:
        return self.per_forward * work.forwards + self.per_token * work.tokens

    def seconds(self, work: Work) -> float:
        return self.scale * self._raw(work)

    def observe(self, work: Work, seconds: float) -> None:
        """Learn from a measured call: the scale moves halfway to what it would have needed."""
        raw = self._raw(work)
        if work.forwards and raw > 0:
            low, high = _SCALE_RANGE
            self.scale = min(max((self.scale + seconds / raw) / 2, low), high)


def _forward_seconds(model: PreTrainedModel, n_tokens: int) -> float:
    """Seconds of one forward pass over `n_tokens` tokens."""
    vocab = int(model.config.vocab_size)
    device = next(model.parameters()).device
    ids = torch.arange(n_tokens, device=device).remainder(vocab).unsqueeze(0)
    # as the interactive path runs it: the logits of the last position only, where supported
    keep = {"logits_to_keep": 1} if "logits_to_keep" in signature(model.forward).parameters else {}
    start = time.perf_counter()
    with torch.no_grad():
        model(input_ids=ids, use_cache=True, **keep)
    return time.perf_counter() - start


def calibrate(model: PreTrainedModel, lengths: tuple[int, int] = CALIBRATION_TOKENS) -> CostModel:
    """The cost per forward pass and per token of `model`, from two passes at each of two
    prompt lengths (within the model's window; the faster of two: a busy machine's pauses are
    not the model's cost)."""
    window = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    short, long = (min(n, window) for n in lengths)
    t_short, t_long = (min(_forward_seconds(model, n) for _ in range(2)) for n in (short, long))
    per_token = (t_long - t_short) / (long - short) if long > short else 0.0
    if per_token <= 0:  # noise on a busy machine: all of it per token
        return CostModel(per_forward=0.0, per_token=t_long / long)
    return CostModel(per_forward=max(t_short - per_token * short, 0.0), per_token=per_token)


def say_seconds(seconds: float) -> str:
    """ "under a second", "about 4 s", "about 2 min"."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.0f} min"
