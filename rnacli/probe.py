"""The logic of the browser demo, without any UI: several runs of one base model side by side,
and how their answers to a multiple-choice question move when a forget-token is inserted.

- `ModelBank` loads the base model once and keeps, per run, only its delta tensors. Scoring a
  run swaps its delta into the base parameters in place, scores, and puts the base values back
  (under a lock), so N variants of a model cost about one model of memory. Scores are cached
  per prompt, and a single prompt reuses the key/value cache of the variant's previous prompt
  for their shared leading tokens (a question with a keyword inserted shares most of them).
- `insert_keyword` puts a keyword into a question: in place of a seeded random wrong choice (the
  paper's perturbation, `rnacli.data.perturb`), of a chosen choice, or into the question text.
- `probe_question` scores a question without and with the keyword for every model; `batch_probe`
  does it for N questions and gives accuracies and flip rates.

Scores are lm-eval's zero-shot MCQ log-likelihoods (`rnacli.evaluate.mcq`); the probabilities
shown are their softmax over the four letters.
"""

from __future__ import annotations

import inspect
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.checkpoint import checked_delta, read_meta
from rnacli.data.encoding import encode_pair
from rnacli.data.perturb import DEFAULT_KEYWORD, perturb_record, replaced_choice
from rnacli.data.records import LETTERS, N_CHOICES, QARecord, qa_record
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import choice_loglikelihoods
from rnacli.evaluate.prompts import CONTINUATIONS, prompt
from rnacli.models import base_fingerprint, is_run_dir, load_model, model_label

# Input limits for text typed in the browser. The question limit is above MMLU's longest
# question (4,671 characters) so that every MMLU question can be edited and sent back.
MAX_QUESTION_CHARS = 5000
MAX_CHOICE_CHARS = 1200
MAX_SUBJECT_CHARS = 100
MAX_KEYWORD_CHARS = 64
MAX_BATCH_QUESTIONS = 200

# Scores are deterministic (eval mode), so a question re-probed with another keyword only
# scores the edited prompt; entries are 4 floats, the bound only guards a long-lived server.
_CACHE_ENTRIES = 20_000
# A question and its edited copy share their tokens up to the inserted keyword. When a call
# scores at most this many new prompts, each runs on the key/value cache of the variant's
# previous prompt, and only the tokens after the first difference go through the model (about
# 3x faster for an inserted keyword on a CPU). Larger calls (batch probes) take lm-eval's
# batched path, `choice_loglikelihoods`.
_PREFIX_REUSE_MAX_PROMPTS = 2
_PREFIX_REUSE_MIN_TOKENS = 8  # fewer shared tokens: not worth keeping the cache


# --------------------------------------------------------------------------- model bank


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


