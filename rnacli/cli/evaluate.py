"""Evaluate: `rnacli eval` (models on WMDP, MMLU, perturbed MMLU -> a table and eval.json) and
`rnacli export-tasks` (the same tasks as lm-eval task YAMLs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnacli.cli.common import (
    Force,
    Keywords,
    KeywordsFile,
    Models,
    at_least,
    finite,
    parse_layers,
    say,
    spec_paths,
    task_list,
)
from rnacli.console import stdout
from rnacli.data.perturb import DEFAULT_KEYWORD
from rnacli.errors import RnacliError

DEFAULT_TASKS = (
    "wmdp-bio,wmdp-cyber,mmlu,mmlu:college_biology,mmlu:computer_security,perturbed-mmlu"
)

# The options of `rnacli eval` whose help takes more than a line.
Tasks = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated tasks (TASK, TASK:SUBJECT, perturbed-TASK, NAME=TASK, or a "
        "QA source). Default: a run's recipe [eval] tasks, else " + DEFAULT_TASKS.replace(",", ", ")
    ),
]
EvalKeywords = Annotated[
    list[str] | None,
    typer.Option(
        help=f"Forget keyword for perturbed tasks (repeat for several sets; default: "
        f"{DEFAULT_KEYWORD}, or a run's recipe [eval] keywords)."
    ),
]
EvalKeywordsFile = Annotated[
    Path | None, typer.Option(help="JSON {set: \\[keywords]} (e.g. from `rnacli mine-tokens`).")
]
Limit = Annotated[
    int | None,
    typer.Option(
        help="Evaluate a seeded sample of N questions per task (default: a run's "
        "recipe [eval] limit)."
    ),
]
Dtype = Annotated[str, typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")]
TrustRemoteCode = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Allow model code from the Hub (off by default)."),
]
LoadIn = Annotated[
    str | None,
    typer.Option(help="8bit or 4bit (NF4): bitsandbytes-quantized weights (CUDA or CPU)."),
]
NoiseVariance = Annotated[
    float | None,
    typer.Option(help="Add RNA-style noise N(0, NU I) at evaluation time (variance NU)."),
]
NoiseLayers = Annotated[
    str, typer.Option(help="Layers for --inference-noise: 7, 5,6,7, early, middle, late, all.")
]


def eval_command(
    models: Models,
    tasks: Tasks = None,
    keyword: EvalKeywords = None,
    keywords_file: EvalKeywordsFile = None,
    limit: Limit = None,
    backend: Annotated[str, typer.Option(help="native or lm-eval.")] = "native",
    out: Annotated[Path | None, typer.Option(help="Folder for eval.json.")] = None,
    batch_size: Annotated[int, typer.Option(help="Questions per forward pass.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample and perturbation.")] = 0,
    dtype: Dtype = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    trust_remote_code: TrustRemoteCode = False,
    load_in: LoadIn = None,
    inference_noise: NoiseVariance = None,
    noise_layers: NoiseLayers = "7",
    force: Force = False,
) -> None:
    """Evaluate models on WMDP, MMLU and perturbed MMLU; print a table, write eval.json.
    `--out DIR` merges into DIR/eval.json; one that rnacli did not write needs --force.
    Under `accelerate launch` (or torchrun) the questions are split over the processes."""
    from rnacli.data.perturb import keyword_sets
    from rnacli.evaluate.report import eval_table
    from rnacli.evaluate.results import merge_eval
    from rnacli.evaluate.runner import InferenceNoise, evaluate_model
    from rnacli.evaluate.tasks import resolve_tasks
    from rnacli.runtime.distributed import init_processes

    at_least(1, batch_size=batch_size, limit=limit)
    finite(inference_noise=inference_noise)
    names, limit, keyword = _task_settings(models, tasks, limit, keyword)
    sets = keyword_sets(keyword or (), keywords_file)
    task_docs = resolve_tasks(names, keyword_sets=sets, limit=limit, seed=seed)
    inputs = [*spec_paths(models), *([keywords_file] if keywords_file else [])]
    replace = _check_out(out, task_docs, inputs, force)
    noise = None
    if inference_noise is not None:
        noise = InferenceNoise(inference_noise, parse_layers(noise_layers), seed)
    processes = init_processes()
    entries = [
        evaluate_model(
            spec,
            task_docs,
            backend=backend,
            batch_size=batch_size,
            dtype=dtype,
            device=device,
            trust_remote_code=trust_remote_code,
            load_in=load_in,
            noise=noise,
            extra={"limit": limit, "seed": seed},
            processes=processes,
        )
        for spec in models
    ]
    if not processes.main:
        return
    stdout.print(eval_table(entries))
    if out is not None:
        say(f"wrote {merge_eval(out, entries, replace=replace)}")


def _task_settings(
    models: list[str], tasks: str | None, limit: int | None, keyword: list[str] | None
) -> tuple[list[str], int | None, list[str] | None]:
    """(task names, --limit, --keyword): the options as given; without --tasks, the [eval]
    section of the first run's recipe fills in the tasks and what else is unset, and without
    a run DEFAULT_TASKS. Raises RnacliError for a run whose recipe.json is unreadable."""
    recipe_eval = next((e for e in map(_recipe_eval, models) if e is not None), None)
    if tasks is not None:
        return task_list(tasks), limit, keyword
    if recipe_eval is None:
        return DEFAULT_TASKS.split(","), limit, keyword
    limit = recipe_eval.limit if limit is None else limit
    return recipe_eval.tasks, limit, keyword or recipe_eval.keywords


def _check_out(out: Path | None, task_docs: list, inputs: list[Path], force: bool) -> bool:
    """Check --out before the (long) evaluation, not after it. True where OUT/eval.json is
    not rnacli's (allowed by --force) and is replaced rather than merged into."""
    if out is None:
        return False
    from rnacli.data.sources import source_paths
    from rnacli.evaluate.results import EVAL_FILE, is_eval_file
    from rnacli.runs.outputs import anything, check_file, check_folder

    inputs = [*inputs, *(p for t in task_docs for p in source_paths(t.source))]
    target = out / EVAL_FILE
    check_folder(out, writes=[target], inputs=inputs, ours=anything)
    check_file(target, inputs=inputs, ours=is_eval_file, force=force)
    return target.exists() and not is_eval_file(target)


