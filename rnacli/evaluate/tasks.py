"""Task names -> questions ready to score. The task table is data (`tasks.yaml`); this module
resolves names such as `mmlu:college_biology` and `perturbed-mmlu`, and selects `--limit`
questions (a seeded sample, so that a small limit still spans every subject)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

from rnacli.data import QARecord, load_qa
from rnacli.data.batches import sample_indices
from rnacli.data.perturb import perturb
from rnacli.data.sources import UnknownSource
from rnacli.errors import RnacliError

PERTURBED = "perturbed-"
_ALIAS = re.compile(r"([\w.-]+)=(.+)")  # NAME=TASK (an '=' inside [...] is not an alias)
GENERIC_DESCRIPTION = (
    "The following are multiple choice questions (with answers) about {subject}.\n\n"
)


@dataclass
class TaskDocs:
    """One evaluation task, resolved: its questions and how to prompt them."""

    name: str
    source: str
    description: str  # lm-eval description template ({subject} filled per question)
    records: list[QARecord]
    indices: list[int]  # position of each record in the full source (pairs perturbed sets)
    keywords: list[str] = field(default_factory=list)  # the forget keywords of a perturbed task
    scoring: str = "mcq"  # mcq (letters) or cloze (the choices as continuations)


@cache
def task_table() -> dict[str, dict[str, str]]:
    text = resources.files("rnacli.evaluate").joinpath("tasks.yaml").read_text("utf-8")
    return yaml.safe_load(text)


@dataclass
class TaskSpec:
    source: str
    description: str
    scoring: str = "mcq"  # mcq: letters A-D after the lettered prompt; cloze: the choices


def _base_task(name: str) -> TaskSpec:
    """Source, description and scoring of an unperturbed task name."""
    table = task_table()
    base, bracket, spec = name.partition("[")
    if bracket and base in table and table[base]["source"].startswith("world:"):
        # world-retain[people=300,seed=1]: the same task on another generated world
        entry = table[base]
        source = f"world[{spec.rstrip(']')}]:" + entry["source"].removeprefix("world:")
        return TaskSpec(source, entry["description"], entry.get("scoring", "mcq"))
    if name in table:
        entry = table[name]
        return TaskSpec(entry["source"], entry["description"], entry.get("scoring", "mcq"))
    base, sep, subject = name.partition(":")
    if sep and base in table:
        entry = table[base]
        return TaskSpec(
            f"{entry['source']}:{subject}", entry["description"], entry.get("scoring", "mcq")
        )
    try:  # any QA source is a task too (a file, qasplit:...@test, hf:...)
        load_qa(name)
    except UnknownSource:
        raise RnacliError(
            f"unknown task '{name}' (known: {', '.join(table)}, TASK:SUBJECT, perturbed-TASK, "
            "NAME=TASK, or a QA source: a .jsonl/.json/.csv/.parquet file, an MMLU-style "
            "folder, qasplit:SOURCE@test, hf:ORG/NAME)"
        ) from None
    # any other error names the file and line itself (first), e.g. 'qa.jsonl:3: ...'
    return TaskSpec(name, GENERIC_DESCRIPTION)


def resolve_task(
    name: str,
    *,
    keyword_sets: dict[str, list[str]] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[TaskDocs]:
    """One task name -> one TaskDocs, or one per keyword set for a perturbed task.
    `NAME=TASK` gives a task a short name (e.g. `bio=qasplit:mmlu:virology@test`)."""
    aliased = _ALIAS.fullmatch(name)
    if aliased:
        name, spec = aliased.group(1), aliased.group(2)
    else:
        spec = name
    perturbed = spec.startswith(PERTURBED)
    base_name = spec.removeprefix(PERTURBED)
    task = _base_task(base_name)
    source, description = task.source, task.description
    records = load_qa(source)
    if not records:
        raise RnacliError(f"task '{name}': source '{source}' has no questions")
    indices = sample_indices(len(records), limit, seed)
    records = [records[i] for i in indices]
    if not perturbed:
        return [TaskDocs(name, source, description, records, indices, scoring=task.scoring)]
    sets = keyword_sets or {"SARS-CoV-2": ["SARS-CoV-2"]}
    return [
        TaskDocs(
            name if len(sets) == 1 else f"{name}[{label}]",
            source,
            description,
            perturb(records, words, seed),
            indices,
            list(words),
            task.scoring,
        )
        for label, words in sets.items()
    ]


def resolve_tasks(
    names: list[str],
    *,
    keyword_sets: dict[str, list[str]] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[TaskDocs]:
    tasks = [
        t for n in names for t in resolve_task(n, keyword_sets=keyword_sets, limit=limit, seed=seed)
    ]
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise RnacliError(f"task '{t.name}' is listed twice")
        seen.add(t.name)
    return tasks