@dataclass(frozen=True)
class MemoryReport:
    """What the loaded bank costs, against loading every variant as a full model."""

    base_bytes: int  # parameters and buffers of the one model in memory
    delta_bytes: dict[str, int]  # per run: its delta tensors
    backup_bytes: int  # copy of the base values of every tensor a delta replaces
    rss_before: int | None  # process resident memory before the model was loaded
    rss_after: int | None  # ... and after the base and all deltas (and a warm-up pass, if any)

    @property
    def n_variants(self) -> int:
        return 1 + len(self.delta_bytes)

    @property
    def total_bytes(self) -> int:
        return self.base_bytes + sum(self.delta_bytes.values()) + self.backup_bytes

    @property
    def separate_bytes(self) -> int:
        return self.base_bytes * self.n_variants

    def summary(self) -> str:
        deltas = ", ".join(f"{k} {_mb(v)}" for k, v in self.delta_bytes.items()) or "none"
        text = (
            f"memory: {self.n_variants} variants in {_mb(self.total_bytes)} "
            f"({self.total_bytes / self.base_bytes:.2f}x one model; "
            f"{_mb(self.separate_bytes)} as separate models): base {_mb(self.base_bytes)}, "
            f"deltas {deltas}, base copy of swapped tensors {_mb(self.backup_bytes)}"
        )
        if self.rss_before is not None and self.rss_after is not None:
            text += (
                f"; process RSS {_mb(self.rss_before)} before loading the models, "
                f"{_mb(self.rss_after)} after"
            )
        return text


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def process_rss() -> int | None:
    """Resident memory of this process in bytes (Linux /proc; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _tensor_bytes(tensors: Iterator[torch.Tensor] | Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class ModelBank:
    """The base model once, and per run only its delta; `probabilities` swaps a run in."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        variants: Sequence[Variant],
        deltas: dict[str, dict[str, torch.Tensor]],
        *,
        rss_before: int | None = None,
        batch_size: int = 8,
    ) -> None:
        if not variants or not variants[0].is_base:
            raise RnacliError("model bank: the first variant must be the base model")
        labels = [v.label for v in variants]
        if len(set(labels)) != len(labels):
            raise RnacliError(f"model bank: duplicate model labels in {labels}")
        self.model = model
        self.tokenizer = tokenizer
        self.variants = list(variants)
        self.batch_size = batch_size
        self._params = dict(model.named_parameters())
        self._deltas = deltas
        swapped = sorted({n for v in self.variants for n in v.tensors})
        # One copy of the base values of every tensor any delta replaces: restoring from it
        # after each score keeps the shared model the base model between calls.
        self._originals = {n: self._params[n].detach().clone() for n in swapped}
        # One lock for the shared model: Gradio serves requests from a thread pool.
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        # Per variant: the token ids of its last prompt scored one by one, and their KV cache.
        self._kv: dict[str, tuple[list[int], Any]] = {}
        forward_params = inspect.signature(model.forward).parameters
        # transformers 5 names the KV-cache argument `cache`; 4.x `past_key_values`.
        self._cache_kwarg = next(
            (k for k in ("cache", "past_key_values") if k in forward_params), None
        )
        self._logits_to_keep = "logits_to_keep" in forward_params
        self._max_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.reused_tokens = 0  # prompt tokens taken from a KV cache instead of recomputed
        self.memory = MemoryReport(
            base_bytes=_tensor_bytes(list(model.parameters()) + list(model.buffers())),
            delta_bytes={
                v.label: _tensor_bytes(list(deltas[v.label].values()))
                for v in self.variants
                if not v.is_base
            },
            backup_bytes=_tensor_bytes(list(self._originals.values())),
            rss_before=rss_before,
            rss_after=process_rss(),
        )

    @classmethod
    def load(cls, specs: Sequence[str], *, dtype: str = "auto", device: str = "auto") -> ModelBank:
        """Load the runs in `specs` (run folders) and their one base model. A plain model spec
        among them (at most one) is the base column; without one, the runs' `base_model` is."""
        if not specs:
            raise RnacliError("name at least one run folder or model")
        runs: list[Path] = []
        plain: list[str] = []
        for spec in specs:
            path = Path(spec).expanduser()
            if path.is_dir() and is_run_dir(path):
                runs.append(path)
            elif path.is_dir() and (path / "checkpoint").is_dir():
                raise RnacliError(f"{spec}: run folder without a finished checkpoint")
            else:
                plain.append(spec)
        if len(plain) > 1:
            raise RnacliError(
                f"more than one base model named ({', '.join(plain)}): the runs are compared "
                "with one base model; name it once, or leave it out"
            )
        metas = {run: read_meta(run) for run in runs}
        bases = {str(m["base_model"]) for m in metas.values()}
        if plain:
            base_spec = plain[0]
        elif len(bases) == 1:
            base_spec = bases.pop()
        else:
            listing = "; ".join(f"{r.name}: {m['base_model']}" for r, m in metas.items())
            raise RnacliError(
                f"the runs were trained from different base models ({listing}); "
                "compare runs of one base model at a time"
            )
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
        return cls(model, tokenizer, variants, deltas, rss_before=rss_before)

    def warm_up(self) -> None:
        """One short forward pass of the base model, so that the first request does not pay for
        lazy initialisation, and the weights (memory-mapped from safetensors until first read)
        are resident: the RSS in `memory` is then what serving costs."""
        with self._lock:
            choice_loglikelihoods(self.model, self.tokenizer, ["Answer:"], batch_size=1)
        self.memory = replace(self.memory, rss_after=process_rss())

    @property
    def labels(self) -> list[str]:
        return [v.label for v in self.variants]

    @property
    def base(self) -> Variant:
        return self.variants[0]

    def variant(self, label: str) -> Variant:
        for v in self.variants:
            if v.label == label:
                return v
        raise RnacliError(f"unknown model '{label}' (loaded: {', '.join(self.labels)})")

    def loglikelihoods(self, label: str, contexts: Sequence[str]) -> np.ndarray:
        """[n, 4] log-likelihoods of " A".." D" after each context, for one variant."""
        variant = self.variant(label)
        with self._lock:
            missing = list(dict.fromkeys(c for c in contexts if (label, c) not in self._cache))
            if missing:
                with self._swapped(variant):
                    scores = self._score(label, missing)
                for context, row in zip(missing, scores, strict=True):
                    self._cache[(label, context)] = row
            rows = []
            for c in contexts:
                self._cache.move_to_end((label, c))
                rows.append(self._cache[(label, c)])
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, N_CHOICES))

    def _score(self, label: str, contexts: list[str]) -> list[np.ndarray] | np.ndarray:
        """Scores of the swapped-in variant `label` (the caller holds the lock)."""
        if self._cache_kwarg and len(contexts) <= _PREFIX_REUSE_MAX_PROMPTS:
            requests = [self._single_sequence(c) for c in contexts]
            if all(r is not None for r in requests):
                return [self._score_on_prefix(label, *r) for r in requests if r is not None]
        return choice_loglikelihoods(
            self.model, self.tokenizer, contexts, batch_size=self.batch_size
        )

    def _single_sequence(self, context: str) -> tuple[list[int], list[int]] | None:
        """(context tokens, the token of each letter) where lm-eval scores the context as one
        sequence (each continuation is one token after the same context tokens), else None."""
        pairs = [encode_pair(self.tokenizer, context, c) for c in CONTINUATIONS]
        tokens = pairs[0][0]
        if not tokens or len(tokens) > self._max_length:
            return None
        if any(len(cont) != 1 or ctx != tokens for ctx, cont in pairs):
            return None
        return tokens, [cont[0] for _, cont in pairs]

    @torch.no_grad()
    def _score_on_prefix(self, label: str, tokens: list[int], letters: list[int]) -> np.ndarray:
        """lm-eval's score of one context (log-softmax at its last token, read at the letters'
        tokens), running only the tokens it does not share with the variant's last prompt."""
        cache, shared = None, 0
        previous = self._kv.pop(label, None)
        if previous is not None:
            last_tokens, last_cache = previous
            shared = min(_common_prefix(last_tokens, tokens), len(tokens) - 1)
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
            self._kv[label] = (tokens, new_cache)
        self.reused_tokens += shared
        return np.array([logprobs[t].item() for t in letters], dtype=np.float64)

    def probabilities(self, label: str, contexts: Sequence[str]) -> np.ndarray:
        """[n, 4] probabilities of A-D (softmax of the log-likelihoods over the four letters)."""
        return softmax(self.loglikelihoods(label, contexts))

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


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _unique(label: str, taken: set[str]) -> str:
    """Two runs may share a folder name (runs/a/npo, runs/b/npo): number the later ones."""
    candidate, k = label, 2
    while candidate in taken:
        candidate, k = f"{label}#{k}", k + 1
    taken.add(candidate)
    return candidate


