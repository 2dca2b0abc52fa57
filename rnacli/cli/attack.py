"""Attacks: `rnacli attack relearn|quantize|all RUN...` (does the forgotten knowledge come back
after a little fine-tuning on other forget data, or in 8 or 4 bits?). Each writes into
RUN/attacks/NAME/ and reuses a finished attack unless --force."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rnacli.cli.common import HELP_MARKUP, Device, at_least, say, task_list
from rnacli.console import stdout
from rnacli.errors import RnacliError

attack_app = typer.Typer(
    help="Attacks on unlearned runs: relearning and quantization (the forget side of "
    "robustness). Results in RUN/attacks/; `rnacli report` shows them.",
    rich_markup_mode=HELP_MARKUP,
    no_args_is_help=True,
)

Runs = Annotated[list[Path], typer.Argument(help="Run folders (rnacli train --out).")]
Force = Annotated[bool, typer.Option("--force", help="Redo a finished attack.")]
Limit = Annotated[
    int | None,
    typer.Option(help="Questions per task (default: the run's recipe [eval] limit)."),
]
ForgetTasks = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated forget tasks (default: the recipe's tasks named wmdp... or "
        "forget...; on the world, the held-out people's world-forget questions)."
    ),
]
RetainTasks = Annotated[
    str | None,
    typer.Option(help="Comma-separated retain tasks (default: the recipe's others)."),
]
EvalBatch = Annotated[int, typer.Option(help="Questions per forward pass.")]


def _steps(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise RnacliError(f"--steps {text}: expected step counts such as 5,10,20,40") from None


def _tasks(text: str | None) -> list[str] | None:
    return task_list(text) if text is not None else None


def relearn_command(
    runs: Runs,
    steps: Annotated[
        str, typer.Option(help="Score after these relearning steps (the last: how far).")
    ] = "5,10,20,40",
    lr: Annotated[float, typer.Option(help="AdamW learning rate (the run's optimizer).")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Relearn documents per step.")] = 8,
    max_length: Annotated[int, typer.Option(help="Tokens per relearn document.")] = 64,
    relearn_share: Annotated[
        float, typer.Option(help="Share of the forgotten people (or documents) relearned on.")
    ] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split and the batches.")] = 0,
    trainable: Annotated[
        str | None, typer.Option(help="Regex of the tensors that train (default: the run's).")
    ] = None,
    limit: Limit = None,
    forget_tasks: ForgetTasks = None,
    retain_tasks: RetainTasks = None,
    eval_batch_size: EvalBatch = 32,
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Fine-tune each unlearned run on part of its forget data, then score the held-out forget
    questions (never relearned) and the retain questions: the share of the forgotten accuracy
    that came back, with a 95 % bootstrap interval, and a recovery curve (curve.png)."""
    from rnacli.attacks.relearn import CURVE, RelearnSettings, relearn

    at_least(1, eval_batch_size=eval_batch_size, limit=limit)
    settings = RelearnSettings(
        steps=_steps(steps),
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        share=relearn_share,
        seed=seed,
        trainable=trainable,
        limit=limit,
        eval_batch_size=eval_batch_size,
        device=device,
        forget_tasks=_tasks(forget_tasks),
        retain_tasks=_tasks(retain_tasks),
    )
    settings.check()
    for run in runs:
        result = relearn(run, settings, force=force)
        _show(run, "relearn", result)
        say(f"wrote {run / 'attacks' / 'relearn' / 'result.json'} and {CURVE}")


def quantize_command(
    runs: Runs,
    bits: Annotated[int, typer.Option(help="8 (LLM.int8) or 4.")] = 4,
    quant_type: Annotated[str, typer.Option(help="4-bit data type: nf4 or fp4.")] = "nf4",
    limit: Limit = None,
    forget_tasks: ForgetTasks = None,
    retain_tasks: RetainTasks = None,
    eval_batch_size: EvalBatch = 32,
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Load each unlearned run's full weights in 8 or 4 bits (bitsandbytes, on CUDA or the
    CPU) and score forget and retain questions: the share of the forgotten accuracy that
    came back, with a 95 % bootstrap interval (the base is scored quantized too)."""
    from rnacli.attacks.quantize import QuantizeSettings, quantize

    at_least(1, eval_batch_size=eval_batch_size, limit=limit)
    settings = QuantizeSettings(
        bits=bits,
        quant_type=quant_type,
        limit=limit,
        eval_batch_size=eval_batch_size,
        device=device,
        forget_tasks=_tasks(forget_tasks),
        retain_tasks=_tasks(retain_tasks),
    )
    settings.check()
    for run in runs:
        result = quantize(run, settings, force=force)
        _show(run, settings.name, result)
        say(f"wrote {run / 'attacks' / settings.name / 'result.json'}")


def all_command(
    runs: Runs, device: Device = "auto", limit: Limit = None, force: Force = False
) -> None:
    """Every attack with its defaults on each run: relearn, 8-bit, 4-bit NF4."""
    from rnacli.attacks.quantize import QuantizeSettings, quantize
    from rnacli.attacks.relearn import RelearnSettings, relearn
    from rnacli.models.loading import require_bitsandbytes

    at_least(1, limit=limit)
    require_bitsandbytes("rnacli attack all (its quantization attacks)")
    for run in runs:
        _show(
            run, "relearn", relearn(run, RelearnSettings(limit=limit, device=device), force=force)
        )
        for bits in (8, 4):
            settings = QuantizeSettings(bits=bits, limit=limit, device=device)
            _show(run, settings.name, quantize(run, settings, force=force))


def _show(run: Path, name: str, result: dict[str, Any]) -> None:
    """One table: the forget questions' accuracy (base, unlearned, attacked) and the share
    that came back, with its interval."""
    r = result["recovery"]
    table = Table(title=escape(f"{run.name}: {name}"), title_justify="left")
    for column in ("questions", "base", "unlearned", "attacked", "recovered [95 % CI]"):
        table.add_column(column, justify="right")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    share = "-" if r["recovery"] is None else f"{100 * r['recovery']:.0f} %"
    if r["low"] is not None:
        share += f" [{100 * r['low']:.0f}, {100 * r['high']:.0f}]"
    table.add_row(
        str(r["n"]), pct(r["acc_base"]), pct(r["acc_unlearned"]), pct(r["acc_after"]), share
    )
    stdout.print(table)


ATTACK_COMMANDS = {"relearn": relearn_command, "quantize": quantize_command, "all": all_command}
for _name, _function in ATTACK_COMMANDS.items():
    attack_app.command(_name)(_function)
