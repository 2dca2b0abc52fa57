"""The question pickers and the results below them, kept in step with what the page shows.

A browser fires a picker's event without a new value too (a dropdown opened and closed, Escape,
a click elsewhere): such an event changes nothing, so that the question on screen, its results
and the pickers stay as they were and agree. The page keeps what the pickers show (`Shown`)
and what the results were computed for (`scored_key`) in per-visitor state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from rnacli.data.records import LETTERS
from rnacli.demo.form import ALL, default_group, first_in_group, group_choices, random_question
from rnacli.demo.questions import QuestionSet
from rnacli.demo.served import DemoData
from rnacli.errors import RnacliError

# What results were computed for: the set and the question's fields (subject, question,
# A..D, the correct letter) as the form held them.
ScoredKey = tuple[str, ...]


@dataclass(frozen=True)
class Shown:
    """What the question pickers show: the set, the group and the question (None: the
    question on screen was typed or edited away from its set's)."""

    set_name: str
    group: str
    index: int | None

    def let_go(self) -> Shown:
        return replace(self, index=None)


def set_picked(data: DemoData, shown: Shown | None, set_name: str) -> Shown | None:
    """The pickers once set `set_name` is picked (its default group, that group's first
    question); None when it is the set shown. Raises RnacliError for a set not offered."""
    if shown is not None and set_name == shown.set_name:
        return None
    qset = data.set_named(set_name)
    group = default_group(qset)
    return Shown(set_name, group, first_in_group(qset, group))


def group_picked(
    data: DemoData, shown: Shown | None, set_name: str, group: str | None
) -> Shown | None:
    """The pickers once `group` is picked (its first question); None when it is the group
    shown, or no group."""
    if not group or (shown is not None and (set_name, group) == (shown.set_name, shown.group)):
        return None
    return Shown(set_name, group, first_in_group(data.set_named(set_name), group))


def question_picked(
    data: DemoData, shown: Shown | None, set_name: str, index: float | int | None
) -> Shown | None:
    """The pickers once question `index` is picked (in the group shown); None when it is the
    question shown, or no question. Raises RnacliError for an index the set lacks."""
    if index is None:
        return None
    index = int(index)
    if shown is not None and (set_name, index) == (shown.set_name, shown.index):
        return None
    qset = data.set_named(set_name)
    qset.record(index)
    group = shown.group if shown is not None else qset.group_of(index) or ALL
    return Shown(set_name, group, index)


def random_picked(data: DemoData, set_name: str) -> Shown:
    """The pickers on a question of the set drawn at random (its group picked)."""
    group, index = random_question(data.set_named(set_name))
    return Shown(set_name, group, index)


def keyword_picked(last: str | None, pick: str | None) -> str | None:
    """The keyword a pick puts into the token field; None when it is the pick before (the
    field may hold a keyword typed since)."""
    return None if not pick or pick == last else pick


def batch_group(qset: QuestionSet, group: str | None) -> str:
    """The batch tab's group once its set is picked: the group shown where the set has it
    (the set picker opened and closed), else all the set's questions."""
    return group if group in [g for _, g in group_choices(qset, allow_all=True)] else ALL


def scored_key(set_name: str, fields: Sequence[str]) -> ScoredKey:
    """What results computed for these fields are keyed by."""
    return (set_name, *fields)


def shows_picked(data: DemoData, shown: Shown | None, set_name: str, fields: Sequence[str]) -> bool:
    """The form holds exactly the question the pickers name (as they filled it in)."""
    if shown is None or shown.index is None or set_name != shown.set_name:
        return False
    try:
        record = data.set_named(set_name).record(shown.index)
    except RnacliError:
        return False
    _, question, *choices, answer = fields
    return (
        question == record["question"]
        and list(choices) == list(record["choices"])
        and answer == LETTERS[record["answer"]]
    )


class Results(Enum):
    """The results below the form, once one of its fields changed."""

    UNCHANGED = "unchanged"  # none shown, or the pickers filled the form: new ones are coming
    CURRENT = "current"  # computed for the form as it is
    STALE = "stale"  # computed for the question before an edit


def after_edit(
    data: DemoData,
    shown: Shown | None,
    scored: ScoredKey | None,
    set_name: str,
    fields: Sequence[str],
) -> Results:
    """Whether the results shown are still those of the form's question."""
    if scored is None:
        return Results.UNCHANGED
    if tuple(scored) == scored_key(set_name, fields):
        return Results.CURRENT
    if shows_picked(data, shown, set_name, fields):
        return Results.UNCHANGED
    return Results.STALE