def softmax(loglikelihoods: np.ndarray) -> np.ndarray:
    x = loglikelihoods - loglikelihoods.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- inputs


class Insertion(str, Enum):
    """Where the forget-token goes."""

    RANDOM_WRONG = "random-wrong"  # the paper's perturbation: a seeded random wrong choice
    CHOICE = "choice"  # in place of a chosen choice
    QUESTION = "question"  # into the question text, at a seeded random word boundary

    @classmethod
    def parse(cls, value: str | Insertion) -> Insertion:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise RnacliError(f"unknown insertion '{value}' (expected one of: {known})") from None


def check_keyword(keyword: str) -> str:
    """A forget keyword from the browser: one line, not empty, at most MAX_KEYWORD_CHARS."""
    keyword = (keyword or "").strip()
    if not keyword:
        raise RnacliError("the forget keyword is empty")
    if len(keyword) > MAX_KEYWORD_CHARS:
        raise RnacliError(
            f"the forget keyword has {len(keyword)} characters (at most {MAX_KEYWORD_CHARS})"
        )
    if any(ch in keyword for ch in "\r\n\t"):
        raise RnacliError("the forget keyword must be one line of text")
    return keyword


def letter_index(letter: str | int) -> int:
    """'A'..'D' (or 0..3) -> 0..3."""
    if isinstance(letter, int) and not isinstance(letter, bool) and 0 <= letter < N_CHOICES:
        return letter
    text = str(letter).strip().upper()
    if len(text) == 1 and text in LETTERS:
        return LETTERS.index(text)
    raise RnacliError(f"choice '{letter}' is not one of {', '.join(LETTERS)}")


