"""The forward passes an unlearning step needs, computed once where they can be shared.

1. **No second model** (idea 1 of docs/architecture.md): the frozen reference is the same
   model with the original values of the few trainable tensors, run through
   `torch.func.functional_call` under `no_grad`. Memory: one model plus a copy of those tensors.
2. **Shared prefix** (idea 2): layers below the first trainable one are the same in the
   updated and the reference model; their output is computed once per batch and fed to both.
3. **Truncated forward** (idea 3): RM methods stop at layer l; no upper layers, no LM head.

PO losses read the LM head in chunks of tokens, only at the tokens that are scored, and (with
`checkpoint_head`) recompute each chunk in the backward pass instead of storing [B, T, V]
logits. `reference="copy"` (a deep copy, the reference-code style) and the switches exist to
prove the equivalences in tests and to measure them in benchmarks.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from contextlib import ExitStack, nullcontext

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from rnacli.data.batches import Seq
from rnacli.methods.po import sequence_logprob, token_logprobs
from rnacli.methods.rna import Noise, noise_for
from rnacli.models.forward import (
    PLAIN_DECODERS,
    StopForward,
    decoder_layers,
    decoder_of,
    skip_below,
    split_layer_output,
    stop_after,
)

_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")


class Passes:
    def __init__(
        self,
        model: PreTrainedModel,
        trainable: list[str],
        *,
        reference: str = "delta",
        shared_prefix: bool = True,
        truncate: bool = True,
        chunk_tokens: int | None = 1024,
        checkpoint_head: bool = True,
    ) -> None:
        self.model = model
        self.decoder_name, decoder = decoder_of(model)
        self.layers = decoder_layers(decoder)
        params = dict(model.named_parameters())
        self.originals = {n: params[n].detach().clone() for n in trainable}
        prefix = self.decoder_name + "."
        in_layers = all(n.startswith(prefix) and _LAYER_INDEX.search(n) for n in trainable)
        # Names relative to the decoder, for reference passes through the decoder alone.
        self.decoder_originals = (
            {n.removeprefix(prefix): t for n, t in self.originals.items()} if in_layers else None
        )
        plain = model.config.model_type in PLAIN_DECODERS and in_layers
        first = min(int(_LAYER_INDEX.search(n).group(1)) for n in trainable) if in_layers else 0
        self.start = first if (shared_prefix and plain) else 0
        self.truncate = truncate
        self.chunk_tokens = chunk_tokens if plain else None
        self.checkpoint_head = checkpoint_head
        self.ref_model: PreTrainedModel | None = None
        if reference == "copy":
            self.ref_model = copy.deepcopy(model).requires_grad_(False)
        elif reference != "delta":
            raise ValueError(f"reference must be 'delta' or 'copy', got {reference!r}")

    # -- decoder passes -------------------------------------------------------------------

    def _prefix(self, seq: Seq) -> torch.Tensor:
        """Output of layer start-1, computed once per batch (no trainable tensor below it)."""
        key = ("prefix", self.start)  # Passes with another start may share this batch
        if key not in seq.cache:
            decoder = getattr(self.model, self.decoder_name)
            with torch.no_grad(), stop_after(self.layers[self.start - 1]):
                try:
                    decoder(
                        input_ids=seq.input_ids, attention_mask=seq.attention_mask, use_cache=False
                    )
                except StopForward as stop:
                    seq.cache[key] = stop.hidden
        return seq.cache[key]

    def _call(
        self, module: nn.Module, originals: dict[str, torch.Tensor], reference: bool, kwargs: dict
    ) -> object:
        """module(**kwargs), as the reference model when asked (original trainable values)."""
        if reference and self.ref_model is None:
            return functional_call(module, originals, args=(), kwargs=kwargs, strict=False)
        return module(**kwargs)

    def _run(
        self, seq: Seq, *, reference: bool, stop: int | None, noise: Noise | None
    ) -> torch.Tensor:
        """Layer `stop`'s output, or the final (normed) hidden state when stop is None."""
        root = self.ref_model if (reference and self.ref_model is not None) else self.model
        decoder = getattr(root, self.decoder_name)
        layers = decoder_layers(decoder)
        start = self.start
        if noise is not None and min(noise.layers) < start:
            start = 0  # noise below the shared prefix: this pass needs its own lower layers
        if stop is not None and stop < start:
            start = 0  # a layer below the prefix is read: run the model from its input
        kwargs: dict = {"attention_mask": seq.attention_mask, "use_cache": False}
        if start > 0:
            kwargs["inputs_embeds"] = self._prefix(seq)
        else:
            kwargs["input_ids"] = seq.input_ids
        # The whole model runs when trainable tensors lie outside the decoder layers, and in
        # the reference-code style (full forward, LM head included, layer l read by a hook).
        full = self.decoder_originals is None or (stop is not None and not self.truncate)
        module, originals = (root, self.originals) if full else (decoder, self.decoder_originals)
        captured: dict[str, torch.Tensor] = {}
        with ExitStack() as stack:
            if start > 0:
                stack.enter_context(skip_below(layers, start))
            if noise is not None:  # registered first: the stop/capture hooks see noised output
                stack.enter_context(noise.inject(layers))
            if stop is not None and self.truncate:
                stack.enter_context(stop_after(layers[stop]))
            elif stop is not None:
                handle = layers[stop].register_forward_hook(
                    lambda _m, _a, out: captured.__setitem__("z", split_layer_output(out))
                )
                stack.callback(handle.remove)
            stack.enter_context(torch.no_grad() if reference else nullcontext())
            try:
                out = self._call(module, originals, reference, kwargs)
            except StopForward as early:
                return early.hidden
        return captured["z"] if stop is not None else out.last_hidden_state

    def hidden(
        self, seq: Seq, layer: int, *, reference: bool = False, noise: Noise | None = None
    ) -> torch.Tensor:
        """z_l: the output of decoder layer `layer` for every token [B, T, d]."""
        return self._run(seq, reference=reference, stop=layer, noise=noise)

    # -- LM head, by chunks of scored tokens ----------------------------------------------

    def _head(self, reference: bool) -> nn.Module:
        root = self.ref_model if (reference and self.ref_model is not None) else self.model
        return root.get_output_embeddings()

    def _logits(self, seq: Seq, reference: bool, noise: Noise | None) -> torch.Tensor:
        """Full [B, T, V] logits: the path for models whose head is not a plain linear map."""
        root = self.ref_model if (reference and self.ref_model is not None) else self.model
        kwargs = {
            "input_ids": seq.input_ids,
            "attention_mask": seq.attention_mask,
            "use_cache": False,
        }
        with ExitStack() as stack:
            if noise is not None:
                stack.enter_context(noise.inject(decoder_layers(getattr(root, self.decoder_name))))
            stack.enter_context(torch.no_grad() if reference else nullcontext())
            return self._call(root, self.originals, reference, kwargs).logits

    def _chunked(self, fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
        n = tensors[0].shape[0]
        size = self.chunk_tokens or n
        out = []
        for i in range(0, n, max(size, 1)):
            parts = [t[i : i + size] for t in tensors]
            if self.checkpoint_head and torch.is_grad_enabled() and parts[0].requires_grad:
                out.append(checkpoint(fn, *parts, use_reentrant=False))
            else:
                out.append(fn(*parts))
        return torch.cat(out) if out else tensors[0].new_zeros(0)

    def sequence_logprob(self, seq: Seq, *, reference: bool = False) -> torch.Tensor:
        """log pi(y|x) per sequence [B]: the sum over target tokens of their log-prob."""
        scored = seq.target_mask[:, 1:].bool()  # position t predicts token t+1
        targets = seq.input_ids[:, 1:][scored]
        rows = torch.nonzero(scored)[:, 0]
        with torch.no_grad() if reference else nullcontext():
            if self.chunk_tokens is None:  # full [B, T, V] logits, the reference-code style
                logits = self._logits(seq, reference, None)
                return sequence_logprob(logits, seq.input_ids, seq.target_mask)
            h = self._run(seq, reference=reference, stop=None, noise=None)[:, :-1][scored]
            head = self._head(reference)
            lp = self._chunked(lambda hc, tc: token_logprobs(head(hc), tc), h, targets)
        total = torch.zeros(seq.input_ids.shape[0], dtype=lp.dtype, device=lp.device)
        return total.index_add(0, rows, lp)

    def token_values(
        self,
        seq: Seq,
        per_token: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        noise: Noise | None,
    ) -> torch.Tensor:
        """per_token(logits, reference logits) at each real token [N]; RNA's noise rides in the
        pass of its side (`Noise.side`). `seq.counted` says which positions: the real tokens,
        or every position (`method.mean_over = "all-positions"`)."""
        real = seq.counted.bool()
        own, ref = noise_for(noise, reference=False), noise_for(noise, reference=True)
        if self.chunk_tokens is None:
            logits = self._logits(seq, False, own)[real]
            ref_logits = self._logits(seq, True, ref)[real]
            return per_token(logits, ref_logits)
        h = self._run(seq, reference=False, stop=None, noise=own)[real]
        h_ref = self._run(seq, reference=True, stop=None, noise=ref)[real]
        head, head_ref = self._head(False), self._head(True)
        return self._chunked(lambda a, b: per_token(head(a), head_ref(b)), h, h_ref)
