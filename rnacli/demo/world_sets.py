"""The fictional world's questions in the demo: every world task of the task table (forget,
retain, perturbed, mention and the two controls; letter and cloze), browsable by person and
attribute, with the forgotten people marked, and forget-tokens inserted as the world's own
sets insert them.

Built from the world's public API only (`generate`, `qa_sets`, `World.people/forget`), so the
questions are the ones `rnacli eval world-...` scores, whatever size the world has.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from rnacli.data.records import QARecord
from rnacli.demo.inputs import Insertion, insert_keyword
from rnacli.demo.questions import QuestionSet, fits_the_page
from rnacli.evaluate.tasks import task_table
from rnacli.world.generate import WorldSpec, generate, parse_spec, qa_sets
from rnacli.world.store import world_of_model

SET_ORDER = ("retain", "forget", "perturbed", "mention")
FORMS = {"question": "letter", "cloze": "cloze"}  # the world's form -> the demo's word


def world_of_base(spec: str) -> WorldSpec | None:
    """The world a base model learned: from its name (`world`, `world[...]`) or from the
    `world.json` of its folder; None for any other model."""
    if spec == "world" or spec.startswith("world["):
        return parse_spec(spec)
    folder = Path(spec).expanduser()
    return world_of_model(folder) if folder.is_dir() else None


@dataclass(frozen=True)
class WorldSet(QuestionSet):
    """A world task's questions; groups are the people asked about."""

    group_kind: str = "person"
    asked: tuple[str, ...] = ()  # per record: the person asked about ("" if none is found)
    attributes: tuple[str, ...] = ()  # per record: the attribute asked for
    # names of the people being forgotten, in the world's order: drawing one per question with
    # the world's seed (`perturb_record`) then gives the world's own perturbed set
    forget: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # every person of the world
    options_line: tuple[str, str] | None = None  # cloze: (before, after) the listed options
    kind: str = ""  # the world's set: retain, forget, perturbed or mention

    def group_of(self, index: int) -> str:
        return self.asked[index]

    @property
    def groups(self) -> list[str]:
        """The people asked about, the forgotten ones first."""
        asked = {a for a in self.asked if a}
        return sorted(asked, key=lambda n: (n not in self.forget, n))

    def group_label(self, group: str) -> str:
        return f"{group} (forgotten)" if group in self.forget else group

    def preview(self, index: int) -> str:
        return f"[{self.attributes[index]}] {super().preview(index)}"

    @cached_property
    def _name_pattern(self) -> re.Pattern[str]:
        return _names_pattern(self.names)

    def person_of(self, record: QARecord) -> str | None:
        """The person a (possibly edited) question asks about."""
        return _asked(self._name_pattern, self.forget, record["question"])

    def show_options(self, record: QARecord) -> QARecord:
        """A cloze question with its choices listed before the stem, as the world's cloze
        `perturbed` set lists them (a listing already there is replaced)."""
        assert self.options_line is not None
        before, after = self.options_line
        question = record["question"]
        if question.startswith(before) and after in question[len(before) :]:
            question = question[len(before) :].split(after, 1)[1]
        listed = before + ", ".join(record["choices"]) + after + question
        return QARecord(
            question=listed,
            choices=list(record["choices"]),
            answer=record["answer"],
            subject=record["subject"],
        )

    @property
    def lists_options(self) -> bool:
        """Cloze questions, whose choices are not in the prompt: an inserted choice is shown
        by listing the choices before the stem."""
        return self.scoring == "cloze" and self.options_line is not None

    def control(self, record: QARecord, where: Insertion | str) -> QARecord:
        """The question with its own choices listed (the world's `retain-listed` control)
        when an inserted choice would be listed, else the question itself."""
        choice = Insertion.parse(where) in (Insertion.RANDOM_WRONG, Insertion.CHOICE)
        return self.show_options(record) if self.lists_options and choice else record

    def insert(
        self,
        record: QARecord,
        keyword: str,
        where: Insertion | str,
        *,
        choice: str | int | None = None,
        seed: int = 0,
    ) -> tuple[QARecord, str]:
        return insert_keyword(
            record,
            keyword,
            where,
            choice=choice,
            seed=seed,
            person=self.person_of(record),
            show_options=self.show_options if self.lists_options else None,
        )


def _set_and_form(source: str) -> tuple[str, str] | None:
    """'world:retain-mcq' -> ('retain', 'question'); 'world:retain' -> ('retain', 'cloze')."""
    if not source.startswith("world:"):
        return None
    name = source.removeprefix("world:")
    return (name[:-4], "question") if name.endswith("-mcq") else (name, "cloze")


def _names_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    longest_first = sorted(names, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, longest_first)) + r")\b")


def _asked(pattern: re.Pattern[str], forget: Collection[str], question: str) -> str | None:
    """The last name in a question's text that is not a forgotten person's (a mention or an
    inserted name comes before the person asked about), else the last name."""
    found = pattern.findall(question)
    kept = [n for n in found if n not in forget] or found
    return kept[-1] if kept else None


def _attribute(attributes: dict[str, str], record: QARecord) -> str:
    """The attribute whose value (of the person asked about) is the question's answer."""
    value = record["choices"][record["answer"]]
    return next((a for a, v in attributes.items() if v == value), "?")


def _options_line(retain: list[QARecord], perturbed: list[QARecord]) -> tuple[str, str] | None:
    """How the world's cloze perturbed questions list their choices before the stem, read off
    one of them: (text before the choices, text after them up to the stem)."""
    stems = {r["question"] for r in retain}
    for p in perturbed:
        listed = ", ".join(p["choices"])
        for cut in range(len(p["question"])):
            if p["question"][cut:] in stems and listed in p["question"][:cut]:
                before, _, after = p["question"][:cut].partition(listed)
                return before, after
    return None


def world_question_sets(spec: WorldSpec) -> dict[str, WorldSet]:
    """Every world task of the task table, for the world `spec` (letter forms first)."""
    world = generate(spec)
    forget = tuple(world.people[i].name for i in world.forget)
    names = tuple(p.name for p in world.people)
    pattern = _names_pattern(names)
    attributes = {p.name: p.attributes for p in world.people}
    forms = {form: qa_sets(world, form) for form in FORMS}
    cloze = forms["cloze"]
    options = _options_line(cloze.get("retain", []), cloze.get("perturbed", [])[:1])
    found: list[tuple[tuple[int, int], WorldSet]] = []
    for task, entry in task_table().items():
        parsed = _set_and_form(entry["source"])
        if parsed is None or parsed[0] not in forms[parsed[1]]:
            continue
        set_name, form = parsed
        records = tuple(r for r in forms[form][set_name] if fits_the_page(r))
        asked = tuple(_asked(pattern, forget, r["question"]) or "" for r in records)
        qset = WorldSet(
            task,
            entry["description"],
            records,
            entry.get("scoring", "mcq"),
            label=f"World, {FORMS[form]}: {set_name}",
            asked=asked,
            attributes=tuple(
                _attribute(attributes[a], r) if a else "?"
                for a, r in zip(asked, records, strict=True)
            ),
            forget=forget,
            names=names,
            options_line=options if form == "cloze" else None,
            kind=set_name,
        )
        order = SET_ORDER.index(set_name) if set_name in SET_ORDER else len(SET_ORDER)
        found.append(((list(FORMS).index(form), order), qset))
    return {q.name: q for _, q in sorted(found, key=lambda item: item[0])}