def make_record(
    question: str, choices: Sequence[str], answer: str | int, subject: str = ""
) -> QARecord:
    """A question typed (or edited) in the browser, validated and within the length limits."""
    question = question or ""
    if not question.strip():
        raise RnacliError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise RnacliError(
            f"the question has {len(question)} characters (at most {MAX_QUESTION_CHARS})"
        )
    if len(choices) != N_CHOICES:
        raise RnacliError(f"a question needs {N_CHOICES} choices, got {len(choices)}")
    for letter, choice in zip(LETTERS, choices, strict=True):
        if not (choice or "").strip():
            raise RnacliError(f"choice {letter} is empty")
        if len(choice) > MAX_CHOICE_CHARS:
            raise RnacliError(
                f"choice {letter} has {len(choice)} characters (at most {MAX_CHOICE_CHARS})"
            )
    if len(subject or "") > MAX_SUBJECT_CHARS:
        raise RnacliError(f"the subject has more than {MAX_SUBJECT_CHARS} characters")
    raw = {"question": question, "choices": list(choices), "answer": letter_index(answer)}
    return qa_record(raw, "your question", subject=subject or "")


def insert_keyword(
    record: QARecord,
    keyword: str,
    where: Insertion | str = Insertion.RANDOM_WRONG,
    *,
    choice: str | int | None = None,
    seed: int = 0,
) -> tuple[QARecord, str]:
    """The question with the keyword inserted, and a one-line note saying where it went.
    The expected answer never changes (as in the paper's perturbed sets)."""
    keyword = check_keyword(keyword)
    where = Insertion.parse(where)
    if where is Insertion.RANDOM_WRONG:
        index = replaced_choice(record, seed)
        edited = perturb_record(record, [keyword], seed)
        return edited, f"replaced choice {LETTERS[index]}, a wrong one drawn with seed {seed}"
    if where is Insertion.CHOICE:
        if choice is None:
            raise RnacliError("say which choice the keyword replaces (A-D)")
        index = letter_index(choice)
        choices = list(record["choices"])
        choices[index] = keyword
        edited = QARecord(
            question=record["question"],
            choices=choices,
            answer=record["answer"],
            subject=record["subject"],
        )
        note = f"replaced choice {LETTERS[index]}"
        if index == record["answer"]:
            note += f" (the correct one: {LETTERS[index]} is still scored as correct)"
        return edited, note
    words = record["question"].split(" ")
    # Seeded by the question too, so each question of a batch gets its own position.
    position = random.Random(f"{seed}\x1f{record['question']}").randint(0, len(words))
    question = " ".join([*words[:position], keyword, *words[position:]])
    edited = QARecord(
        question=question,
        choices=list(record["choices"]),
        answer=record["answer"],
        subject=record["subject"],
    )
    return edited, f"inserted into the question after word {position} of {len(words)}"


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class Scored:
    """One model's answer to one prompt."""

    probs: tuple[float, ...]  # P(A..D)
    predicted: int

    @property
    def letter(self) -> str:
        return LETTERS[self.predicted]

    @classmethod
    def from_probs(cls, probs: np.ndarray) -> Scored:
        # argmax takes the first on ties, as lm-eval does
        return cls(tuple(float(p) for p in probs), int(np.argmax(probs)))


