"""Evaluate one model on resolved tasks with either backend."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.console import console
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import MCQResult, evaluate_mcq
from rnacli.evaluate.results import EVAL_FILE, is_eval_file, merge_eval, model_entry, task_entry
from rnacli.evaluate.tasks import TaskDocs
from rnacli.methods.rna import Noise, resolve_layers
from rnacli.models.forward import decoder_layers, decoder_of
from rnacli.models.loading import is_run_dir, load_model, model_label
from rnacli.runtime.distributed import SINGLE, Processes, process_device

BACKENDS = ("native", "lm-eval")


def evaluate_tasks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[TaskDocs],
    *,
    backend: str = "native",
    batch_size: int = 4,
    processes: Processes = SINGLE,
) -> dict[str, MCQResult]:
    """Accuracy per task; both backends give the same per-question predictions. With several
    `processes`, each scores a share of the questions and all return the whole result."""
    if backend == "native":
        return {
            t.name: evaluate_mcq(
                model,
                tokenizer,
                t.records,
                t.description,
                batch_size=batch_size,
                label=t.name,
                scoring=t.scoring,
                processes=processes,
            )
            for t in tasks
        }
    if backend == "lm-eval":
        from rnacli.evaluate.harness import evaluate_with_lm_eval

        return evaluate_with_lm_eval(
            model, tokenizer, tasks, batch_size=batch_size, processes=processes
        )
    raise RnacliError(f"unknown backend '{backend}' (expected {' or '.join(BACKENDS)})")


@dataclass
class InferenceNoise:
    """RNA-style noise at evaluation time (the paper's future work): N(0, nu I) added to the
    output of the chosen layers in every forward pass, from a seeded generator."""

    scale: float
    layers: int | list[int] | str = 7
    seed: int = 0

    def label(self) -> str:
        layers = (
            self.layers if isinstance(self.layers, int | str) else ",".join(map(str, self.layers))
        )
        return f"noise{self.scale:g}@{layers}"

    def context(self, model: PreTrainedModel):
        n_layers = model.config.num_hidden_layers
        unlearn = 7 if n_layers > 7 else n_layers - 1
        layers = resolve_layers(self.layers, n_layers, unlearn, key="--noise-layers")
        device = next(model.parameters()).device
        noise = Noise(layers, self.scale, torch.Generator(device=device).manual_seed(self.seed))
        return noise.inject(decoder_layers(decoder_of(model)[1]))


def evaluate_model(
    spec: str,
    tasks: Sequence[TaskDocs],
    *,
    backend: str = "native",
    batch_size: int = 4,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    load_in: str | None = None,
    noise: InferenceNoise | None = None,
    extra: dict[str, Any] | None = None,
    processes: Processes = SINGLE,
) -> dict[str, Any]:
    """Load `spec`, evaluate it on `tasks`, return its eval.json entry. A run folder evaluated
    without inference noise also gets the entry merged into its own eval.json (by the main
    process). Under a launcher each process loads the model on its own device and scores a
    share of the questions."""
    label = model_label(spec) + (f"+{noise.label()}" if noise else "")
    own = Path(spec) / EVAL_FILE
    if is_run_dir(Path(spec)) and own.exists() and not is_eval_file(own):
        # found now, not after the evaluation: its results are merged into this file
        raise RnacliError(f"{own}: not an eval.json rnacli wrote (damaged?); move it away")
    if processes.main:
        console.print(f"[bold]{escape(label)}[/]: loading")
    model, tokenizer = load_model(
        spec,
        dtype=dtype,
        device=process_device(device),
        trust_remote_code=trust_remote_code,
        load_in=load_in,
    )
    caveats = backend_caveats(tokenizer, backend, label, processes)
    with noise.context(model) if noise else nullcontext():
        results = evaluate_tasks(
            model, tokenizer, tasks, backend=backend, batch_size=batch_size, processes=processes
        )
    entry = model_entry(
        spec,
        label,
        backend,
        {t.name: task_entry(t, results[t.name]) for t in tasks},
        **(extra or {}),
        **({"inference_noise": vars(noise)} if noise else {}),
        **({"caveats": caveats} if caveats else {}),
    )
    if is_run_dir(Path(spec)) and noise is None and processes.main:
        merge_eval(Path(spec), [entry])
    return entry


def backend_caveats(
    tokenizer: PreTrainedTokenizerBase, backend: str, label: str, processes: Processes = SINGLE
) -> list[str]:
    """Where `backend`'s scores for this tokenizer are known to be wrong: each printed as a
    warning line (by the main process) and kept in the model's eval.json entry (`caveats`)."""
    if backend != "lm-eval":
        return []
    from rnacli.evaluate.harness import lm_eval_caveats

    caveats = lm_eval_caveats(tokenizer)
    for line in caveats if processes.main else []:
        console.print(f"warning: {label}: {line}", markup=False, highlight=False)
    return caveats