def _recipe_eval(spec: str):
    """The [eval] section of a run folder's recipe, or None for a plain model."""
    path = Path(spec) / "recipe.json"
    if not path.is_file():
        return None
    from pydantic import ValidationError

    from rnacli.files.text import read_json
    from rnacli.recipe import EvalConfig

    raw = read_json(path)
    if not isinstance(raw, dict):
        raise RnacliError(f"{path}: expected a JSON object (a run's resolved recipe)")
    try:
        return EvalConfig.model_validate(raw.get("eval", {}))
    except ValidationError as e:
        raise RnacliError(f"{path}: eval: {e.errors()[0]['msg']}") from None


def export_tasks_command(
    out: Annotated[Path, typer.Argument(help="Folder for the lm-eval task YAMLs and data.")],
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = "mmlu,perturbed-mmlu",
    keyword: Keywords = None,
    keywords_file: KeywordsFile = None,
    limit: Annotated[int | None, typer.Option(help="Seeded sample of N questions.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the perturbation.")] = 0,
    force: Force = False,
) -> None:
    """Write lm-eval task YAMLs (with their local data) for rnacli's tasks and perturbed sets:
    `lm_eval --model hf --model_args pretrained=... --include_path OUT --tasks rnacli`."""
    from rnacli.data.perturb import keyword_sets
    from rnacli.data.sources import source_paths
    from rnacli.evaluate.harness import lm_eval_task_name, write_lm_eval_group
    from rnacli.evaluate.tasks import resolve_tasks
    from rnacli.runs.outputs import check_folder, names

    at_least(1, limit=limit)
    task_names = task_list(tasks)
    docs = resolve_tasks(
        task_names, keyword_sets=keyword_sets(keyword or (), keywords_file), limit=limit, seed=seed
    )
    stems = [lm_eval_task_name(t.name) for t in docs]
    check_folder(
        out,
        writes=[
            out / "_rnacli.yaml",
            *(out / f"{n}.{ext}" for n in stems for ext in ("yaml", "jsonl")),
        ],
        inputs=[
            *([keywords_file] if keywords_file else []),
            *(p for t in docs for p in source_paths(t.source)),
        ],
        ours=names("_rnacli.yaml", "rnacli_*.yaml", "rnacli_*.jsonl"),
        force=force,
    )
    written = write_lm_eval_group(out, docs)
    say(f"wrote {len(written)} lm-eval tasks to {out} (group 'rnacli'): {', '.join(written)}")
    say(
        f"run them: lm_eval --model hf --model_args pretrained=MODEL --include_path "
        f"{out} --tasks rnacli"
    )