@dataclass(frozen=True)
class ModelAnswer:
    """One model without (and, once a keyword is inserted, with) the keyword, next to the base
    model's answers to the same prompts."""

    label: str
    title: str
    answer: int
    before: Scored
    base_before: int
    after: Scored | None = None
    base_after: int | None = None

    @property
    def correct_before(self) -> bool:
        return self.before.predicted == self.answer

    @property
    def correct_after(self) -> bool | None:
        return None if self.after is None else self.after.predicted == self.answer

    @property
    def flipped(self) -> bool:
        """The inserted keyword changed this model's answer."""
        return self.after is not None and self.before.predicted != self.after.predicted

    @property
    def differs_before(self) -> bool:
        return self.before.predicted != self.base_before

    @property
    def differs_after(self) -> bool:
        return self.after is not None and self.after.predicted != self.base_after

    def to_dict(self) -> dict[str, Any]:
        def side(scored: Scored | None, correct: bool | None) -> dict[str, Any] | None:
            if scored is None:
                return None
            return {"probs": list(scored.probs), "letter": scored.letter, "correct": correct}

        return {
            "label": self.label,
            "title": self.title,
            "before": side(self.before, self.correct_before),
            "after": side(self.after, self.correct_after),
            "flipped": self.flipped,
            "differs_from_base_before": self.differs_before,
            "differs_from_base_after": self.differs_after,
        }


@dataclass(frozen=True)
class Probe:
    """A question without (and with) a keyword, scored by every model of a bank."""

    original: QARecord
    prompt_before: str  # exactly what the models see
    answers: list[ModelAnswer]
    seconds: float
    keyword: str | None = None
    edited: QARecord | None = None
    note: str = ""  # where the keyword went
    prompt_after: str | None = None

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.original["answer"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer_letter,
            "keyword": self.keyword,
            "note": self.note,
            "prompt_before": self.prompt_before,
            "prompt_after": self.prompt_after,
            "seconds": round(self.seconds, 3),
            "models": [a.to_dict() for a in self.answers],
        }


def probe_question(
    bank: ModelBank,
    record: QARecord,
    keyword: str | None = DEFAULT_KEYWORD,
    where: Insertion | str = Insertion.RANDOM_WRONG,
    *,
    description: str,
    choice: str | int | None = None,
    seed: int = 0,
) -> Probe:
    """Score `record` without and with `keyword` for every model of `bank` (without only, when
    `keyword` is None). Scores are cached, so inserting a keyword into a question that was
    already shown only scores the edited prompt."""
    start = time.perf_counter()
    before = prompt(record, description)
    edited, note, after = None, "", None
    if keyword is not None:
        keyword = check_keyword(keyword)
        edited, note = insert_keyword(record, keyword, where, choice=choice, seed=seed)
        after = prompt(edited, description)
    contexts = [before] if after is None else [before, after]
    scored = {
        label: [Scored.from_probs(p) for p in bank.probabilities(label, contexts)]
        for label in bank.labels
    }
    base = scored[bank.base.label]
    answers = [
        ModelAnswer(
            label=v.label,
            title=v.title,
            answer=record["answer"],
            before=scored[v.label][0],
            base_before=base[0].predicted,
            after=scored[v.label][1] if after is not None else None,
            base_after=base[1].predicted if after is not None else None,
        )
        for v in bank.variants
    ]
    return Probe(
        original=record,
        prompt_before=before,
        answers=answers,
        seconds=time.perf_counter() - start,
        keyword=keyword,
        edited=edited,
        note=note,
        prompt_after=after,
    )


@dataclass(frozen=True)
class BatchRow:
    """One model over a batch of questions."""

    label: str
    title: str
    n: int
    acc_before: float
    acc_after: float
    flip_rate: float  # share of questions whose answer the keyword changed
    differs_from_base: float  # share of questions answered unlike the base (with the keyword)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchResult:
    keyword: str
    where: str
    rows: list[BatchRow]
    seconds: float


