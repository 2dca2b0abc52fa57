"""The quantization attack: load the unlearned model's full weights in 8 or 4 bits through
bitsandbytes and ask the forget and retain questions again (Zhang et al. 2024, "Catastrophic
failure of LLM unlearning via quantization": 4-bit quantization restores much of what NPO-style
methods removed, because their small updates fall inside one quantization bin).

Every linear weight of the decoder layers is quantized, the unlearning's trained tensors
included (`rnacli eval --load-in` keeps those unquantized to apply a delta; here the run is
first written out whole, into a temporary folder inside the attack's, deleted afterwards). The
embeddings and the LM head stay as they are. The base is scored in full precision and
quantized in the same way, so that what quantization costs the base by itself is in the
result too.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rnacli.attacks.folder import AttackFolder, questions, require_run
from rnacli.attacks.scores import Scores, accuracies, pooled, recovery, remembered, score
from rnacli.attacks.splits import AttackTasks, attack_tasks, run_recipe
from rnacli.console import console
from rnacli.errors import RnacliError
from rnacli.models.loading import QUANT_TYPES, export_full, load_model, require_bitsandbytes
from rnacli.runs.checkpoint import read_meta

BITS = (8, 4)


@dataclass
class QuantizeSettings:
    """What a quantization attack does; recorded in its folder (settings.json). `bits` 8
    (LLM.int8) or 4 (`quant_type` nf4 or fp4); `limit` questions per task (None: the recipe's
    [eval] limit); `forget_tasks`/`retain_tasks` replace the recipe's."""

    bits: int = 4
    quant_type: str = "nf4"
    limit: int | None = None
    eval_batch_size: int = 32
    device: str = "auto"
    forget_tasks: list[str] | None = None
    retain_tasks: list[str] | None = None

    @property
    def name(self) -> str:
        """The attack's folder: quantize-8bit, quantize-4bit-nf4, quantize-4bit-fp4."""
        return "quantize-8bit" if self.bits == 8 else f"quantize-4bit-{self.quant_type}"

    @property
    def load_in(self) -> str:
        return f"{self.bits}bit"

    def check(self) -> None:
        """Raises RnacliError for bits or a 4-bit type that bitsandbytes does not offer."""
        if self.bits not in BITS:
            raise RnacliError(f"--bits {self.bits}: expected 8 or 4")
        if self.quant_type not in QUANT_TYPES:
            raise RnacliError(f"--quant-type {self.quant_type}: expected nf4 or fp4")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.bits == 8:  # LLM.int8 has no 4-bit data type
            values["quant_type"] = None
        return values


def quantized_run_scores(run_dir: Path, folder: AttackFolder, tasks, s: QuantizeSettings) -> Scores:
    """The run written out whole and loaded quantized, scored (the temporary copy deleted)."""
    with tempfile.TemporaryDirectory(prefix=".model.", dir=folder.path) as tmp:
        full = export_full(run_dir, Path(tmp) / "model")
        model, tokenizer = load_model(
            str(full), device=s.device, load_in=s.load_in, quant_type=s.quant_type
        )
        return score(model, tokenizer, tasks.all, s.eval_batch_size)


def _scores(run_dir: Path, folder: AttackFolder, tasks: AttackTasks, s) -> dict[str, Scores]:
    """The four models on the attack's questions: base and run, each in full precision and
    quantized (each stored as it finishes)."""
    base = read_meta(run_dir)["base_model"]

    def plain(spec: str, load_in: str | None = None):
        def compute() -> Scores:
            model, tokenizer = load_model(
                spec, device=s.device, load_in=load_in, quant_type=s.quant_type
            )
            return score(model, tokenizer, tasks.all, s.eval_batch_size)

        how = "full" if load_in is None else s.name.removeprefix("quantize-")
        return lambda: remembered(
            str(Path(spec).resolve()) if Path(spec).exists() else spec, how, tasks.all, compute
        )

    what = f"{s.bits}-bit" + (f" {s.quant_type}" if s.bits == 4 else "")
    return {
        "base": folder.scored("base", plain(base), "base model"),
        "unlearned": folder.scored("unlearned", plain(str(run_dir)), "unlearned"),
        "quantized": folder.scored(
            "quantized",
            lambda: quantized_run_scores(run_dir, folder, tasks, s),
            f"unlearned, {what}",
        ),
        "base_quantized": folder.scored(
            "base-quantized", plain(base, s.load_in), f"base model, {what}"
        ),
    }


def quantize(run_dir: Path, settings: QuantizeSettings, *, force: bool = False) -> dict[str, Any]:
    """Run (or reuse) the quantization attack on `run_dir`; its result.json as a dict: the
    forget questions' recovery share with its 95 % interval, and every model's accuracies.
    Raises RnacliError (one line naming the install) where bitsandbytes is missing."""
    settings.check()
    require_bitsandbytes(f"rnacli attack quantize --bits {settings.bits}")
    require_run(run_dir)
    tasks = attack_tasks(
        run_recipe(run_dir),
        relearn=False,
        limit=settings.limit,
        forget_tasks=settings.forget_tasks,
        retain_tasks=settings.retain_tasks,
    )
    asked = {**settings.to_dict(), "questions": questions(tasks.all)}
    folder = AttackFolder(run_dir, settings.name, asked, force=force)
    if folder.finished is not None:
        console.print(f"{folder.path}: finished before, reused (--force redoes it)", markup=False)
        return folder.finished
    scores = _scores(run_dir, folder, tasks, settings)
    forget = {k: pooled(v, tasks.forget) for k, v in scores.items()}
    return folder.finish(
        {
            "attack": settings.name,
            "forget_tasks": [t.name for t in tasks.forget],
            "retain_tasks": [t.name for t in tasks.retain],
            "accuracy": {k: accuracies(v) for k, v in scores.items()},
            "recovery": recovery(forget["base"], forget["unlearned"], forget["quantized"]),
            "scores": scores,
        }
    )
