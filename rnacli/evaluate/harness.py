"""The lm-eval backend: the same tasks run by `lm_eval.simple_evaluate` on the in-memory model.

Each task is written as an lm-eval task YAML over a local JSONL file (the questions already
selected and perturbed by rnacli), so it runs offline and anyone can rerun it in the harness
with `lm_eval --include_path DIR`.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.data.encoding import appends_specials
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import MCQResult
from rnacli.evaluate.metrics import accuracy, accuracy_stderr
from rnacli.evaluate.prompts import description as render_description
from rnacli.evaluate.tasks import TaskDocs
from rnacli.files.atomic import write_jsonl, write_text
from rnacli.runtime.distributed import SINGLE, Processes

# lm-eval's own MMLU/WMDP template; `description` names a field of each doc that holds the
# rendered description line (MMLU's differs per subject).
_TEMPLATE = {
    "dataset_path": "json",
    "test_split": "test",
    "output_type": "multiple_choice",
    "description": "description",
    "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\n"
    "C. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
    "doc_to_choice": ["A", "B", "C", "D"],
    "doc_to_target": "answer",
    "num_fewshot": 0,
    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    "metadata": {"version": 1.0},
}


def lm_eval_task_name(name: str) -> str:
    """lm-eval task names: 'perturbed-mmlu[most-2]' -> 'rnacli_perturbed_mmlu_most_2'."""
    return "rnacli_" + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def write_lm_eval_task(folder: Path, task: TaskDocs) -> str:
    """Write `<task>.yaml` and `<task>.jsonl` into `folder`; return the lm-eval task name."""
    name = lm_eval_task_name(task.name)
    docs = [{**r, "description": render_description(task.description, r)} for r in task.records]
    data = (folder / f"{name}.jsonl").resolve()
    write_jsonl(data, docs)
    config = {"task": name, **_TEMPLATE, "dataset_kwargs": {"data_files": {"test": str(data)}}}
    if task.scoring == "cloze":  # the choices themselves are the continuations
        config.update(doc_to_text="{{question.strip()}}", doc_to_choice="choices")
    write_text(folder / f"{name}.yaml", yaml.safe_dump(config, sort_keys=False, width=1000))
    return name


def write_lm_eval_group(
    folder: Path, tasks: Sequence[TaskDocs], group: str = "rnacli"
) -> list[str]:
    """Every task as YAML + JSONL, and a group YAML that runs them all (weighted by size)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [write_lm_eval_task(folder, t) for t in tasks]
    config = {
        "group": group,
        "task": names,
        "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}],
        "metadata": {"version": 1.0},
    }
    write_text(folder / f"_{group}.yaml", yaml.safe_dump(config, sort_keys=False))
    return names


def evaluate_with_lm_eval(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[TaskDocs],
    *,
    batch_size: int = 8,
    processes: Processes = SINGLE,
) -> dict[str, MCQResult]:
    """Run `tasks` through lm-eval's HFLM; per-question predictions come from its samples.
    With several `processes`, lm-eval's own data parallelism splits the questions (each
    process builds the requests of its share and rank 0 gathers the samples); every process
    returns rank 0's results. A task with fewer questions than processes would leave a
    process with none, which lm-eval 0.4 cannot run ("did not find any docs"): rank 0 scores
    such tasks alone, as the native backend's empty shards give the same numbers."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise RnacliError("the lm-eval backend needs lm-eval: pip install 'rnacli[eval]'") from None
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    shared = [t for t in tasks if len(t.records) >= processes.world]
    alone = [t for t in tasks if len(t.records) < processes.world]
    results = _simple_evaluate(model, tokenizer, shared, batch_size, processes) if shared else {}
    if alone and processes.main:
        results.update(_simple_evaluate(model, tokenizer, alone, batch_size, SINGLE))
    return processes.broadcast(results if processes.main else None)


def lm_eval_caveats(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Where lm-eval's scores for this tokenizer are wrong (each a line for the user and
    eval.json's `caveats`): lm-eval 0.4 keeps the EOS a tokenizer appends to every text, so
    its contexts end in end-of-text and it cuts each continuation one token late."""
    if not appends_specials(tokenizer):
        return []
    return [
        "the tokenizer appends special tokens (add_eos_token) and lm-eval keeps them: its "
        "contexts end in EOS and its continuations are cut one token late, so these scores "
        "are wrong; the native backend drops them (--backend native)"
    ]


def _simple_evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[TaskDocs],
    batch_size: int,
    processes: Processes,
) -> dict[str, MCQResult]:
    """One `lm_eval.simple_evaluate` over `tasks` on `processes` (each holding at least one
    question of every task); rank 0's results, {} on the others."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="rnacli-lm-eval-") as tmp:
        names = {write_lm_eval_task(Path(tmp), t): t for t in tasks}
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        if processes.world > 1:
            # HFLM sets up data parallelism only for models it loads itself; for ours, its
            # documented "custom distributed integration": rank, world size and accelerator
            from accelerate import Accelerator

            lm._rank, lm._world_size, lm.accelerator = (
                processes.rank,
                processes.world,
                Accelerator(),
            )
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(names),
            task_manager=TaskManager(include_path=tmp, include_defaults=False),
            log_samples=True,
            bootstrap_iters=0,
        )
    return _results(out, names) if processes.main else {}


def _results(out: dict, names: dict[str, TaskDocs]) -> dict[str, MCQResult]:
    results = {}
    for name, task in names.items():
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        lls = np.array([[resp[0] for resp in s["filtered_resps"]] for s in samples])
        predictions = [int(p) for p in np.argmax(lls, axis=1)]
        answers = [r["answer"] for r in task.records]
        correct = [p == a for p, a in zip(predictions, answers, strict=True)]
        results[task.name] = MCQResult(
            accuracy(correct), accuracy_stderr(correct), predictions, answers, lls
        )
    return results