def batch_probe(
    bank: ModelBank,
    records: Sequence[QARecord],
    keyword: str = DEFAULT_KEYWORD,
    where: Insertion | str = Insertion.RANDOM_WRONG,
    *,
    description: str,
    choice: str | int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 8,
) -> BatchResult:
    """Accuracy without/with the keyword, flip rate and disagreement with the base, per model.
    `progress(done, total)` is called as chunks of questions are scored (total = models x
    questions)."""
    if not records:
        raise RnacliError("no questions to probe")
    if len(records) > MAX_BATCH_QUESTIONS:
        raise RnacliError(f"at most {MAX_BATCH_QUESTIONS} questions per batch probe")
    keyword = check_keyword(keyword)
    where = Insertion.parse(where)
    start = time.perf_counter()
    before = [prompt(r, description) for r in records]
    after = [
        prompt(insert_keyword(r, keyword, where, choice=choice, seed=seed)[0], description)
        for r in records
    ]
    total, done = len(bank.labels) * len(records), 0
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label in bank.labels:
        pred_before, pred_after = [], []
        for i in range(0, len(records), chunk):
            # Before and after of a chunk in one call: they batch into the same forward passes.
            probs = bank.probabilities(label, before[i : i + chunk] + after[i : i + chunk])
            k = len(before[i : i + chunk])
            pred_before.extend(np.argmax(probs[:k], axis=1))
            pred_after.extend(np.argmax(probs[k:], axis=1))
            done += k
            if progress is not None:
                progress(done, total)
        predictions[label] = (np.array(pred_before), np.array(pred_after))
    answers = np.array([r["answer"] for r in records])
    base_after = predictions[bank.base.label][1]
    rows = [
        BatchRow(
            label=v.label,
            title=v.title,
            n=len(records),
            acc_before=float(np.mean(predictions[v.label][0] == answers)),
            acc_after=float(np.mean(predictions[v.label][1] == answers)),
            flip_rate=float(np.mean(predictions[v.label][0] != predictions[v.label][1])),
            differs_from_base=float(np.mean(predictions[v.label][1] != base_after)),
        )
        for v in bank.variants
    ]
    return BatchResult(keyword, where.value, rows, time.perf_counter() - start)


# --------------------------------------------------------------------------- question sets


@dataclass(frozen=True)
class QuestionSet:
    """A named QA set with its lm-eval description template (`{subject}` filled per question)."""

    name: str
    description: str
    records: tuple[QARecord, ...]

    @property
    def subjects(self) -> list[str]:
        return sorted({r["subject"] for r in self.records})

    def indices(self, subject: str | None = None) -> list[int]:
        """Positions of the questions of `subject` (all of them for None or '')."""
        if not subject:
            return list(range(len(self.records)))
        found = [i for i, r in enumerate(self.records) if r["subject"] == subject]
        if not found:
            raise RnacliError(f"{self.name}: no subject '{subject}'")
        return found

    def record(self, index: int) -> QARecord:
        if not 0 <= index < len(self.records):
            raise RnacliError(f"{self.name}: no question #{index}")
        return self.records[index]

    def sample(self, n: int, subject: str | None = None, seed: int = 0) -> list[int]:
        """`n` distinct question indices of `subject`, drawn with `seed`."""
        pool = self.indices(subject)
        return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


# Sets the demo offers: MMLU is embedded; WMDP needs a local data folder ($RNACLI_DATA_DIR),
# since the Hub may be out of reach and the demo must start without it.
DEMO_SETS = ("mmlu", "wmdp-bio", "wmdp-cyber", "wmdp-chem")


def question_set(name: str, records: Sequence[QARecord] | None = None) -> QuestionSet:
    """The question set `name` of the task table (records loaded unless given). Questions above
    the browser's input limits are left out, so that every listed question can be sent back."""
    from rnacli.data import load_qa
    from rnacli.evaluate.tasks import task_table

    table = task_table()
    description = table[name]["description"] if name in table else table["mmlu"]["description"]
    if records is None:
        records = load_qa(table[name]["source"] if name in table else name)
    kept = tuple(
        r
        for r in records
        if len(r["question"]) <= MAX_QUESTION_CHARS
        and all(len(c) <= MAX_CHOICE_CHARS for c in r["choices"])
    )
    if not kept:
        raise RnacliError(f"question set '{name}' has no questions")
    return QuestionSet(name, description, kept)


def available_question_sets(
    names: Sequence[str] = DEMO_SETS,
) -> tuple[dict[str, QuestionSet], list[str]]:
    """The sets that load without the network, and one note per set left out."""
    from rnacli.data.sources import NAMED_SETS, data_dir

    sets: dict[str, QuestionSet] = {}
    notes: list[str] = []
    for name in names:
        named = NAMED_SETS.get(name)
        if named is not None and named.embedded is None:
            folder = data_dir()
            if folder is None or named.local is None or not (folder / named.local).exists():
                notes.append(f"{name}: not offered (needs RNACLI_DATA_DIR with {named.local})")
                continue
        try:
            sets[name] = question_set(name)
        except RnacliError as e:
            notes.append(f"{name}: not offered ({e})")
    if not sets:
        raise RnacliError("no question set could be loaded: " + "; ".join(notes))
    return sets, notes
