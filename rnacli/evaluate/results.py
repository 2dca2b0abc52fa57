"""`eval.json`: per model, per task accuracy, stderr and per-question predictions.

    {"rnacli_version": ..., "models": [{"model": SPEC, "label": NAME, "backend": ...,
      "tasks": {TASK: {"n", "acc", "stderr", "source", "keywords", "indices",
                       "predictions", "answers"}}}]}

A run folder's eval.json holds one model; `rnacli eval --out DIR` writes all models evaluated.
Evaluating more tasks later merges into the same file (a task evaluated again is replaced).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rnacli import __version__
from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import MCQResult
from rnacli.evaluate.tasks import TaskDocs
from rnacli.files.atomic import write_json
from rnacli.files.text import read_json

EVAL_FILE = "eval.json"


def task_entry(task: TaskDocs, result: MCQResult) -> dict[str, Any]:
    return {
        "n": result.n,
        "acc": result.acc,
        "stderr": result.stderr,
        "source": task.source,
        "keywords": task.keywords,
        "indices": task.indices,
        "predictions": result.predictions,
        "answers": result.answers,
    }


def model_entry(
    spec: str, label: str, backend: str, tasks: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "model": spec,
        "label": label,
        "backend": backend,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
        "tasks": tasks,
    }


def read_eval(path: Path) -> list[dict[str, Any]]:
    """The model entries of an eval.json (or of `<folder>/eval.json`)."""
    file = path / EVAL_FILE if path.is_dir() else path
    if not file.exists():
        raise RnacliError(f"{file}: no evaluation found (run `rnacli eval` first)")
    data = read_json(file)
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise RnacliError(f"{file}: expected an object with a 'models' list")
    for i, m in enumerate(models):
        if not (
            isinstance(m, dict)
            and isinstance(m.get("label"), str)
            and isinstance(m.get("tasks"), dict)
        ):
            raise RnacliError(f"{file}: models[{i}] is not a model entry (label, model, tasks)")
    return models


def stored_tasks(folder: Path) -> dict[str, Any]:
    """The task results of the (first) model in `folder`/eval.json; {} where there is none."""
    return read_eval(folder)[0]["tasks"] if (folder / EVAL_FILE).exists() else {}


def unanswered(done: dict[str, Any], tasks: list[TaskDocs]) -> list[TaskDocs]:
    """The `tasks` that `done` (a model entry's "tasks") lacks, or holds for other questions
    (the same name with other indices, keywords or source: another --limit, seed or world),
    so that a stored result is reused only for exactly the questions asked."""
    return [
        t
        for t in tasks
        if not isinstance(done.get(t.name), dict)
        or done[t.name].get("indices") != t.indices
        or done[t.name].get("keywords", []) != t.keywords
        or done[t.name].get("source", t.source) != t.source
    ]


def is_eval_file(file: Path) -> bool:
    """Whether `file` is an eval.json rnacli wrote (`rnacli eval --out` merges into it)."""
    try:
        read_eval(file)
    except RnacliError:
        return False
    return True


def merge_eval(path: Path, entries: list[dict[str, Any]], *, replace: bool = False) -> Path:
    """Merge model entries into `<path>/eval.json` (atomically); same label = same model.
    `replace` starts the file afresh (the caller checked that overwriting it is wanted)."""
    file = path / EVAL_FILE
    existing = read_eval(file) if file.exists() and not replace else []
    by_label = {m["label"]: m for m in existing}
    for entry in entries:
        old = by_label.get(entry["label"])
        if old is not None and old.get("model") == entry["model"]:
            entry = {**entry, "tasks": {**old.get("tasks", {}), **entry["tasks"]}}
        by_label[entry["label"]] = entry
    write_json(file, {"rnacli_version": __version__, "models": list(by_label.values())})
    return file
