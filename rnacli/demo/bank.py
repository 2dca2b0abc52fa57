"""The model bank: several runs of one base model side by side at the memory of about one.

The base model is loaded once and each run keeps only its delta tensors. Scoring a run swaps
its delta into the base parameters in place, scores, and puts the base values back (under a
lock: Gradio serves requests from a thread pool), so N variants cost about one model plus the
few trained tensors. Scores are cached per (variant, prompt, continuations).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.data.encoding import encode_context
from rnacli.demo.answers import PromptScorer, Request, common_prefix, softmax
from rnacli.demo.bank_cost import MemoryReport, process_rss, tensor_bytes
from rnacli.demo.estimate import CostModel, Work, calibrate
from rnacli.demo.runs import base_spec_of, split_specs
from rnacli.demo.world_sets import world_of_base
from rnacli.errors import RnacliError
from rnacli.models.loading import base_fingerprint, load_model, model_label
from rnacli.runs.checkpoint import checked_delta, read_meta
from rnacli.world.generate import WorldSpec

# Scores are deterministic (eval mode), so a question re-probed with another keyword only
# scores the edited prompt; entries are a few floats, the bound only guards a long-lived server.
_CACHE_ENTRIES = 20_000


@dataclass(frozen=True)
class Variant:
    """One column of the demo: the base model or a run (its delta applied to the base)."""

    label: str
    spec: str  # as named at start
    method: str  # "base" or the run's method, e.g. "NPO+KL"
    rna: bool = False
    tensors: tuple[str, ...] = ()  # parameters the delta replaces (none for the base)
    is_base: bool = False

    @property
    def title(self) -> str:
        if self.is_base:
            return f"{self.label} (base)"
        return f"{self.label} ({self.method}{' + RNA' if self.rna else ''})"


class ModelBank:
    """The base model once, and per run only its delta; `loglikelihoods` swaps a run in.
    `world` is the fictional world the base model learned (None for any other model)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        variants: Sequence[Variant],
        deltas: dict[str, dict[str, torch.Tensor]],
        *,
        rss_before: int | None = None,
        batch_size: int = 8,
        world: WorldSpec | None = None,
    ) -> None:
        if not variants or not variants[0].is_base:
            raise RnacliError("model bank: the first variant must be the base model")
        labels = [v.label for v in variants]
        if len(set(labels)) != len(labels):
            raise RnacliError(f"model bank: duplicate model labels in {labels}")
        self.model = model
        self.tokenizer = tokenizer
        self.variants = list(variants)
        self.world = world
        self.scorer = PromptScorer(model, tokenizer, batch_size)
        self._params = dict(model.named_parameters())
        self._deltas = deltas
        swapped = sorted({n for v in self.variants for n in v.tensors})
        # One copy of the base values of every tensor any delta replaces: restoring from it
        # after each score keeps the shared model the base model between calls.
        self._originals = {n: self._params[n].detach().clone() for n in swapped}
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, tuple[str, ...]], np.ndarray] = OrderedDict()
        self.cost = CostModel()  # measured by `warm_up`; each probe corrects it
        self.memory = MemoryReport(
            base_bytes=tensor_bytes(list(model.parameters()) + list(model.buffers())),
            delta_bytes={
                v.label: tensor_bytes(list(deltas[v.label].values()))
                for v in self.variants
                if not v.is_base
            },
            backup_bytes=tensor_bytes(list(self._originals.values())),
            rss_before=rss_before,
            rss_after=process_rss(),
        )

    @classmethod
    def load(cls, specs: Sequence[str], *, dtype: str = "auto", device: str = "auto") -> ModelBank:
        """Load the runs in `specs` (run folders) and their one base model. A plain model spec
        among them (at most one) is the base column; without one, the runs' `base_model` is."""
        runs, plain = split_specs(specs)
        metas = {run: read_meta(run) for run in runs}
        base_spec = base_spec_of(plain, {r.name: str(m["base_model"]) for r, m in metas.items()})
        rss_before = process_rss()
        model, tokenizer = load_model(base_spec, dtype=dtype, device=device)
        params = dict(model.named_parameters())
        fingerprinted = any("base_fingerprint" in m for m in metas.values())
        fingerprint = base_fingerprint(base_spec, model) if fingerprinted else None
        base = Variant(label=model_label(base_spec), spec=base_spec, method="base", is_base=True)
        variants, deltas, taken = [base], {base.label: {}}, {base.label}
        for run, meta in metas.items():
            delta = checked_delta(run, meta, params, base_spec, fingerprint)
            label = _unique(model_label(str(run)), taken)
            variants.append(
                Variant(
                    label=label,
                    spec=str(run),
                    method=str(meta.get("method") or meta.get("recipe") or "run"),
                    rna=bool(meta.get("rna", False)),
                    tensors=tuple(sorted(delta)),
                )
            )
            deltas[label] = delta
        return cls(
            model,
            tokenizer,
            variants,
            deltas,
            rss_before=rss_before,
            world=world_of_base(base_spec),
        )

    def warm_up(self) -> None:
        """One short forward pass of the base model, so that the first request does not pay for
        lazy initialisation, and the weights (memory-mapped from safetensors until first read)
        are resident: the RSS in `memory` is then what serving costs. Then the cost of a
        forward pass and of a token is measured (`cost`), for the page's time estimates."""
        from rnacli.evaluate.mcq import choice_loglikelihoods

        with self._lock:
            choice_loglikelihoods(
                self.model, self.tokenizer, ["Answer:"], batch_size=1, progress=False
            )
            self.cost = calibrate(self.model)
        self.memory = replace(self.memory, rss_after=process_rss())

    def work(self, requests: Sequence[Request]) -> Work:
        """What scoring `requests` on every model runs, given what is cached: per model, one
        forward pass per request not cached, over its tokens but those it shares with the
        request before it (the previous prompt's cache, `rnacli.demo.answers`)."""
        # the tokens the scorer runs: a context never ends in an EOS the tokenizer appends
        tokens = [encode_context(self.tokenizer, context) for context, _ in requests]
        window = self.scorer.max_length
        new = [len(t) - (common_prefix(tokens[k - 1], t) if k else 0) for k, t in enumerate(tokens)]
        total = Work()
        with self._lock:
            for label in self.labels:
                for (context, options), n in zip(requests, new, strict=True):
                    if (label, context, tuple(options)) not in self._cache:
                        total += Work(1, min(n, window))
        return total

    @property
    def labels(self) -> list[str]:
        return [v.label for v in self.variants]

    @property
    def base(self) -> Variant:
        return self.variants[0]

    @property
    def reused_tokens(self) -> int:
        """Prompt tokens taken from a KV cache instead of recomputed, so far."""
        return self.scorer.reused_tokens

    def variant(self, label: str) -> Variant:
        for v in self.variants:
            if v.label == label:
                return v
        raise RnacliError(f"unknown model '{label}' (loaded: {', '.join(self.labels)})")

    def loglikelihoods(self, label: str, requests: Sequence[Request]) -> np.ndarray:
        """[n, n_choices] log-likelihoods of every request's continuations, for one variant
        (equal to `rnacli eval`'s for the same prompts)."""
        variant = self.variant(label)
        with self._lock:
            keys = [(label, context, tuple(options)) for context, options in requests]
            missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
            if missing:
                with self._swapped(variant):
                    scores = self.scorer.score(label, [(c, o) for _, c, o in missing])
                for key, row in zip(missing, scores, strict=True):
                    self._cache[key] = row
            rows = []
            for key in keys:
                self._cache.move_to_end(key)
                rows.append(self._cache[key])
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, 0))

    def probabilities(self, label: str, requests: Sequence[Request]) -> np.ndarray:
        """[n, n_choices] probabilities: the softmax of the log-likelihoods over the choices."""
        return softmax(self.loglikelihoods(label, requests))

    @contextmanager
    def _swapped(self, variant: Variant) -> Iterator[None]:
        """The shared model is `variant` inside the block, the base model again after it (also
        when scoring fails). The caller holds the lock."""
        delta = self._deltas[variant.label]
        try:
            with torch.no_grad():
                for name, value in delta.items():
                    self._params[name].copy_(value)
            yield
        finally:
            with torch.no_grad():
                for name in delta:
                    self._params[name].copy_(self._originals[name])


def _unique(label: str, taken: set[str]) -> str:
    """Two runs may share a folder name (runs/a/npo, runs/b/npo): number the later ones."""
    candidate, k = label, 2
    while candidate in taken:
        candidate, k = f"{label}#{k}", k + 1
    taken.add(candidate)
    return candidate
